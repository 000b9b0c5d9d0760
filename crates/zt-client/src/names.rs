//! Action names of the reference enforcement points, so one policy serves every gateway and
//! SDK. A name is dotted segments; each segment taken from outside (a server, tool, agent or
//! method name) goes through [`segment`] first.

/// What an empty (or all-separator) segment becomes.
pub const UNKNOWN_SEGMENT: &str = "unknown";

/// One name segment: every run of characters outside `[A-Za-z0-9_.-]` becomes one `_`, then
/// leading and trailing `.`, `_` and `-` are trimmed; [`UNKNOWN_SEGMENT`] if nothing is left.
pub fn segment(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut in_run = false;
    for c in input.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    let trimmed = out.trim_matches(['.', '_', '-']);
    if trimmed.is_empty() {
        UNKNOWN_SEGMENT.to_string()
    } else {
        trimmed.to_string()
    }
}

/// `mcp.<server>.<tool>`: a `tools/call` of `tool` on the MCP server named `server`.
pub fn mcp_action(server: &str, tool: &str) -> String {
    format!("mcp.{}.{}", segment(server), segment(tool))
}

/// `a2a.<agent>.<method>`: an A2A JSON-RPC `method` sent to the remote `agent`.
pub fn a2a_action(agent: &str, method: &str) -> String {
    format!("a2a.{}.{}", segment(agent), segment(method))
}

/// `openai.responses.function.<name>`: a function tool call of the OpenAI Responses API.
pub fn openai_responses_action(name: &str) -> String {
    format!("openai.responses.function.{}", segment(name))
}

/// `openai.agents.tool.<tool>`, or `openai.agents.tool.<namespace>.<tool>` when the tool has a
/// namespace (an empty `namespace` means none): a tool of the OpenAI Agents SDK.
pub fn openai_agents_action(namespace: &str, tool: &str) -> String {
    if namespace.is_empty() {
        format!("openai.agents.tool.{}", segment(tool))
    } else {
        format!(
            "openai.agents.tool.{}.{}",
            segment(namespace),
            segment(tool)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_the_allowed_characters() {
        assert_eq!(segment("read_file"), "read_file");
        assert_eq!(segment("v1.2-beta"), "v1.2-beta");
    }

    #[test]
    fn each_run_of_other_characters_becomes_one_underscore() {
        assert_eq!(segment("create pull/request"), "create_pull_request");
        assert_eq!(segment("a  //  b"), "a_b");
        assert_eq!(segment("héllo wörld"), "h_llo_w_rld");
        assert_eq!(segment("a\u{0}b"), "a_b");
    }

    #[test]
    fn separators_are_trimmed_at_both_ends() {
        assert_eq!(segment("  github  "), "github");
        assert_eq!(segment("._-tool-_."), "tool");
        assert_eq!(segment("/etc/passwd"), "etc_passwd");
    }

    #[test]
    fn nothing_left_is_unknown() {
        assert_eq!(segment(""), "unknown");
        assert_eq!(segment("..."), "unknown");
        assert_eq!(segment("日本"), "unknown");
    }

    #[test]
    fn actions_are_dotted_sanitised_segments() {
        assert_eq!(
            mcp_action("GitHub Server", "create_pr"),
            "mcp.GitHub_Server.create_pr"
        );
        assert_eq!(mcp_action("fs", "../x"), "mcp.fs.x");
        assert_eq!(
            a2a_action("travel agent", "message/send"),
            "a2a.travel_agent.message_send"
        );
        assert_eq!(
            openai_responses_action("get weather"),
            "openai.responses.function.get_weather"
        );
        assert_eq!(
            openai_agents_action("", "lookup"),
            "openai.agents.tool.lookup"
        );
        assert_eq!(
            openai_agents_action("ns", "lookup"),
            "openai.agents.tool.ns.lookup"
        );
        assert_eq!(
            openai_agents_action("  ", "lookup"),
            "openai.agents.tool.unknown.lookup"
        );
    }
}
