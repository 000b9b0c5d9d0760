//! The reference JSON action-policy format compiled to Cedar, with exactly the semantics of
//! [`ActionPolicy::evaluate`](crate::ActionPolicy::evaluate).
//!
//! - deny rule `n` becomes `@id("deny-n") forbid`, allow rule `n` becomes `@id("allow-n")
//!   permit`, denies first, each in list order; `@reason` is the rule's reason or the reference
//!   default for a blank one. The engine's reason is the first matching `forbid`'s, else the
//!   first matching `permit`'s: the reference's first matching deny rule, else allow rule.
//! - pattern `x` (no trailing `*`): `action == Action::"x"`.
//! - pattern `*`: any action.
//! - pattern `p*` with `p` ending in `.`: `action in Action::"p*"` (the wildcard group: an
//!   action is in it exactly when it starts with `p`).
//! - pattern `p*` otherwise (`mcp.git*`, `aws*`): `context.action like "p*"` (the `*` in `p`
//!   escaped), scoped to the group of `p` up to its last dot (`mcp.*`) so slicing still works,
//!   or to any action when `p` has no dot.
//! - `"defaultDecision": "allow"` adds a last `@id("default-allow") permit` for every action.

use std::fmt::Write;

use crate::action_policy::{
    non_empty_or, ActionPolicy, DefaultDecision, Rule, REASON_ALLOWED_BY_RULE,
    REASON_DEFAULT_ALLOW, REASON_DENIED_BY_RULE,
};

/// The Cedar text of `policy`.
pub(crate) fn to_cedar(policy: &ActionPolicy) -> String {
    let mut out = String::new();
    for (i, rule) in policy.deny.iter().enumerate() {
        let reason = non_empty_or(&rule.reason, REASON_DENIED_BY_RULE);
        push_rule(
            &mut out,
            &format!("deny-{}", i + 1),
            &reason,
            "forbid",
            rule,
        );
    }
    for (i, rule) in policy.allow.iter().enumerate() {
        let reason = non_empty_or(&rule.reason, REASON_ALLOWED_BY_RULE);
        push_rule(
            &mut out,
            &format!("allow-{}", i + 1),
            &reason,
            "permit",
            rule,
        );
    }
    if policy.default_decision == DefaultDecision::Allow {
        let _ = write!(
            out,
            "@id(\"default-allow\")\n@reason(\"{}\")\npermit(principal, action, resource);\n",
            escape(REASON_DEFAULT_ALLOW, false)
        );
    }
    out
}

/// The id of the policy [`allow_rule`] writes for `action`.
pub fn allow_rule_id(action: &str) -> String {
    format!("allow:{action}")
}

/// One allow rule as Cedar, with the reference semantics for its pattern (exact, or trailing
/// `*` prefix) and `reason` (the reference default when blank): what the quickstart's
/// `POST /policies/allow` adds to the active policy set, with id [`allow_rule_id`].
pub fn allow_rule(action: &str, reason: &str) -> String {
    let reason = non_empty_or(reason, REASON_ALLOWED_BY_RULE);
    let rule = Rule {
        action: action.to_string(),
        reason: reason.clone(),
    };
    let mut out = String::new();
    push_rule(&mut out, &allow_rule_id(action), &reason, "permit", &rule);
    out
}

fn push_rule(out: &mut String, id: &str, reason: &str, effect: &str, rule: &Rule) {
    let (scope, condition) = scope_of(&rule.action);
    let _ = write!(
        out,
        "@id(\"{}\")\n@reason(\"{}\")\n{effect}(principal, {scope}, resource)",
        escape(id, false),
        escape(reason, false)
    );
    if let Some(condition) = condition {
        let _ = write!(out, " when {{ {condition} }}");
    }
    out.push_str(";\n\n");
}

/// The action scope and the optional condition matching `pattern`.
fn scope_of(pattern: &str) -> (String, Option<String>) {
    let Some(prefix) = pattern.strip_suffix('*') else {
        return (
            format!("action == Action::\"{}\"", escape(pattern, false)),
            None,
        );
    };
    if prefix.is_empty() {
        return ("action".into(), None);
    }
    if prefix.ends_with('.') {
        return (
            format!("action in Action::\"{}*\"", escape(prefix, false)),
            None,
        );
    }
    let scope = match prefix.rfind('.').and_then(|dot| prefix.get(..=dot)) {
        Some(group) => format!("action in Action::\"{}*\"", escape(group, false)),
        None => "action".into(),
    };
    let like = format!("context.action like \"{}*\"", escape(prefix, true));
    (scope, Some(like))
}

/// `text` as the inside of a Cedar string literal; in a `like` pattern, `*` is escaped too.
pub(crate) fn escape(text: &str, pattern: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            '*' if pattern => out.push_str("\\*"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "compile_json_tests.rs"]
mod tests;
