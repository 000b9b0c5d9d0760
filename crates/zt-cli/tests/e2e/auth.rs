//! Authenticated actors, end to end: bearer tokens bound to actors, spoofing, rotation,
//! revocation, admin separation, replay protection and rate limits. Each refusal has the right
//! status and leaves the right audit trace, and nothing protected is allowed.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use common::{allow, http_raw, register, Server};
use serde_json::{json, Value};

fn records(server: &Server, admin: &str) -> Vec<Value> {
    let (status, _, _) = server.json_as(admin, "GET", "/audit/head", None);
    assert_eq!(status, 200);
    common::records_as(server.port, admin)
}

fn decide(server: &Server, token: &str, body: Value) -> (u16, String, Value) {
    server.json_as(token, "POST", "/actions", Some(body))
}

#[test]
fn credentials_are_required_and_bind_the_actor() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_auth(dir.path(), "credentials", &["--single-admin"]);
    let admin = server.admin_token();
    let key_file = dir.path().join("admin-token");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (_, health) = server.json("GET", "/health", None);
    assert_eq!(health["auth"], "credentials");
    assert!(health["warning"].is_null());

    let alice = register(&server, &admin, "alice");
    register(&server, &admin, "bob");
    allow(&server, &admin, "files.read");

    // No credential, a forged one, an admin token: 401, no decision, nothing allowed.
    let (s, headers, raw) = http_raw(
        server.port,
        "POST",
        "/actions",
        &[],
        Some(br#"{"actor":"alice","action":"files.read"}"#),
    )
    .unwrap();
    assert_eq!(s, 401);
    assert!(headers
        .to_ascii_lowercase()
        .contains("www-authenticate: bearer"));
    assert_eq!(serde_json::from_slice::<Value>(&raw).unwrap()["ok"], false);
    for (bad, expected) in [
        ("zt_agent_forged", "not valid"),
        (admin.as_str(), "this is an admin credential"),
    ] {
        let (s, _, body) = decide(
            &server,
            bad,
            json!({"actor": "alice", "action": "files.read"}),
        );
        assert_eq!(s, 401, "{body}");
        assert!(body["error"].as_str().unwrap().contains(expected), "{body}");
    }

    // The credential names the actor; the body may omit it or repeat it.
    let (s, _, body) = decide(
        &server,
        &alice,
        json!({"action": "files.read", "resource": "a.txt"}),
    );
    assert_eq!((s, body["actor"].as_str()), (200, Some("alice")));
    assert_eq!(body["evidence"]["authenticated"], true);
    let (s, _, _) = decide(
        &server,
        &alice,
        json!({"actor": "alice", "action": "files.read"}),
    );
    assert_eq!(s, 200);

    // Claiming another actor is a logged deny.
    let (s, _, spoof) = decide(
        &server,
        &alice,
        json!({"actor": "bob", "action": "files.read"}),
    );
    assert_eq!(s, 403);
    assert_eq!(spoof["decision"], "deny");
    assert_eq!(spoof["actor"], "alice");
    assert_eq!(spoof["evidence"]["claimed_actor"], "bob");
    let reason = spoof["reason"].as_str().unwrap();
    assert!(
        reason.contains("`bob`") && reason.contains("`alice`"),
        "{reason}"
    );

    let log = records(&server, &admin);
    let stored = log
        .iter()
        .find(|r| r["current_hash"] == spoof["audit"]["current_hash"])
        .unwrap();
    assert_eq!(
        (stored["actor"].as_str(), stored["claimed_actor"].as_str()),
        (Some("alice"), Some("bob"))
    );
    assert_eq!(stored["authenticated"], true);
    assert!(log
        .iter()
        .filter(|r| r["kind"] == "decision")
        .all(|r| r["authenticated"] == true));
    assert!(log
        .iter()
        .filter(|r| r["kind"] == "admin")
        .all(|r| r["actor"] == "admin" && r["authenticated"] == true));

    let metrics = server.metrics();
    assert!(
        metrics.contains("zt_rejected_requests_total{cause=\"unauthenticated\"} 3"),
        "{metrics}"
    );
}

#[test]
fn rotated_and_revoked_tokens_stop_working_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_auth(dir.path(), "credentials", &["--single-admin"]);
    let admin = server.admin_token();
    let old = register(&server, &admin, "carol");
    allow(&server, &admin, "x.y");
    assert_eq!(decide(&server, &old, json!({"action": "x.y"})).0, 200);

    // Registering again does not reveal or change the token.
    let (s, _, again) = server.json_as(&admin, "POST", "/agents", Some(json!({"actor": "carol"})));
    assert_eq!(s, 201);
    assert!(again.get("token").is_none());

    let (s, _, rotated) = server.json_as(&admin, "POST", "/agents/carol/token", None);
    assert_eq!(s, 200);
    let new = rotated["token"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(decide(&server, &old, json!({"action": "x.y"})).0, 401);
    assert_eq!(decide(&server, &new, json!({"action": "x.y"})).0, 200);

    // Tokens survive a restart; only their hashes are on disk.
    assert_eq!(server.terminate(), Some(0));
    let registry = std::fs::read_to_string(dir.path().join("agents.json")).unwrap();
    assert!(!registry.contains(&new) && !registry.contains(&old));
    let server = Server::start_with_auth(dir.path(), "credentials", &["--single-admin"]);
    assert_eq!(decide(&server, &new, json!({"action": "x.y"})).0, 200);

    let (s, _, _) = server.json_as(&admin, "DELETE", "/agents/carol", None);
    assert_eq!(s, 200);
    assert_eq!(decide(&server, &new, json!({"action": "x.y"})).0, 401);
    let actions: Vec<String> = records(&server, &admin)
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    assert!(actions.contains(&"zt.admin.agents.rotate_token".to_string()));
    assert_eq!(actions.last().unwrap(), "zt.admin.agents.remove");
}

#[test]
fn admin_routes_need_an_admin_credential() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_auth(dir.path(), "credentials", &["--single-admin"]);
    let admin = server.admin_token();
    let dave = register(&server, &admin, "dave");

    for (method, path, body) in [
        ("POST", "/agents", Some(json!({"actor": "mallory"}))),
        ("GET", "/agents", None),
        ("DELETE", "/agents/dave", None),
        ("POST", "/agents/dave/token", None),
        ("POST", "/policies/allow", Some(json!({"action": "*"}))),
        ("GET", "/policies", None),
        ("GET", "/audit/records", None),
    ] {
        let bytes = body.as_ref().map(|b| b.to_string().into_bytes());
        let (s, _, _) = http_raw(server.port, method, path, &[], bytes.as_deref()).unwrap();
        assert_eq!(s, 401, "{method} {path} without a credential");
        let (s, _, refused) = server.json_as(&dave, method, path, body.clone());
        assert_eq!(s, 403, "{method} {path} with an agent token: {refused}");
        assert!(refused["error"]
            .as_str()
            .unwrap()
            .contains("agent credentials cannot use admin routes"));
    }
    // Public reads stay public.
    for path in ["/health", "/audit/head", "/audit/keys", "/metrics"] {
        assert_eq!(
            http_raw(server.port, "GET", path, &[], None).unwrap().0,
            200,
            "{path}"
        );
    }
    // Nothing changed, and each attempt is on the record, as dave.
    let (s, _, agents) = server.json_as(&admin, "GET", "/agents", None);
    assert_eq!(s, 200);
    assert_eq!(agents["agents"].as_array().unwrap().len(), 1);
    let attempts: Vec<Value> = records(&server, &admin)
        .into_iter()
        .filter(|r| r["action"] == "zt.admin.access")
        .collect();
    assert_eq!(attempts.len(), 7);
    assert!(attempts
        .iter()
        .all(|r| r["actor"] == "dave" && r["decision"] == "deny"));
    assert_eq!(
        decide(&server, &dave, json!({"action": "anything"})).0,
        403,
        "no policy was changed"
    );
}

#[test]
fn a_request_id_is_good_once_even_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_auth(dir.path(), "credentials", &["--single-admin"]);
    let admin = server.admin_token();
    let erin = register(&server, &admin, "erin");
    let frank = register(&server, &admin, "frank");
    allow(&server, &admin, "pay.*");
    let once = json!({"action": "pay.invoice", "resource": "inv-1", "request_id": "nonce-1"});
    assert_eq!(decide(&server, &erin, once.clone()).0, 200);
    let (s, _, replay) = decide(&server, &erin, once.clone());
    assert_eq!(s, 409);
    assert_eq!(replay["decision"], "deny");
    assert!(replay["reason"].as_str().unwrap().contains("nonce-1"));
    assert_eq!(replay["evidence"]["request_id"], "nonce-1");
    assert_eq!(
        decide(&server, &frank, once.clone()).0,
        200,
        "nonces are per actor"
    );

    assert_eq!(server.terminate(), Some(0));
    let server = Server::start_with_auth(dir.path(), "credentials", &["--single-admin"]);
    assert_eq!(
        decide(&server, &erin, once).0,
        409,
        "the window survives a restart"
    );
    let log = records(&server, &admin);
    let replays = log
        .iter()
        .filter(|r| r["reason"].as_str().unwrap_or("").contains("already used"))
        .count();
    assert_eq!(replays, 2);
}

#[test]
fn rate_limits_refuse_past_the_burst_per_actor_and_are_summarized() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_auth(
        dir.path(),
        "credentials",
        &["--rate-limit", "1/s", "--rate-burst", "5"],
    );
    let admin = server.admin_token();
    let gina = register(&server, &admin, "gina");
    let hank = register(&server, &admin, "hank");
    let statuses: Vec<u16> = (0..8)
        .map(|_| decide(&server, &gina, json!({"action": "a.b"})).0)
        .collect();
    assert_eq!(statuses, [403, 403, 403, 403, 403, 429, 429, 429]);
    let auth = format!("Bearer {gina}");
    let (s, headers, _) = http_raw(
        server.port,
        "POST",
        "/actions",
        &[("authorization", auth.as_str())],
        Some(br#"{"action":"a.b"}"#),
    )
    .unwrap();
    assert_eq!(s, 429);
    assert!(
        headers.to_ascii_lowercase().contains("retry-after: 1"),
        "{headers}"
    );
    assert_eq!(
        decide(&server, &hank, json!({"action": "a.b"})).0,
        403,
        "another actor is unaffected"
    );

    let before = records(&server, &admin).len();
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start_with_auth(dir.path(), "credentials", &["--single-admin"]);
    let log = records(&server, &admin);
    assert_eq!(
        log.len(),
        before + 1,
        "refusals are one summary record, not one each"
    );
    let summary = log.last().unwrap();
    assert_eq!(summary["kind"], "rejections");
    assert_eq!(summary["counts"]["rate_limited"], 4);
}
