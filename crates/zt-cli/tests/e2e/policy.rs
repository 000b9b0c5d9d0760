//! Policy end to end: Cedar policies with registry attributes and request context, explained
//! decisions, reviewed proposals by two admins, reload on SIGHUP, and the AuthZEN API.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{parse, Server};
use serde_json::{json, Value};

const ALICE: &str = "zt_admin_test-alice-0123456789abcdefghijklmnopqrstu";
const BOB: &str = "zt_admin_test-bob-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456";

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../zt-policy/examples/policies")
        .join(name)
}

/// A data directory whose admin token file names two admins.
fn two_admin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    std::fs::write(&file, format!("alice {ALICE}\nbob {BOB}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

fn records(server: &Server) -> Vec<Value> {
    common::records_as(server.port, ALICE)
}

fn register(server: &Server, actor: &str, trust: &str) -> String {
    let (s, _, b) = server.json_as(
        ALICE,
        "POST",
        "/agents",
        Some(json!({"actor": actor, "trust_level": trust})),
    );
    assert_eq!(s, 201, "{b}");
    b["token"].as_str().unwrap().to_string()
}

#[test]
fn cedar_decisions_use_attributes_and_context_and_explain_themselves() {
    let dir = two_admin_dir();
    let server = Server::start_with_auth(
        dir.path(),
        "credentials",
        &["--policy", example("mcp_github.cedar").to_str().unwrap()],
    );
    let trusted = register(&server, "trusted-bot", "high");
    let casual = register(&server, "casual-bot", "low");
    let pr = |token: &str, context: Value| {
        server.json_as(
            token,
            "POST",
            "/actions",
            Some(json!({"action": "mcp.github.create_pull_request", "resource": "repo/x", "context": context})),
        )
    };
    let (s, _, allowed) = pr(&trusted, json!({"approval_id": "CHG-1"}));
    assert_eq!(s, 200, "{allowed}");
    assert_eq!(
        allowed["reason"],
        "approved pull request by a high-trust agent"
    );
    assert_eq!(allowed["evidence"]["policies"], json!(["github-pr"]));

    let (s, _, no_approval) = pr(&trusted, json!({}));
    assert_eq!(s, 403);
    assert!(no_approval["reason"]
        .as_str()
        .unwrap()
        .contains("approval_id is missing"));
    assert_eq!(
        no_approval["evidence"]["policies"],
        json!(["github-pr-needs-approval"])
    );

    let (s, _, low_trust) = pr(&casual, json!({"approval_id": "CHG-1"}));
    assert_eq!(s, 403);
    assert!(low_trust["reason"]
        .as_str()
        .unwrap()
        .contains("trust_level high"));

    let (s, _, other) = server.json_as(
        &trusted,
        "POST",
        "/actions",
        Some(json!({"action": "mcp.github.delete_repo"})),
    );
    assert_eq!(s, 403);
    assert_eq!(other["reason"], "action is not in the allow list");
    assert!(other["evidence"].get("policies").is_none());

    // The deciding policies and the policy version are in the hashed record.
    let log = records(&server);
    let stored = log
        .iter()
        .find(|r| r["current_hash"] == allowed["audit"]["current_hash"])
        .unwrap();
    assert_eq!(stored["policies"], json!(["github-pr"]));
    assert_eq!(
        stored["policy_version"],
        allowed["evidence"]["policy_version"]
    );
    assert!(stored["policy_version"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
}

#[test]
fn policy_changes_are_proposed_reviewed_by_a_second_admin_and_recorded() {
    let dir = two_admin_dir();
    let server = Server::start_with_auth(dir.path(), "credentials", &[]);
    let agent = register(&server, "reader", "high");
    let decide = |action: &str| {
        server
            .json_as(&agent, "POST", "/actions", Some(json!({"action": action})))
            .0
    };
    assert_eq!(decide("docs.read"), 403);

    // Invalid policies are refused with a position.
    let (s, _, bad) = server.json_as(
        ALICE,
        "POST",
        "/policies/proposals",
        Some(json!({"cedar": "permit(principal, action,"})),
    );
    assert_eq!(s, 400);
    let error = bad["error"].as_str().unwrap();
    assert!(
        error.contains("line 1") && error.contains("column"),
        "{error}"
    );

    let cedar = "@id(\"docs\")\n@reason(\"documents are public\")\npermit(principal, action in Action::\"docs.*\", resource);\n";
    let (s, _, proposal) = server.json_as(
        ALICE,
        "POST",
        "/policies/proposals",
        Some(json!({"cedar": cedar})),
    );
    assert_eq!(s, 201, "{proposal}");
    let id = proposal["id"].as_str().unwrap().to_string();
    assert_eq!(proposal["status"]["state"], "pending");
    let diff = proposal["diff"].as_str().unwrap();
    assert!(
        diff.contains("+@reason(\"documents are public\")") && diff.contains("-@id(\"deny-1\")"),
        "{diff}"
    );
    let changed = proposal["impact"]["changed"].as_array().unwrap();
    assert_eq!(
        changed.len(),
        1,
        "the earlier docs.read would now be allowed: {proposal}"
    );
    assert_eq!(changed[0]["active"]["decision"], "deny");
    assert_eq!(changed[0]["proposed"]["decision"], "allow");
    assert_eq!(
        decide("docs.read"),
        403,
        "a proposal changes nothing by itself"
    );

    // The proposer cannot approve; a second admin can.
    let approve = format!("/policies/proposals/{id}/approve");
    let (s, _, refused) = server.json_as(ALICE, "POST", &approve, None);
    assert_eq!(s, 403, "{refused}");
    let (s, _, by_agent) = server.json_as(&agent, "POST", &approve, None);
    assert_eq!(s, 403, "{by_agent}");
    let (s, _, approved) = server.json_as(BOB, "POST", &approve, None);
    assert_eq!(s, 200, "{approved}");
    assert_eq!(approved["approved_by"], "bob");
    assert_eq!(decide("docs.read"), 200);
    let (s, _, _) = server.json_as(BOB, "POST", &approve, None);
    assert_eq!(s, 409, "a proposal is activated once");

    // A proposal made against an older policy cannot be activated.
    let (_, _, old) = server.json_as(
        BOB,
        "POST",
        "/policies/allow",
        Some(json!({"action": "a.b"})),
    );
    let (_, _, newer) = server.json_as(
        BOB,
        "POST",
        "/policies/allow",
        Some(json!({"action": "c.d"})),
    );
    let (s, _, _) = server.json_as(
        ALICE,
        "POST",
        &format!(
            "/policies/proposals/{}/approve",
            newer["proposal"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(s, 200);
    let (s, _, stale) = server.json_as(
        ALICE,
        "POST",
        &format!(
            "/policies/proposals/{}/approve",
            old["proposal"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(s, 409, "{stale}");
    assert!(stale["error"].as_str().unwrap().contains("changed since"));

    let trail: Vec<(String, String)> = records(&server)
        .iter()
        .filter(|r| {
            r["action"]
                .as_str()
                .unwrap()
                .starts_with("zt.admin.policies.")
        })
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_string(),
                r["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let names: Vec<&str> = trail.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "zt.admin.policies.propose",
            "zt.admin.policies.approve",
            "zt.admin.policies.activate",
            "zt.admin.policies.propose",
            "zt.admin.policies.propose",
            "zt.admin.policies.approve",
            "zt.admin.policies.activate"
        ]
    );
    assert_eq!((trail[0].1.as_str(), trail[1].1.as_str()), ("alice", "bob"));
}

#[test]
fn sighup_reloads_a_valid_policy_file_and_keeps_the_old_one_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.cedar");
    let allow = |action: &str| {
        format!("@id(\"p\")\n@reason(\"ok\")\npermit(principal, action == Action::\"{action}\", resource);\n")
    };
    std::fs::write(&policy, allow("one.read")).unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--policy", policy.to_str().unwrap()],
    );
    server.json("POST", "/agents", Some(json!({"actor": "a"})));
    assert_eq!(server.decide("a", "one.read", "").0, 200);

    let hup = |server: &Server| {
        Command::new("kill")
            .args(["-HUP", &server.child.id().to_string()])
            .status()
            .unwrap();
    };
    let wait_for = |action: &str, status: u16| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if server.decide("a", action, "").0 == status {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    std::fs::write(&policy, allow("two.read")).unwrap();
    hup(&server);
    assert!(wait_for("two.read", 200), "the new file is active");
    assert_eq!(server.decide("a", "one.read", "").0, 403);

    std::fs::write(&policy, "permit(principal, action == ").unwrap();
    hup(&server);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        server.decide("a", "two.read", "").0,
        200,
        "an invalid file never replaces a valid policy"
    );
    let reloads = server
        .records()
        .iter()
        .filter(|l| parse(l)["action"] == "zt.admin.policies.reload")
        .count();
    assert_eq!(reloads, 1);
}

#[test]
fn a_policy_file_that_replaces_the_stored_policy_at_start_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policy = dir.path().join("policy.cedar");
    let allow = |action: &str| {
        format!("@id(\"p\")\n@reason(\"ok\")\npermit(principal, action == Action::\"{action}\", resource);\n")
    };
    let reloads = |server: &Server| -> Vec<Value> {
        server
            .records()
            .iter()
            .map(|l| parse(l))
            .filter(|r| r["action"] == "zt.admin.policies.reload")
            .collect()
    };
    let with_file = || Server::start(&data, &["--policy", policy.to_str().unwrap()]);

    std::fs::write(&policy, allow("one.read")).unwrap();
    let first = with_file();
    first.json("POST", "/agents", Some(json!({"actor": "a"})));
    assert_eq!(first.decide("a", "one.read", "").0, 200);
    let first_version = parse(first.records().last().unwrap())["policy_version"].clone();
    assert!(
        reloads(&first).is_empty(),
        "a first policy replaces nothing"
    );
    drop(first);

    // Restarted with another file: the replacement is a policy change, in the log before the
    // new policy decides anything.
    std::fs::write(&policy, allow("two.read")).unwrap();
    let second = with_file();
    let recorded = reloads(&second);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let reason = recorded[0]["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        format!(
            "policy file loaded at start, replacing `{}`",
            first_version.as_str().unwrap()
        )
    );
    assert_eq!(second.decide("a", "two.read", "").0, 200);
    assert_eq!(second.decide("a", "one.read", "").0, 403);
    let decided = parse(second.records().last().unwrap());
    assert_eq!(decided["policy_version"], recorded[0]["policy_version"]);
    assert_ne!(decided["policy_version"], first_version);
    drop(second);

    // The same file again replaces nothing; without a file, the stored policy is the file's.
    let third = with_file();
    assert_eq!(reloads(&third).len(), 1);
    drop(third);
    let fourth = Server::start(&data, &[]);
    assert_eq!(fourth.decide("a", "two.read", "").0, 200);
    assert_eq!(reloads(&fourth).len(), 1);
}

#[test]
fn authzen_evaluations_use_the_same_decision_path_and_log() {
    let dir = two_admin_dir();
    let server = Server::start_with_auth(dir.path(), "credentials", &["--single-admin"]);
    let agent = register(&server, "zen", "high");
    let (s, _, _) = server.json_as(
        ALICE,
        "POST",
        "/policies/allow",
        Some(json!({"action": "files.read"})),
    );
    assert_eq!(s, 201);
    let one = |action: &str| {
        server.json_as(
            &agent,
            "POST",
            "/access/v1/evaluation",
            Some(json!({"subject": {"type": "agent", "id": "zen"}, "action": {"name": action},
                        "resource": {"type": "file", "id": "f1", "properties": {"environment": "prod"}}})),
        )
    };
    let (s, _, allowed) = one("files.read");
    assert_eq!((s, &allowed["decision"]), (200, &json!(true)));
    assert_eq!(allowed["context"]["policies"], json!(["allow:files.read"]));
    let (s, _, denied) = one("files.delete");
    assert_eq!((s, &denied["decision"]), (200, &json!(false)));
    // A property that is not a string is refused, not left out of the decision.
    let records_before = records(&server).len();
    let (s, _, refused) = server.json_as(
        &agent,
        "POST",
        "/access/v1/evaluation",
        Some(
            json!({"subject": {"type": "agent", "id": "zen"}, "action": {"name": "files.read"},
                    "resource": {"type": "file", "id": "f1", "properties": {"environment": 3}}}),
        ),
    );
    assert_eq!(s, 400, "{refused}");
    assert_eq!(records(&server).len(), records_before);
    // A batch is checked whole before any of it is decided: an item whose request id is too
    // long refuses it, the items before it included.
    let (s, _, refused) = server.json_as(
        &agent,
        "POST",
        "/access/v1/evaluations",
        Some(json!({"subject": {"type": "agent", "id": "zen"}, "resource": {"type": "file", "id": "f"},
                    "evaluations": [{"action": {"name": "files.read"}},
                                    {"action": {"name": "files.read"}, "context": {"request_id": "x".repeat(1000)}}]})),
    );
    assert_eq!(s, 400, "{refused}");
    assert_eq!(records(&server).len(), records_before);
    assert_eq!(
        denied["context"]["reason_user"]["en"],
        "action is not in the allow list"
    );

    // A subject other than the authenticated agent is a logged deny, as on /actions.
    let (s, _, spoof) = server.json_as(
        &agent,
        "POST",
        "/access/v1/evaluation",
        Some(json!({"subject": {"type": "agent", "id": "someone-else"}, "action": {"name": "files.read"}, "resource": {"type": "file", "id": "f"}})),
    );
    assert_eq!((s, &spoof["decision"]), (200, &json!(false)));

    let (s, _, batch) = server.json_as(
        &agent,
        "POST",
        "/access/v1/evaluations",
        Some(json!({"subject": {"type": "agent", "id": "zen"}, "resource": {"type": "file", "id": "f"},
                    "evaluations": [{"action": {"name": "files.read"}}, {"action": {"name": "files.write"}}, {"action": {"name": "files.read"}}],
                    "options": {"evaluations_semantic": "deny_on_first_deny"}})),
    );
    assert_eq!(s, 200);
    let decisions: Vec<bool> = batch["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["decision"].as_bool().unwrap())
        .collect();
    assert_eq!(decisions, [true, false], "stops at the first deny");

    let (s, _, _) = common::http_raw(
        server.port,
        "POST",
        "/access/v1/evaluation",
        &[],
        Some(b"{}"),
    )
    .unwrap();
    assert_eq!(s, 401, "AuthZEN needs the agent's credential too");
    let hashes: Vec<Value> = records(&server)
        .iter()
        .map(|r| r["current_hash"].clone())
        .collect();
    for answer in [&allowed, &denied, &spoof] {
        assert!(
            hashes.contains(&answer["context"]["audit"]["current_hash"]),
            "every evaluation is in the log"
        );
    }
    // The properties decided, so the record binds them, as it binds a context.
    let digest = zt_contract::Digest32::sha256(br#"{"environment":"prod"}"#).to_hex();
    let log = records(&server);
    let record_of = |answer: &Value| {
        log.iter()
            .find(|r| r["current_hash"] == answer["context"]["audit"]["current_hash"])
            .cloned()
            .unwrap()
    };
    for answer in [&allowed, &denied] {
        assert_eq!(
            record_of(answer)["resource_attributes_sha256"],
            json!(digest)
        );
        assert_eq!(
            answer["context"]["evidence"]["resource_attributes_sha256"],
            json!(digest)
        );
    }
    assert!(record_of(&spoof)
        .get("resource_attributes_sha256")
        .is_none());
    let (s, _, answer) = server.json_as(
        &agent,
        "POST",
        "/actions",
        Some(json!({"action": "files.read", "resource": "f1",
                    "resource_attributes": {"environment": "prod"}})),
    );
    assert_eq!(s, 200, "{answer}");
    assert_eq!(
        answer["evidence"]["resource_attributes_sha256"],
        json!(digest)
    );
    // Every record's hash covers the digest: the whole log verifies.
    let verified = common::zt(&[
        "audit",
        "verify",
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}
