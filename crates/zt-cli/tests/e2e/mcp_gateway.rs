//! `zt mcp-gateway` in stdio mode between official MCP peers: the Python SDK's client
//! (`tests/mcp-peers/client.py`, from the worktree's `.venv`), a stdio server on that SDK
//! (`tests/mcp-peers/write_server.py`) and the npm servers
//! `@modelcontextprotocol/server-everything` and `server-filesystem` (`tests/mcp-peers/`),
//! deciding with the real `zt serve`. Install the peers with `scripts/setup-peers.sh`; without
//! them these tests skip with a message, or fail under `ZT_REQUIRE_SERVICES=1`.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{zt_bin, Server};
use serde_json::{json, Value};

const ACTOR: &str = "mcp-agent";

struct Peers {
    python: PathBuf,
    client: PathBuf,
    bin: PathBuf,
}

/// `None`, with `why` printed, when a test must skip; a failure under `ZT_REQUIRE_SERVICES=1`.
fn skip<T>(why: &str) -> Option<T> {
    if std::env::var("ZT_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{why}");
    }
    // Straight to stderr: the harness would capture `eprintln!` of a passing test.
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
    None
}

/// The command of `tests/mcp-peers/write_server.py`, a stdio server on the Python SDK, or
/// `None` when a test must skip.
fn python_write_server() -> Option<Vec<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        return skip(&format!(
            "the Python MCP SDK is not installed (run scripts/setup-peers.sh): missing {}",
            python.display()
        ));
    }
    let script = root.join("tests/mcp-peers/write_server.py");
    Some(vec![
        python.display().to_string(),
        script.display().to_string(),
    ])
}

/// The installed peers, or `None` (with the reason printed) when a test must skip.
fn peers() -> Option<Peers> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let peers = Peers {
        python: root.join(".venv/bin/python"),
        client: root.join("tests/mcp-peers/client.py"),
        bin: root.join("tests/mcp-peers/node_modules/.bin"),
    };
    let missing: Vec<String> = [
        peers.python.clone(),
        peers.bin.join("mcp-server-everything"),
        peers.bin.join("mcp-server-filesystem"),
    ]
    .into_iter()
    .filter(|p| !p.exists())
    .map(|p| p.display().to_string())
    .collect();
    if missing.is_empty() {
        return Some(peers);
    }
    skip(&format!(
        "MCP peers not installed (run scripts/setup-peers.sh): missing {}",
        missing.join(", ")
    ))
}

/// A control plane with credentials and `policy`, and a registered agent's token.
fn control_plane(dir: &Path, policy: &str) -> (Server, String) {
    Server::with_policy_and_agent(dir, policy, ACTOR)
}

/// Runs the Python client's `scenario` against `zt mcp-gateway --server-name NAME -- SERVER`.
fn drive(
    peers: &Peers,
    server: &Server,
    token: &str,
    scenario: &str,
    name: &str,
    mcp_server: &[String],
    env: &[(&str, String)],
) -> Value {
    let mut gateway = vec![
        zt_bin().to_string(),
        "mcp-gateway".into(),
        "--server-name".into(),
        name.into(),
        "--".into(),
    ];
    gateway.extend_from_slice(mcp_server);
    let output = Command::new(&peers.python)
        .arg(&peers.client)
        .arg(scenario)
        .env(
            "ZT_TEST_GATEWAY_CMD",
            serde_json::to_string(&gateway).unwrap(),
        )
        .env("ZT_CONTROL_PLANE_URL", server.url())
        .env("ZT_ACTOR", ACTOR)
        .env("ZT_TOKEN", token)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run the Python MCP client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "client failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

fn everything_server(peers: &Peers) -> Vec<String> {
    vec![
        peers
            .bin
            .join("mcp-server-everything")
            .display()
            .to_string(),
        "stdio".into(),
    ]
}

fn text(result: &Value) -> String {
    result["text"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

const EVERYTHING_POLICY: &str = r#"
@id("everything")
@reason("the everything server's tools are allowed")
permit (principal, action in Action::"mcp.everything.*", resource);

@id("no-sums")
@reason("sums are not for agents")
forbid (principal, action == Action::"mcp.everything.get-sum", resource);
"#;

#[test]
fn allowed_calls_pass_and_everything_else_flows_both_ways() {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), EVERYTHING_POLICY);
    let out = drive(
        &peers,
        &server,
        &token,
        "everything",
        "everything",
        &everything_server(&peers),
        &[],
    );
    assert_everything_session(&out, &server);
}

#[test]
fn streamable_http_relays_the_same_way() {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), EVERYTHING_POLICY);
    let upstream_port = common::free_port();
    let _upstream = common::Running::listening(
        Command::new(peers.bin.join("mcp-server-everything"))
            .arg("streamableHttp")
            .env("PORT", upstream_port.to_string()),
        upstream_port,
    );
    let gateway_port = common::free_port();
    let _gateway = common::Running::listening(
        Command::new(zt_bin())
            .args(["mcp-gateway", "--server-name", "everything"])
            .args(["--listen", &format!("127.0.0.1:{gateway_port}")])
            .args([
                "--upstream",
                &format!("http://127.0.0.1:{upstream_port}/mcp"),
            ])
            .args(["--allow-origin", "https://app.example"])
            .env("ZT_CONTROL_PLANE_URL", server.url())
            .env("ZT_ACTOR", ACTOR)
            .env("ZT_TOKEN", &token),
        gateway_port,
    );
    let url = format!("http://127.0.0.1:{gateway_port}/mcp");
    let out = drive(
        &peers,
        &server,
        &token,
        "everything",
        "everything",
        &[],
        &[("ZT_TEST_GATEWAY_URL", url.clone())],
    );
    assert_everything_session(&out, &server);
    // The gateway reads the tools' declarations over HTTP too, in the client's session.
    let out = drive(
        &peers,
        &server,
        &token,
        "undeclared",
        "everything",
        &[],
        &[("ZT_TEST_GATEWAY_URL", url)],
    );
    assert_eq!(
        out["undeclared"],
        json!({"code": -32602, "message": "argument `resource` is not declared by tool `echo`"}),
        "{out}"
    );
    assert_eq!(text(&out["echo"]), "Echo: declared", "{out}");

    // A `ping` with one string member under UTF-7 is, to a server that honours the charset
    // (Express's JSON parser does), a `tools/call` the gateway never decided on: refused.
    let smuggled = br#"{"jsonrpc":"2.0","id":2,"method":"ping","x":"+ACI-,+ACI-method+ACI-:+ACI-tools/call+ACI-,+ACI-params+ACI-:{+ACI-name+ACI-:+ACI-get-sum+ACI-,+ACI-arguments+ACI-:{+ACI-a+ACI-:1,+ACI-b+ACI-:2}},+ACI-z+ACI-:+ACI-"}"#;
    let records = || common::records_as(server.port, &server.admin_token()).len();
    let before = records();
    for content_type in ["application/json; charset=utf-7", "text/plain"] {
        let (status, body) =
            common::post_with_content_type(gateway_port, "/mcp", content_type, smuggled);
        assert_eq!(
            status,
            415,
            "{content_type}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // A web page of another host (DNS rebinding makes it same-origin with 127.0.0.1).
    let ping = br#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#;
    let (status, _, _) = common::http_raw(
        gateway_port,
        "POST",
        "/mcp",
        &[
            ("origin", "http://evil.example"),
            ("accept", "application/json, text/event-stream"),
        ],
        Some(ping),
    )
    .unwrap();
    assert_eq!(status, 403);
    assert_eq!(records(), before, "nothing decided, nothing relayed");
    // A page of an origin given with --allow-origin is relayed: the server answers the
    // session-less `ping` itself, whatever it makes of it.
    let (status, _, body) = common::http_raw(
        gateway_port,
        "POST",
        "/mcp",
        &[
            ("origin", "https://app.example"),
            ("accept", "application/json, text/event-stream"),
        ],
        Some(ping),
    )
    .unwrap();
    assert_ne!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(
        !String::from_utf8_lossy(&body).contains("web page of another host"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

/// What the `everything` scenario must show, whatever the transport.
fn assert_everything_session(out: &Value, server: &Server) {
    // Initialisation and capability negotiation reached the real server.
    assert_eq!(out["server_name"], json!("mcp-servers/everything"), "{out}");
    for capability in ["tools", "resources", "prompts", "logging"] {
        assert!(
            out["capabilities"]
                .as_array()
                .unwrap()
                .contains(&json!(capability)),
            "{out}"
        );
    }
    // Tools registered only after `notifications/initialized` and only for a client that
    // declared sampling and roots: the client's notification and capabilities got through.
    for tool in ["echo", "trigger-sampling-request", "get-roots-list"] {
        assert!(
            out["tools"].as_array().unwrap().contains(&json!(tool)),
            "{out}"
        );
    }

    // Allowed: the server's own result, untouched.
    assert_eq!(out["echo"]["isError"], json!(false), "{out}");
    assert_eq!(text(&out["echo"]), "Echo: hello through zt");
    assert!(out["echo"]["structuredContent"].is_null());

    // Denied: an error result carrying the whole decision; the server never saw it.
    let denied = &out["denied_sum"];
    assert_eq!(denied["isError"], json!(true), "{out}");
    assert_eq!(text(denied), "sums are not for agents");
    let zt = &denied["structuredContent"]["zt"];
    assert_eq!(zt["decision"], json!("deny"));
    assert_eq!(zt["reason"], json!("sums are not for agents"));
    assert!(zt["audit"]["current_hash"].as_str().is_some(), "{zt}");
    assert_eq!(zt["evidence"]["policies"], json!(["no-sums"]));

    // Progress notifications of an allowed call flow back.
    assert_eq!(out["long"]["isError"], json!(false), "{out}");
    assert_eq!(out["progress"], json!([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]]));
    // Server-to-client requests (sampling, roots) are answered by the client through the
    // gateway.
    assert!(
        text(&out["sampling"]).contains("sampled by the test client"),
        "{out}"
    );
    assert!(
        text(&out["roots"]).contains("file:///zt-test-root"),
        "{out}"
    );
    // Server notifications flow: the simulated log messages arrive.
    let notes = out["notifications"].as_array().unwrap();
    assert!(notes.contains(&json!("notifications/message")), "{out}");
    // The server runs without the agent's token in its environment.
    assert_eq!(out["env"]["isError"], json!(false), "{out}");
    assert!(text(&out["env"]).contains("\"PATH\""), "{out}");
    assert!(!text(&out["env"]).contains("ZT_TOKEN"), "{out}");
    // Resources and prompts pass through.
    assert!(out["resources"].as_u64().unwrap() > 0, "{out}");
    assert!(!out["prompts"].as_array().unwrap().is_empty(), "{out}");

    // Each tool call is one decision record with the action, resource and context hash.
    let records = common::records_as(server.port, &server.admin_token());
    let calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["actor"] == json!(ACTOR))
        .collect();
    let actions: Vec<&str> = calls
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "mcp.everything.echo",
            "mcp.everything.get-sum",
            "mcp.everything.trigger-long-running-operation",
            "mcp.everything.trigger-sampling-request",
            "mcp.everything.get-roots-list",
            "mcp.everything.toggle-simulated-logging",
            "mcp.everything.get-env",
        ]
    );
    assert!(
        calls.iter().all(|r| r["context_sha256"].as_str().is_some()),
        "{calls:?}"
    );
    assert!(
        !records
            .iter()
            .any(|r| r.to_string().contains("hello through zt")),
        "the record keeps only the context's hash"
    );
}

#[test]
fn a_denied_write_never_reaches_the_filesystem_server() {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let base = canonical_dir(dir.path().join("files"));
    std::fs::create_dir_all(base.join("allowed")).unwrap();
    let base_text = base.display().to_string();
    let policy = format!(
        r#"
@id("fs-read")
@reason("reading is allowed")
permit (principal, action == Action::"mcp.fs.read_text_file", resource);

@id("fs-write-allowed-dir")
@reason("writes under the allowed directory")
@unvalidated("reads tool arguments")
permit (principal, action == Action::"mcp.fs.write_file", resource)
when {{ context.mcp.arguments.path like "{base_text}/allowed/*" }};

@id("fs-no-parent")
@reason("no `..` in paths")
@unvalidated("reads tool arguments")
forbid (principal, action == Action::"mcp.fs.write_file", resource)
when {{ context.mcp.arguments.path like "*..*" }};
"#
    );
    let (server, token) = control_plane(dir.path(), &policy);
    let filesystem = vec![
        peers
            .bin
            .join("mcp-server-filesystem")
            .display()
            .to_string(),
        base_text.clone(),
    ];
    let out = drive(
        &peers,
        &server,
        &token,
        "filesystem",
        "fs",
        &filesystem,
        &[("ZT_TEST_DIR", base_text.clone())],
    );

    assert_eq!(out["allowed_write"]["isError"], json!(false), "{out}");
    assert_eq!(
        std::fs::read_to_string(base.join("allowed/ok.txt")).unwrap(),
        "written"
    );
    assert_eq!(out["denied_write"]["isError"], json!(true), "{out}");
    assert_eq!(
        out["denied_write"]["structuredContent"]["zt"]["decision"],
        json!("deny")
    );
    assert!(
        !base.join("elsewhere.txt").exists(),
        "the denied write reached the server"
    );
    assert_eq!(out["read"]["isError"], json!(false), "{out}");
    assert_eq!(text(&out["read"]), "written");

    let records = common::records_as(server.port, &server.admin_token());
    let denied = records
        .iter()
        .find(|r| r["action"] == json!("mcp.fs.write_file") && r["decision"] == json!("deny"))
        .expect("the denied write's record");
    assert_eq!(
        denied["resource"],
        json!(format!("{base_text}/elsewhere.txt"))
    );
}

#[test]
fn a_control_plane_killed_mid_session_fails_closed() {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), EVERYTHING_POLICY);
    let pid = server.child.id().to_string();
    let out = drive(
        &peers,
        &server,
        &token,
        "kill-control-plane",
        "everything",
        &everything_server(&peers),
        &[("ZT_TEST_CONTROL_PLANE_PID", pid)],
    );
    assert_eq!(out["before"]["isError"], json!(false), "{out}");
    assert_eq!(text(&out["before"]), "Echo: before");
    let after = &out["after"];
    assert_eq!(after["isError"], json!(true), "{out}");
    let reason = text(after);
    assert!(
        reason.starts_with("control plane unavailable: "),
        "{reason}"
    );
    assert_eq!(after["structuredContent"]["zt"]["reason"], json!(reason));
    assert!(out["tools_after"].as_u64().unwrap() > 0, "{out}");
}

/// Creates `dir` and returns its canonical path (the filesystem server compares canonical
/// paths, and a temporary directory may sit behind a symlink).
fn canonical_dir(dir: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// A `zt mcp-gateway` driven with raw JSON-RPC lines (for what an SDK client would not send).
/// `zt mcp-gateway` over stdio in front of `mcp_server`, named `name` in actions, acting as
/// the test agent; its stdin and stdout piped.
fn stdio_gateway(
    control_plane_url: &str,
    token: &str,
    name: &str,
    extra: &[&str],
    mcp_server: &[String],
) -> Command {
    let mut command = Command::new(zt_bin());
    command
        .args(["mcp-gateway", "--server-name", name])
        .args(extra)
        .arg("--")
        .args(mcp_server)
        .env("ZT_CONTROL_PLANE_URL", control_plane_url)
        .env("ZT_ACTOR", ACTOR)
        .env("ZT_TOKEN", token)
        .env("ZT_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    command
}

struct RawSession {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl RawSession {
    fn start(control_plane_url: &str, token: &str, extra: &[&str], mcp_server: &[String]) -> Self {
        Self::start_named(control_plane_url, token, extra, "everything", mcp_server)
    }

    /// A session with the server `mcp_server`, named `name` in actions, initialized.
    fn start_named(
        control_plane_url: &str,
        token: &str,
        extra: &[&str],
        name: &str,
        mcp_server: &[String],
    ) -> Self {
        let mut child = stdio_gateway(control_plane_url, token, name, extra, mcp_server)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut session = RawSession {
            child,
            stdin,
            stdout,
        };
        session.send(
            r#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
        );
        let init = session.answer_to(json!("init"));
        assert!(init["result"]["serverInfo"]["name"].is_string(), "{init}");
        session.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        session
    }

    fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next message answering `id` (`null`: an error without id), skipping notifications
    /// and other traffic.
    fn answer_to(&mut self, id: Value) -> Value {
        self.read_until_answer(id).pop().unwrap()
    }

    /// The messages read up to the one answering `id`, that one last.
    fn read_until_answer(&mut self, id: Value) -> Vec<Value> {
        use std::io::BufRead;
        let mut read = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "the gateway closed its output");
            let message: Value = serde_json::from_str(&line).unwrap();
            let answers = message.get("result").is_some() || message.get("error").is_some();
            let done = answers && message.get("id").cloned().unwrap_or(Value::Null) == id;
            read.push(message);
            if done {
                return read;
            }
        }
    }
}

impl Drop for RawSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_control_plane_that_does_not_answer_in_time_denies() {
    let Some(peers) = peers() else { return };
    // Connections to this listener are accepted by the kernel and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let mut session = RawSession::start(
        &url,
        "unused-token",
        &["--decision-timeout-ms", "300"],
        &everything_server(&peers),
    );
    session.send(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}"#,
    );
    let result = &session.answer_to(json!(2))["result"];
    assert_eq!(result["isError"], json!(true), "{result}");
    assert_eq!(
        result["content"][0]["text"],
        json!("control plane unavailable: control plane did not answer within 300ms")
    );
    // Not a tool call: still relayed while the control plane is silent.
    session.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#);
    assert!(session.answer_to(json!(3))["result"]["tools"].is_array());
}

#[test]
fn unreadable_and_oversized_messages_are_answered_and_the_session_goes_on() {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), EVERYTHING_POLICY);
    let mut session = RawSession::start(&server.url(), &token, &[], &everything_server(&peers));

    session.send(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"n":NaN}}}"#);
    assert_eq!(
        session.answer_to(Value::Null)["error"]["code"],
        json!(-32700)
    );
    session.send(r#"[{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"message":"batched"}}}]"#);
    assert_eq!(
        session.answer_to(Value::Null)["error"]["code"],
        json!(-32600)
    );
    session.send(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{}}}"#);
    assert_eq!(session.answer_to(json!(7))["error"]["code"], json!(-32602));
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{}"}}}}}}"#,
        "x".repeat(zt_mcp_max_message_bytes() + 1)
    );
    session.send(&huge);
    let error = session.answer_to(Value::Null);
    assert_eq!(error["error"]["code"], json!(-32600), "{error}");
    // Within the size limit, but small values whose parsed tree would take over 64 MiB (about
    // 60 times the message): refused before the tree grows past the bound.
    let crowded = format!(
        r#"{{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"x","n":[{}0]}}}}}}"#,
        "0,".repeat(4 << 20)
    );
    session.send(&crowded);
    let error = session.answer_to(Value::Null);
    assert_eq!(error["error"]["code"], json!(-32700), "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many values"),
        "{error}"
    );

    session.send(
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"message":"still here"}}}"#,
    );
    let result = &session.answer_to(json!(9))["result"];
    assert_eq!(
        result["content"][0]["text"],
        json!("Echo: still here"),
        "{result}"
    );
    // None of the refused calls was decided: only the last one has a record.
    let records = common::records_as(server.port, &server.admin_token());
    let decided = records
        .iter()
        .filter(|r| r["actor"] == json!(ACTOR))
        .count();
    assert_eq!(decided, 1);
}

/// `zt_mcp::MAX_MESSAGE_BYTES` (16 MiB), as documented in docs/GATEWAYS.md.
fn zt_mcp_max_message_bytes() -> usize {
    16 * 1024 * 1024
}

#[test]
fn a_call_is_decided_only_on_what_its_tool_declares() {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), EVERYTHING_POLICY);
    let mut session = RawSession::start(&server.url(), &token, &[], &everything_server(&peers));

    // `echo` declares `message` only: an added `resource` would have been decided on.
    session.send(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x","resource":"elsewhere"}}}"#,
    );
    let error = &session.answer_to(json!(1))["error"];
    assert_eq!(error["code"], json!(-32602), "{error}");
    assert_eq!(
        error["message"],
        json!("argument `resource` is not declared by tool `echo`")
    );
    session.send(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"no-such-tool","arguments":{}}}"#,
    );
    let error = &session.answer_to(json!(2))["error"];
    assert_eq!(error["code"], json!(-32602), "{error}");
    assert_eq!(
        error["message"],
        json!("tool `no-such-tool` is not in the server's tools/list")
    );
    // The ids of the gateway's own requests to the server are not the client's to take.
    session.send(r#"{"jsonrpc":"2.0","id":"zt-gateway/tools-list/0","method":"tools/list"}"#);
    assert_eq!(
        session.answer_to(Value::Null)["error"]["code"],
        json!(-32600)
    );
    session.send(
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"message":"declared"}}}"#,
    );
    let result = &session.answer_to(json!(3))["result"];
    assert_eq!(
        result["content"][0]["text"],
        json!("Echo: declared"),
        "{result}"
    );
    // The client's own `tools/list` still gets the server's answer.
    session.send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#);
    assert!(session.answer_to(json!(4))["result"]["tools"].is_array());

    let records = common::records_as(server.port, &server.admin_token());
    let decided: Vec<&Value> = records
        .iter()
        .filter(|r| r["actor"] == json!(ACTOR))
        .collect();
    assert_eq!(decided.len(), 1, "the refused calls were never decided");
}

#[test]
fn an_added_argument_cannot_choose_the_resource_of_a_write() {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let base = canonical_dir(dir.path().join("files"));
    std::fs::create_dir_all(base.join("allowed")).unwrap();
    let allowed = base.join("allowed/ok.txt").display().to_string();
    // A rule on the resource alone, as GATEWAYS.md shows for exact names.
    let policy = format!(
        r#"
@id("fs-write-one-file")
@reason("one file may be written")
permit (principal, action == Action::"mcp.fs.write_file", resource == Resource::"{allowed}");
"#
    );
    let (server, token) = control_plane(dir.path(), &policy);
    let filesystem = vec![
        peers
            .bin
            .join("mcp-server-filesystem")
            .display()
            .to_string(),
        base.display().to_string(),
    ];
    let mut session = RawSession::start_named(&server.url(), &token, &[], "fs", &filesystem);
    let stolen = base.join("stolen.txt");
    let smuggled = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "write_file",
        "arguments": {"path": stolen.display().to_string(), "content": "x", "resource": allowed}
    }});
    session.send(&smuggled.to_string());
    let error = &session.answer_to(json!(1))["error"];
    assert_eq!(
        error["message"],
        json!("argument `resource` is not declared by tool `write_file`"),
        "{error}"
    );
    let written = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "write_file", "arguments": {"path": allowed, "content": "by path"}
    }});
    session.send(&written.to_string());
    let result = &session.answer_to(json!(2))["result"];
    assert_ne!(result["isError"], json!(true), "{result}");
    assert_eq!(
        std::fs::read_to_string(base.join("allowed/ok.txt")).unwrap(),
        "by path"
    );
    assert!(!stolen.exists(), "the smuggled write reached the server");
    let records = common::records_as(server.port, &server.admin_token());
    let writes: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == json!("mcp.fs.write_file"))
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0]["resource"], json!(allowed));
}

#[test]
fn a_tool_call_between_carriage_returns_never_reaches_a_python_server() {
    let Some(writer) = python_write_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let policy = r#"
@id("deny-all")
@reason("nothing is allowed")
forbid (principal, action, resource);
"#;
    let (server, token) = control_plane(dir.path(), policy);
    let mut session = RawSession::start_named(&server.url(), &token, &[], "writer", &writer);
    let target = dir.path().join("smuggled.txt");
    let call = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "write_file",
            "arguments": {"path": target.display().to_string(), "content": "x"}}})
    };
    // To the gateway's parser one notification (`\r` is JSON whitespace); to the SDK's stdio,
    // which reads universal newlines, three lines, the middle one a tool call.
    let smuggled = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/x","params":{{"a":{}{}{}}}}}"#,
        '\r',
        call(2),
        '\r'
    );
    session.send(&smuggled);
    // A line ending in `\r\n` is read as usual: the call is decided (and denied).
    session.send(&format!("{}\r", call(3)));
    // The server has read everything relayed before it answers the ping; a tool call it was
    // handed would have started by then.
    session.send(r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#);
    let mut read = session.read_until_answer(json!(4));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!target.exists(), "the smuggled call ran: {read:?}");
    assert!(read.iter().all(|m| m["id"] != json!(2)), "{read:?}");
    let denied = read.iter().find(|m| m["id"] == json!(3));
    let denied = denied
        .cloned()
        .unwrap_or_else(|| session.answer_to(json!(3)));
    assert_eq!(denied["result"]["isError"], json!(true), "{denied}");
    assert_eq!(
        denied["result"]["content"][0]["text"],
        json!("nothing is allowed")
    );
    if !read.iter().any(|m| m["error"]["code"] == json!(-32700)) {
        read.push(session.answer_to(Value::Null));
    }
    let refused = read.iter().find(|m| m["error"]["code"] == json!(-32700));
    assert!(refused.is_some_and(|m| m.get("id").is_none()), "{read:?}");
    let records = common::records_as(server.port, &server.admin_token());
    let decided: Vec<&Value> = records
        .iter()
        .filter(|r| r["actor"] == json!(ACTOR))
        .collect();
    assert_eq!(
        decided.len(),
        1,
        "only the call ending in CRLF: {decided:?}"
    );
}

/// The stub server's `read_file` is allowed.
const STUB_READ_POLICY: &str = r#"
@id("stub-read")
@reason("reading is allowed")
permit (principal, action == Action::"mcp.stub.read_file", resource);
"#;

/// A stdio gateway in front of the (strict) stub server, whose one tool `read_file` declares
/// `path`; and the file the stub records what it received in.
fn stub_read_gateway(
    dir: &std::path::Path,
    server: &common::Server,
    token: &str,
) -> (common::Running, std::path::PathBuf) {
    let received = dir.join("received.jsonl");
    let tools = json!([{"name": "read_file",
        "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}}}]);
    let stub = common::stub_mcp_server(&tools, &received);
    let gateway = common::Running(
        stdio_gateway(&server.url(), token, "stub", &[], &stub)
            .spawn()
            .unwrap(),
    );
    (gateway, received)
}

#[test]
fn a_pipelining_client_initializes_before_the_gateway_lists_the_tools() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), STUB_READ_POLICY);
    let (mut gateway, received) = stub_read_gateway(dir.path(), &server, &token);
    // The `initialize` is longer than a pipe holds: the gateway is still writing it to the
    // (byte-at-a-time) stub when the call needs the tool list, so a `tools/list` that does not
    // wait for the session's initialization reaches the stub before `initialized`, every time.
    let [mut initialize, initialized] = common::mcp_opening();
    initialize["params"]["capabilities"]["experimental"] =
        json!({"padding": {"text": "x".repeat(256 * 1024)}});
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "notes"}}});
    let sent = [initialize, initialized, call];
    let opening: String = sent.iter().map(|m| format!("{m}\n")).collect();
    let mut stdin = gateway.0.stdin.take().unwrap();
    // One write: the client does not wait for the server's answer to `initialize`.
    stdin.write_all(opening.as_bytes()).unwrap();
    drop(stdin);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut gateway.0.stdout.take().unwrap(), &mut out).unwrap();
    assert!(gateway.0.wait().unwrap().success());

    // The client got the stub's answer to `initialize`, and no refusal of its call.
    let answers: Vec<Value> = out.lines().map(common::parse).collect();
    assert_eq!(answers.len(), 1, "{out}");
    assert_eq!(answers[0]["id"], json!("init"), "{out}");
    assert!(answers[0]["result"].is_object(), "{out}");
    // The stub saw the client's three messages in order (the gateway's `tools/list` between
    // them was answered, not recorded), so the allowed call reached it.
    let relayed: Vec<Value> = std::fs::read_to_string(&received)
        .unwrap()
        .lines()
        .map(common::parse)
        .collect();
    assert_eq!(relayed, sent);
    let records = common::records_as(server.port, &server.admin_token());
    let decided: Vec<&Value> = records
        .iter()
        .filter(|r| r["actor"] == json!(ACTOR))
        .collect();
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0]["decision"], json!("allow"));
}

#[test]
fn a_call_before_initialize_is_refused_at_once_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), STUB_READ_POLICY);
    let (mut gateway, received) = stub_read_gateway(dir.path(), &server, &token);
    let call = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "read_file", "arguments": {"path": "notes"}}})
    };
    let [initialize, initialized] = common::mcp_opening();
    // Calls before `initialize` and before `notifications/initialized` could never be
    // decided: the gateway's `tools/list` would wait behind them (10 s each, holding up the
    // `initialize` queued after them).
    let sent = [
        call(1),
        call(2),
        initialize.clone(),
        call(3),
        initialized.clone(),
        call(4),
    ];
    let opening: String = sent.iter().map(|m| format!("{m}\n")).collect();
    let began = std::time::Instant::now();
    let mut stdin = gateway.0.stdin.take().unwrap();
    stdin.write_all(opening.as_bytes()).unwrap();
    drop(stdin);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut gateway.0.stdout.take().unwrap(), &mut out).unwrap();
    assert!(gateway.0.wait().unwrap().success());
    assert!(
        began.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}: {out}",
        began.elapsed()
    );

    let answers: Vec<Value> = out.lines().map(common::parse).collect();
    let answer_to = |id: Value| {
        answers
            .iter()
            .find(|answer| answer["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id}: {out}"))
    };
    for (id, why) in [
        (1, "send initialize first"),
        (2, "send initialize first"),
        (3, "send notifications/initialized before tools/call"),
    ] {
        let error = &answer_to(json!(id))["error"];
        assert_eq!(error["code"], json!(-32600), "{error}");
        assert_eq!(
            error["message"],
            json!(format!("the session is not initialized: {why}"))
        );
    }
    assert!(answer_to(json!("init"))["result"].is_object(), "{out}");
    // The allowed call after the opening reached the stub, the refused ones did not.
    assert!(
        answers.iter().all(|answer| answer["id"] != json!(4)),
        "{out}"
    );
    let relayed: Vec<Value> = std::fs::read_to_string(&received)
        .unwrap()
        .lines()
        .map(common::parse)
        .collect();
    assert_eq!(relayed, [initialize, initialized, call(4)]);
    let records = common::records_as(server.port, &server.admin_token());
    let decided = records
        .iter()
        .filter(|r| r["actor"] == json!(ACTOR))
        .count();
    assert_eq!(decided, 1, "only the call after the opening was decided");
}

/// A stub MCP server over Streamable HTTP at `/mcp` with the one tool `read_file`, whose
/// schema's `properties` the test changes: it answers `tools/list` and `tools/call` as JSON,
/// and holds each `GET` open as an event stream, on which [`HttpStub::announce_change`] sends
/// `notifications/tools/list_changed`.
struct HttpStub {
    port: u16,
    properties: std::sync::Arc<std::sync::Mutex<Value>>,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl HttpStub {
    fn start(properties: Value) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stub = HttpStub {
            port: listener.local_addr().unwrap().port(),
            properties: std::sync::Arc::new(std::sync::Mutex::new(properties)),
            streams: std::sync::Arc::default(),
        };
        let (properties, streams) = (stub.properties.clone(), stub.streams.clone());
        std::thread::spawn(move || {
            for socket in listener.incoming() {
                let Ok(socket) = socket else { return };
                let (properties, streams) = (properties.clone(), streams.clone());
                std::thread::spawn(move || Self::answer(socket, &properties, &streams));
            }
        });
        stub
    }

    fn answer(
        mut socket: std::net::TcpStream,
        properties: &std::sync::Mutex<Value>,
        streams: &std::sync::Mutex<Vec<std::net::TcpStream>>,
    ) {
        use std::io::Read;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "the request broke off");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        if head.starts_with("get") {
            let open = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n: open\n\n";
            socket.write_all(open.as_bytes()).unwrap();
            streams.lock().unwrap().push(socket);
            return;
        }
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |n| n.trim().parse().unwrap());
        while raw.len() < head_end + length {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "the body broke off");
            raw.extend_from_slice(&buf[..n]);
        }
        let message: Value = serde_json::from_slice(&raw[head_end..]).unwrap();
        let result = match message["method"].as_str() {
            Some("tools/list") => json!({"tools": [{"name": "read_file", "inputSchema":
                {"type": "object", "properties": properties.lock().unwrap().clone()}}]}),
            _ => json!({"content": [{"type": "text", "text": "read"}]}),
        };
        let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": result}).to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
        socket.write_all(response.as_bytes()).unwrap();
    }

    /// The tool now declares `properties`, and every open event stream says so.
    fn change_tools(&self, properties: Value) {
        *self.properties.lock().unwrap() = properties;
        let notice = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";
        for stream in self.streams.lock().unwrap().iter_mut() {
            stream.write_all(notice.as_bytes()).unwrap();
        }
    }
}

/// Reads `stream` until what it sent holds `text`.
fn read_until(stream: &mut std::net::TcpStream, text: &str) {
    use std::io::Read;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&raw).contains(text) {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn a_tools_change_announced_on_the_event_stream_is_seen_by_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), STUB_READ_POLICY);
    let stub = HttpStub::start(json!({"path": {"type": "string"}, "resource": {"type": "string"}}));
    let gateway_port = common::free_port();
    let _gateway = common::Running::listening(
        Command::new(zt_bin())
            .args(["mcp-gateway", "--server-name", "stub"])
            .args(["--listen", &format!("127.0.0.1:{gateway_port}")])
            .args(["--upstream", &format!("http://127.0.0.1:{}/mcp", stub.port)])
            .env("ZT_CONTROL_PLANE_URL", server.url())
            .env("ZT_ACTOR", ACTOR)
            .env("ZT_TOKEN", &token),
        gateway_port,
    );
    let session = [
        ("mcp-session-id", "s1"),
        ("accept", "application/json, text/event-stream"),
    ];
    // The client's event stream of its session, through the gateway.
    let mut events = std::net::TcpStream::connect(("127.0.0.1", gateway_port)).unwrap();
    let open = "GET /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\nmcp-session-id: s1\r\n\r\n";
    events.write_all(open.as_bytes()).unwrap();
    read_until(&mut events, ": open");

    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "notes", "resource": "notes"}}});
    let post = |message: &Value| {
        let (status, _, body) = common::http_raw(
            gateway_port,
            "POST",
            "/mcp",
            &session,
            Some(message.to_string().as_bytes()),
        )
        .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    let allowed = post(&call);
    assert_eq!(
        allowed["result"]["content"][0]["text"],
        json!("read"),
        "{allowed}"
    );

    // The server drops `resource` and says so on the event stream, within the second after
    // the gateway read its list: the next call is checked against the new list all the same.
    stub.change_tools(json!({"path": {"type": "string"}}));
    read_until(&mut events, "notifications/tools/list_changed");
    let refused = post(&call);
    assert_eq!(
        refused["error"],
        json!({"code": -32602, "message": "argument `resource` is not declared by tool `read_file`"}),
        "{refused}"
    );
    let records = common::records_as(server.port, &server.admin_token());
    let decided = records
        .iter()
        .filter(|r| r["actor"] == json!(ACTOR))
        .count();
    assert_eq!(decided, 1, "the refused call was never decided");
}
