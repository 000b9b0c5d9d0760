//! `zt policy validate | test | diff` end to end: the real binary on the shipped example
//! policies, their cases files, broken inputs, and an audit log written by a real server.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{zt, Server};
use serde_json::{json, Value};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../zt-policy/examples/policies")
}

/// Every example policy set (`*.cedar`), sorted.
fn examples() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cedar"))
        .collect();
    found.sort();
    assert!(found.len() >= 5, "the examples are missing: {found:?}");
    found
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", stdout(out)))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `zt policy diff [--json] OLD NEW --against RECORDS`.
fn diff_against(json: bool, old: &Path, new: &Path, records: &str) -> Output {
    let mut args = vec!["policy", "diff"];
    if json {
        args.push("--json");
    }
    args.extend([s(old), s(new), "--against", records]);
    zt(&args)
}

fn is_version(v: &str) -> bool {
    v.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn validate_accepts_every_example_with_its_size_and_version() {
    for example in examples() {
        let out = zt(&["policy", "validate", s(&example)]);
        assert_eq!(out.status.code(), Some(0), "{example:?}: {}", stderr(&out));
        let text = stdout(&out);
        let line = text.trim_end();
        let rest = line
            .strip_prefix("valid: ")
            .unwrap_or_else(|| panic!("{line}"));
        let (size, version) = rest.split_once(", version ").unwrap();
        let (count, noun) = size.split_once(' ').unwrap();
        let count: usize = count.parse().unwrap();
        assert!(count > 0 && is_version(version), "{line}");
        assert_eq!(
            noun,
            if count == 1 { "policy" } else { "policies" },
            "{line}"
        );

        let out = zt(&["policy", "validate", "--json", s(&example)]);
        assert_eq!(out.status.code(), Some(0));
        let v = json_out(&out);
        assert_eq!(v["valid"], true);
        assert_eq!(v["policies"], count);
        assert_eq!(v["version"], version, "text and JSON agree");
        assert_eq!(v["warnings"], json!([]));
    }
}

#[test]
fn validate_names_the_line_and_column_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // A syntax error on line 3.
    let syntax = write(
        dir.path(),
        "syntax.cedar",
        "@id(\"a\")\npermit (principal, action, resource)\nwhen { context.approval_id == };\n",
    );
    let out = zt(&["policy", "validate", s(&syntax)]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.starts_with("invalid: "), "{text}");
    assert!(text.contains("line 3, column "), "{text}");
    let out = zt(&["policy", "validate", "--json", s(&syntax)]);
    assert_eq!(out.status.code(), Some(1));
    let v = json_out(&out);
    assert_eq!(v["valid"], false);
    assert_eq!(v["error"]["line"], 3);
    assert!(v["error"]["column"].as_u64().unwrap() > 1, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("syntax"));

    // Parses, but fails the schema: a misspelt attribute makes the policy impossible.
    let schema = write(
        dir.path(),
        "schema.cedar",
        "// ops only\n@id(\"ops\")\npermit (principal, action, resource)\nwhen { principal has trustlevel };\n",
    );
    let out = zt(&["policy", "validate", "--json", s(&schema)]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let v = json_out(&out);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("`ops`"),
        "{v}"
    );
    assert_eq!(v["error"]["line"], 2, "the policy starts at its @id: {v}");

    // The reference JSON format: valid, and a typo with its line and column.
    let reference = write(
        dir.path(),
        "reference.json",
        r#"{"defaultDecision": "deny", "allow": [{"action": "hello-world.*", "reason": "hi"}],
            "deny": [{"action": "hello-world.shout", "reason": "no"}]}"#,
    );
    let out = zt(&["policy", "validate", s(&reference)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("valid: 2 policies, version sha256:"));
    let typo = write(
        dir.path(),
        "typo.json",
        "{\"defaultDecision\": \"deny\",\n \"alow\": []}",
    );
    let out = zt(&["policy", "validate", "--json", s(&typo)]);
    assert_eq!(out.status.code(), Some(1));
    let v = json_out(&out);
    assert_eq!(v["error"]["line"], 2, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("`alow`"));

    // Columns count from 1 everywhere, also where serde_json says `column 0`.
    let cut = write(dir.path(), "cut.json", "{\"allow\": [\n");
    let out = zt(&["policy", "validate", "--json", s(&cut)]);
    let v = json_out(&out);
    assert_eq!(
        (v["error"]["line"].clone(), v["error"]["column"].clone()),
        (json!(2), json!(1)),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 2, column 1") && !message.contains("column 0"),
        "{message}"
    );

    // One policy is one policy.
    let single = write(
        dir.path(),
        "single.cedar",
        "@id(\"p\")\n@reason(\"ok\")\npermit(principal, action == Action::\"a.b\", resource);\n",
    );
    let out = zt(&["policy", "validate", s(&single)]);
    assert!(
        stdout(&out).starts_with("valid: 1 policy, version sha256:"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn validate_exit_codes_for_usage_and_unreadable_files() {
    let out = zt(&["policy", "validate"]);
    assert_eq!(out.status.code(), Some(2), "no file is a usage error");
    let out = zt(&["policy", "validate", "/nonexistent/policy.cedar"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    let out = zt(&["policy", "validate", "policy.rego"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("`.json` or `.cedar`"));
}

#[test]
fn every_example_passes_its_cases_file() {
    for example in examples() {
        let cases = example.with_extension("cases.json");
        assert!(cases.exists(), "{example:?} has no cases file {cases:?}");
        let parsed: Value =
            serde_json::from_str(&std::fs::read_to_string(&cases).unwrap()).unwrap();
        let n = parsed["cases"].as_array().unwrap().len();
        assert!(n >= 4, "{cases:?}: too few cases");
        let out = zt(&["policy", "test", s(&example), s(&cases)]);
        let text = stdout(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{example:?}:\n{text}{}",
            stderr(&out)
        );
        assert_eq!(text, format!("{n} passed, 0 failed\n"), "{example:?}");
    }
}

#[test]
fn failing_cases_are_named_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let policy = examples_dir().join("mcp_github.cedar");
    let request = json!({"actor": "coder", "actor_attributes": {"trust_level": "high"},
        "action": "mcp.github.create_pull_request", "resource": "zt-infra",
        "context": {"approval_id": "chg-7"}});
    let cases = json!({"cases": [
        {"name": "passes", "request": request, "expect": {"decision": "allow"}},
        {"name": "wrong decision", "request": request, "expect": {"decision": "deny"}},
        {"name": "wrong reason", "request": request,
         "expect": {"decision": "allow", "reason": "because"}},
        {"name": "wrong policies", "request": request,
         "expect": {"decision": "allow", "policies": ["github-pr", "other"]}},
    ]});
    let file = write(dir.path(), "cases.json", &cases.to_string());
    let out = zt(&["policy", "test", s(&policy), s(&file)]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "FAIL wrong decision: expected deny; got allow");
    assert_eq!(
        lines[1],
        "FAIL wrong reason: expected allow, reason \"because\"; \
         got allow, reason \"approved pull request by a high-trust agent\""
    );
    assert_eq!(
        lines[2],
        "FAIL wrong policies: expected allow, policies [\"github-pr\", \"other\"]; \
         got allow, policies [\"github-pr\"]"
    );
    assert_eq!(lines[3], "1 passed, 3 failed");

    let out = zt(&["policy", "test", "--json", s(&policy), s(&file)]);
    assert_eq!(out.status.code(), Some(1));
    let v = json_out(&out);
    assert_eq!(
        (v["ok"].clone(), v["passed"].clone(), v["failed"].clone()),
        (json!(false), json!(1), json!(3))
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["passed"], true);
    assert_eq!(results[1]["got"]["decision"], "allow");
    assert_eq!(results[3]["got"]["policies"], json!(["github-pr"]));
}

#[test]
fn cases_can_fix_the_request_time() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "window.cedar",
        "@id(\"after-launch\")\n@reason(\"open since launch\")\n\
         permit (principal, action == Action::\"shop.open\", resource)\n\
         when { context.request_time >= 1800000000 };\n",
    );
    let cases = json!({"cases": [
        {"name": "before launch", "request": {"actor": "a", "action": "shop.open",
            "request_time": 1_799_999_999u64},
         "expect": {"decision": "deny", "reason": "action is not in the allow list"}},
        {"name": "after launch", "request": {"actor": "a", "action": "shop.open",
            "request_time": 1_800_000_000u64},
         "expect": {"decision": "allow", "policies": ["after-launch"]}},
    ]});
    let file = write(dir.path(), "window.cases.json", &cases.to_string());
    let out = zt(&["policy", "test", s(&policy), s(&file)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "2 passed, 0 failed\n");
}

#[test]
fn cases_files_are_strict() {
    let dir = tempfile::tempdir().unwrap();
    let policy = examples_dir().join("hello_world.cedar");
    let run = |name: &str, text: &str| {
        let file = write(dir.path(), name, text);
        zt(&["policy", "test", s(&policy), s(&file)])
    };
    let request = r#"{"actor": "a", "action": "b"}"#;

    let out = run(
        "typo.json",
        &format!(
            r#"{{"cases": [{{"name": "x", "request": {request}, "expect": {{"decision": "deny", "reasons": "r"}}}}]}}"#
        ),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown field `reasons`"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).is_empty(),
        "no summary line after a load error"
    );

    let out = run(
        "extra.json",
        r#"{"cases": [{"name": "x", "request": {"actor": "a", "action": "b", "actr": "c"},
            "expect": {"decision": "deny"}}]}"#,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown field `actr`"));

    let out = run(
        "decision.json",
        &format!(
            r#"{{"cases": [{{"name": "x", "request": {request}, "expect": {{"decision": "permit"}}}}]}}"#
        ),
    );
    assert_eq!(out.status.code(), Some(1));

    let out = run("empty.json", r#"{"cases": []}"#);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("has no cases"));

    let case =
        format!(r#"{{"name": "x", "request": {request}, "expect": {{"decision": "deny"}}}}"#);
    let out = run("twice.json", &format!(r#"{{"cases": [{case}, {case}]}}"#));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("two cases are named `x`"));

    let out = zt(&["policy", "test", s(&policy), "/nonexistent/cases.json"]);
    assert_eq!(out.status.code(), Some(1));
    let out = zt(&["policy", "test", s(&policy)]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing argument is a usage error"
    );
}

/// hello_world.cedar, widened to every `hello-world.*` action.
const WIDER: &str = r#"// v2: every hello-world action
@id("hello-world")
@reason("hello-world-agent may use hello-world")
permit (principal == Agent::"hello-world-agent", action in Action::"hello-world.*", resource);
"#;

#[test]
fn diff_shows_the_canonical_text_diff() {
    let dir = tempfile::tempdir().unwrap();
    let old = examples_dir().join("hello_world.cedar");
    let new = write(dir.path(), "new.cedar", WIDER);
    let out = zt(&["policy", "diff", s(&old), s(&new)]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("--- {}\n+++ {}\n", s(&old), s(&new))),
        "{text}"
    );
    assert!(
        text.contains("\n-  action == Action::\"hello-world.say_hello\",\n"),
        "{text}"
    );
    assert!(
        text.contains("\n+@reason(\"hello-world-agent may use hello-world\")\n"),
        "{text}"
    );
    assert!(
        !text.contains("// v2"),
        "comments are not part of the canonical text"
    );
    assert!(!text.contains("note:"), "no replay without --against");

    // Layout and comments alone are no change.
    let relaid = write(
        dir.path(),
        "relaid.cedar",
        &format!(
            "// moved around\n\n{}",
            std::fs::read_to_string(&old).unwrap().replace("  ", "\t")
        ),
    );
    let out = zt(&["policy", "diff", s(&old), s(&relaid)]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).ends_with("the policy text is the same\n"),
        "{}",
        stdout(&out)
    );

    let out = zt(&["policy", "diff", "--json", s(&old), s(&new)]);
    assert_eq!(out.status.code(), Some(0));
    let v = json_out(&out);
    assert_eq!(v["text_changed"], true);
    assert_ne!(v["old"]["version"], v["new"]["version"]);
    assert!(v["diff"].as_str().unwrap().starts_with("--- "));
    assert_eq!(v["replay"], Value::Null);
}

#[test]
fn diff_replays_decision_records_and_counts_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let old = examples_dir().join("hello_world.cedar");
    let new = write(dir.path(), "new.cedar", WIDER);
    let record = |seq: u64, kind: &str, actor: &str, action: &str, decision: &str, reason: &str| {
        json!({"seq": seq, "kind": kind, "actor": actor, "action": action, "resource": "",
               "decision": decision, "reason": reason,
               "timestamp": "2026-11-25T18:31:18.714Z"})
        .to_string()
    };
    let lines = [
        record(
            0,
            "admin",
            "root",
            "zt.admin.agents.register",
            "allow",
            "registered",
        ),
        record(
            1,
            "decision",
            "hello-world-agent",
            "hello-world.say_hello",
            "allow",
            "hello-world-agent may say hello",
        ),
        record(
            2,
            "decision",
            "hello-world-agent",
            "hello-world.say_goodbye",
            "deny",
            "action is not in the allow list",
        ),
        String::new(),
        record(
            3,
            "decision",
            "hello-world-agent",
            "hello-world.say_goodbye",
            "deny",
            "action is not in the allow list",
        ),
        record(
            4,
            "decision",
            "other-agent",
            "hello-world.say_hello",
            "deny",
            "action is not in the allow list",
        ),
        record(5, "rejections", "zt", "zt.rejections", "deny", "summary"),
    ];
    let records = write(dir.path(), "records.jsonl", &lines.join("\n"));
    let out = diff_against(false, &old, &new, s(&records));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("note: audit records carry actor, action and resource only"),
        "{text}"
    );
    assert!(text.contains("no context"), "{text}");
    let changed: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("changed: "))
        .collect();
    assert_eq!(
        changed,
        [
            "changed: hello-world-agent hello-world.say_hello (1 records, first seq 1): \
             allow \"hello-world-agent may say hello\" -> allow \"hello-world-agent may use hello-world\"",
            "changed: hello-world-agent hello-world.say_goodbye (2 records, first seq 2): \
             deny \"action is not in the allow list\" -> allow \"hello-world-agent may use hello-world\"",
        ],
        "{text}"
    );
    assert!(text.contains(
        "4 decision records replayed (2 other records skipped); the old policy reproduces 4 of them as recorded"
    ), "{text}");
    assert!(
        text.ends_with(
            "3 changed (2 distinct requests): 0 allow -> deny, 2 deny -> allow, 1 reason only\n"
        ),
        "{text}"
    );

    let out = diff_against(true, &old, &new, s(&records));
    assert_eq!(out.status.code(), Some(0));
    let v = json_out(&out);
    let r = &v["replay"];
    assert_eq!(
        [
            &r["replayed"],
            &r["skipped"],
            &r["changed"],
            &r["allow_to_deny"],
            &r["deny_to_allow"],
            &r["reason_only"]
        ],
        [
            &json!(4),
            &json!(2),
            &json!(3),
            &json!(0),
            &json!(2),
            &json!(1)
        ]
    );
    assert!(r["note"].as_str().unwrap().contains("no context"));
    assert_eq!(r["changes"][1]["records"], 2);
    assert_eq!(r["changes"][1]["old"]["policies"], json!([]));
    assert_eq!(r["changes"][1]["new"]["policies"], json!(["hello-world"]));

    // Same policy: nothing changes.
    let out = diff_against(true, &old, &old, s(&records));
    let v = json_out(&out);
    assert_eq!(
        (v["replay"]["changed"].clone(), v["text_changed"].clone()),
        (json!(0), json!(false))
    );
}

#[test]
fn diff_load_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let good = examples_dir().join("hello_world.cedar");
    let bad = write(
        dir.path(),
        "bad.cedar",
        "permit (principal, action, resource)\nwhen {",
    );
    let out = zt(&["policy", "diff", s(&good), s(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 2, column"), "{}", stderr(&out));
    let out = zt(&["policy", "diff", "--json", s(&bad), s(&good)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_out(&out)["error"]["line"], 2);

    let garbage = write(
        dir.path(),
        "garbage.jsonl",
        "{\"kind\": \"decision\", \"actor\": \"a\", \"action\": \"b\"}\nnot json\n",
    );
    let out = diff_against(false, &good, &good, s(&garbage));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 2: not JSON"),
        "{}",
        stderr(&out)
    );
    let no_kind = write(dir.path(), "nokind.jsonl", "{\"actor\": \"a\"}\n");
    let out = diff_against(false, &good, &good, s(&no_kind));
    assert_eq!(out.status.code(), Some(1));
    let out = diff_against(false, &good, &good, "/nonexistent.jsonl");
    assert_eq!(out.status.code(), Some(1));
    let out = zt(&["policy", "diff", s(&good)]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn diff_replays_an_audit_log_written_by_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let old = examples_dir().join("hello_world.cedar");
    let server = Server::start(&dir.path().join("data"), &["--policy", s(&old)]);
    let (status, body) = server.json(
        "POST",
        "/agents",
        Some(json!({"actor": "hello-world-agent"})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        server
            .decide("hello-world-agent", "hello-world.say_hello", "")
            .0,
        200
    );
    assert_eq!(
        server
            .decide("hello-world-agent", "hello-world.say_goodbye", "")
            .0,
        403
    );
    assert_eq!(
        server
            .decide("hello-world-agent", "hello-world.say_goodbye", "")
            .0,
        403
    );
    assert_eq!(server.decide("nobody", "hello-world.say_hello", "").0, 403);
    let lines = server.records();
    drop(server);
    let decisions = lines
        .iter()
        .filter(|l| common::parse(l)["kind"] == "decision")
        .count();
    assert_eq!(decisions, 4, "{lines:#?}");
    let records = write(dir.path(), "records.jsonl", &(lines.join("\n") + "\n"));

    let new = write(dir.path(), "new.cedar", WIDER);
    let out = diff_against(true, &old, &new, s(&records));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = json_out(&out)["replay"].clone();
    assert_eq!(r["replayed"], 4, "{r}");
    assert_eq!(r["skipped"], lines.len() - 4, "{r}");
    // The unregistered actor was denied by the registry, not by the policy.
    assert_eq!(r["old_matches_record"], 3, "{r}");
    assert_eq!(r["deny_to_allow"], 2, "{r}");
    assert_eq!(r["reason_only"], 1, "{r}");
    let goodbye = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "hello-world.say_goodbye")
        .unwrap();
    assert_eq!(goodbye["records"], 2);
    assert_eq!(goodbye["actor"], "hello-world-agent");
}
