//! Names are hostile input, end to end: actions, actors and resources outside their grammar are
//! refused with 400 before any policy work (no record, counted as `invalid_request`), a case
//! variant of an action is folded and hits the deny its lower-case form hits, a huge dotted
//! action is refused while `/health` keeps answering, look-alike actors cannot be registered,
//! and an agent registered under a now-invalid name does not stop the server.

use crate::common;

use common::{parse, Server};
use serde_json::{json, Value};

/// `allow aws.s3.*`, `deny aws.s3.delete*`: the rule set the evasions were found against.
const POLICY: &str = r#"{"allow": [{"action": "aws.s3.*", "reason": "s3 is fine"}],
  "deny": [{"action": "aws.s3.delete*", "reason": "no s3 deletes"}]}"#;

fn server_with_policy(dir: &std::path::Path) -> Server {
    let policy = dir.join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    let server = Server::start(dir, &["--policy", policy.to_str().unwrap()]);
    let (status, body) = server.json("POST", "/agents", Some(json!({"actor": "names-agent"})));
    assert_eq!(status, 201, "{body}");
    server
}

fn decision_records(server: &Server) -> Vec<Value> {
    server
        .records()
        .iter()
        .map(|l| parse(l))
        .filter(|r| r["kind"] == "decision")
        .collect()
}

/// Asserts a 400 JSON refusal whose error starts with `prefix`.
fn assert_refused(what: &str, (status, body): (u16, Value), prefix: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["ok"], false, "{what}: {body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(prefix),
        "{what}: `{error}` should start with `{prefix}`"
    );
    assert!(body.get("decision").is_none(), "{what}: {body}");
}

fn invalid_request_count(server: &Server) -> u64 {
    let name = "zt_rejected_requests_total{cause=\"invalid_request\"}";
    common::metric(&server.metrics(), name).map_or(0, |v| v as u64)
}

#[test]
fn action_names_that_evaded_the_deny_rule_are_refused_or_folded_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_policy(dir.path());

    let dots = format!("h{}", ".".repeat(16_300));
    for action in [
        "aws.s3.\u{0}delete",
        "aws.s3.\u{200b}delete",
        "aws.s3.\u{ff44}elete",
        "aws.s3.*",
        "aws.s3..delete",
        dots.as_str(),
    ] {
        let answer = server.decide("names-agent", action, "bucket");
        assert_refused(
            &format!("{action:.20?}"),
            answer,
            "invalid request: action ",
        );
        let (status, health) = server.json("GET", "/health", None);
        assert_eq!(status, 200, "{health}");
    }
    assert!(
        decision_records(&server).is_empty(),
        "no refused name is recorded"
    );
    assert_eq!(invalid_request_count(&server), 6, "each refusal counted");

    // A case variant is folded: the deny its lower-case form hits, recorded and echoed folded.
    let (status, body) = server.decide("names-agent", "aws.s3.DELETE_bucket", "bucket");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "no s3 deletes", "{body}");
    assert_eq!(body["action"], "aws.s3.delete_bucket", "{body}");
    let (status, body) = server.decide("names-agent", "AWS.S3.Get_Object", "bucket");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action"], "aws.s3.get_object", "{body}");
    let records = decision_records(&server);
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["aws.s3.delete_bucket", "aws.s3.get_object"]);
}

#[test]
fn resources_are_checked_and_normalized() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_policy(dir.path());
    for resource in ["prod\u{202e}db", "prod\u{200b}db", "prod\ndb", " prod"] {
        let answer = server.decide("names-agent", "aws.s3.get_object", resource);
        assert_refused(
            &format!("{resource:?}"),
            answer,
            "invalid request: resource ",
        );
    }
    let long = "r".repeat(1025);
    let answer = server.decide("names-agent", "aws.s3.get_object", &long);
    assert_refused("long resource", answer, "invalid request: resource ");

    let (status, body) = server.decide("names-agent", "aws.s3.get_object", "cafe\u{301}/x y");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resource"], "caf\u{e9}/x y", "{body}");
    let records = decision_records(&server);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["resource"], "caf\u{e9}/x y");
}

#[test]
fn look_alike_and_invisible_actors_cannot_be_registered_or_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, body) = server.json("POST", "/agents", Some(json!({"actor": "agent-a"})));
    assert_eq!(status, 201, "{body}");
    for actor in [
        "\u{430}gent-a",
        "\u{ff41}gent-a",
        "agent\u{200b}-a",
        "agent-\u{202e}a",
        "agent-a\u{0}",
        "agent-a\n",
        " agent-a",
        "agent-a ",
        "cafe\u{301}",
        "spiffe://Example.org/a",
    ] {
        let answer = server.json("POST", "/agents", Some(json!({"actor": actor})));
        assert_refused(
            &format!("register {actor:?}"),
            answer,
            "invalid request: actor ",
        );
        let answer = server.decide(actor, "aws.s3.get_object", "");
        assert_refused(
            &format!("decide as {actor:?}"),
            answer,
            "invalid request: actor ",
        );
    }
    let (_, list) = server.json("GET", "/agents", None);
    let names: Vec<&str> = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["actor"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["agent-a"]);
    let (status, body) = server.json(
        "POST",
        "/agents",
        Some(json!({"actor": "spiffe://example.org/agent/billing"})),
    );
    assert_eq!(status, 201, "{body}");
}

#[test]
fn an_authzen_batch_with_one_bad_name_decides_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_policy(dir.path());
    let batch = json!({
        "subject": {"type": "agent", "id": "names-agent"},
        "resource": {"type": "bucket", "id": "b"},
        "evaluations": [
            {"action": {"name": "aws.s3.get_object"}},
            {"action": {"name": "aws.s3.\u{200b}delete"}},
        ],
    });
    let answer = server.json("POST", "/access/v1/evaluations", Some(batch));
    assert_refused("batch", answer, "invalid request: action ");
    assert!(decision_records(&server).is_empty());

    let one = json!({
        "subject": {"type": "agent", "id": "names-agent"},
        "action": {"name": "aws.s3.Delete_Object"},
        "resource": {"type": "bucket", "id": "b"},
    });
    let (status, body) = server.json("POST", "/access/v1/evaluation", Some(one));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], false, "{body}");
    assert_eq!(body["context"]["reason_user"]["en"], "no s3 deletes");
}

#[test]
fn a_policy_naming_an_upper_case_action_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let answer = server.json(
        "POST",
        "/policies/allow",
        Some(json!({"action": "aws.s3.DELETE*"})),
    );
    assert_refused("allow shortcut", answer, "invalid request: policy action ");
    let cedar = r#"forbid(principal, action == Action::"aws.s3.DELETE_bucket", resource);"#;
    let (status, body) = server.json("POST", "/policies/proposals", Some(json!({"cedar": cedar})));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("upper case"),
        "{body}"
    );
}

#[test]
fn an_agent_registered_under_a_now_invalid_name_is_denied_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_auth(dir.path(), "credentials", &["--single-admin"]);
    let admin = server.admin_token();
    let (status, _, body) = server.json_as(
        &admin,
        "POST",
        "/agents",
        Some(json!({"actor": "legacy-agent"})),
    );
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(server.terminate(), Some(0));

    // As an earlier version could have stored it: a Cyrillic `а` in the name.
    let registry = dir.path().join("agents.json");
    let text = std::fs::read_to_string(&registry).unwrap();
    assert!(text.contains("\"legacy-agent\""), "{text}");
    std::fs::write(
        &registry,
        text.replace("\"legacy-agent\"", "\"leg\u{430}cy-agent\""),
    )
    .unwrap();

    let server = Server::start_with_auth(dir.path(), "credentials", &["--single-admin"]);
    let (status, _, body) = server.json_as(
        &token,
        "POST",
        "/actions",
        Some(json!({"action": "aws.s3.get_object"})),
    );
    assert_eq!(status, 401, "its token authenticates nobody: {body}");
    let (status, _, list) = server.json_as(&admin, "GET", "/agents", None);
    assert_eq!(status, 200);
    assert_eq!(list["agents"][0]["actor"], "leg\u{430}cy-agent", "{list}");
    let (status, _, body) = server.json_as(&admin, "POST", "/agents/leg%D0%B0cy-agent/token", None);
    assert_eq!(status, 400, "no new token for it: {body}");
    let (status, _, body) = server.json_as(&admin, "DELETE", "/agents/leg%D0%B0cy-agent", None);
    assert_eq!(status, 200, "it can be removed: {body}");
}
