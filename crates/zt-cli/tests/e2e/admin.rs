//! Administering the default server, end to end with the real binary: `zt admin add|list|
//! remove` picked up without a restart, weak admin tokens refused, pending proposals kept
//! across restarts with ids unique for the log's life and matched exactly (and withdrawn by
//! any admin, on the record), `--policy FILE`
//! owning the policy, nothing created by a refused start, `POST /policies/allow` comparing
//! parsed policies, and re-registration of an agent with other attributes refused.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, records_as, zt, zt_bin, Server};
use serde_json::{json, Value};

/// How long a change to a watched file may take to be in force (polled every second).
const RELOAD_BOUND: Duration = Duration::from_secs(15);

/// Waits until `check` holds; panics with `what` after [`RELOAD_BOUND`].
fn until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < RELOAD_BOUND,
            "{what}: not after {RELOAD_BOUND:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `zt admin add NAME --data-dir DIR`: the token it printed.
fn admin_add(dir: &Path, name: &str) -> String {
    let out = zt(&["admin", "add", name, "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A data directory whose admin token file names alice and bob (made by `zt admin add`).
fn two_admins(dir: &Path) -> (String, String) {
    (admin_add(dir, "alice"), admin_add(dir, "bob"))
}

/// A credentials server logging at info level (the common harness logs warnings only).
fn start_logged(data_dir: &Path, extra: &[&str]) -> Server {
    let port = free_port();
    let child = Command::new(zt_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("ZT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        port,
        data_dir: data_dir.to_path_buf(),
    };
    until("server ready", || {
        matches!(common::http(port, "GET", "/health", None), Ok((200, _)))
    });
    server
}

fn health(server: &Server) -> Value {
    let (status, body) = server.json("GET", "/health", None);
    assert_eq!(status, 200, "{body}");
    body
}

/// `/health` as an admin sees it: the reasons of failures too.
fn health_as(server: &Server, admin: &str) -> Value {
    let (status, _, body) = server.json_as(admin, "GET", "/health", None);
    assert_eq!(status, 200, "{body}");
    body
}

fn hangup(server: &Server) {
    Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn an_admin_added_with_zt_admin_add_approves_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_logged(dir.path(), &[]);
    let first = server.admin_token();

    // The only admin proposes; the 202 says what happens next and carries no active version.
    let (s, _, pending) = server.json_as(
        &first,
        "POST",
        "/policies/allow",
        Some(json!({"action": "docs.read", "reason": "public"})),
    );
    assert_eq!(s, 202, "{pending}");
    let id = pending["proposal"].as_str().unwrap().to_string();
    assert_eq!(pending["approvers"], json!([]));
    assert!(
        pending["next"].as_str().unwrap().contains("zt admin add"),
        "{pending}"
    );
    assert!(pending.get("policy_version").is_none(), "{pending}");
    assert_eq!(
        pending["active_policy_version"],
        health(&server)["policy_version"]
    );
    assert_ne!(
        pending["proposed_policy_version"],
        pending["active_policy_version"]
    );
    let approve = format!("/policies/proposals/{id}/approve");
    assert_eq!(server.json_as(&first, "POST", &approve, None).0, 403);

    let bob = admin_add(dir.path(), "bob");
    assert!(bob.starts_with("zt_admin_"));
    let file = dir.path().join("admin-token");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    until("bob's token accepted", || {
        server.json_as(&bob, "GET", "/policies", None).0 == 200
    });
    let (s, _, view) = server.json_as(&first, "GET", &format!("/policies/proposals/{id}"), None);
    assert_eq!(s, 200, "{view}");
    assert_eq!(view["approvers"], json!(["bob"]));
    let (s, _, approved) = server.json_as(&bob, "POST", &approve, None);
    assert_eq!(s, 200, "{approved}");
    assert_eq!(approved["approved_by"], "bob");

    let listed = zt(&["admin", "list", "--data-dir", dir.path().to_str().unwrap()]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["admin", "bob"]);
    assert!(!listed.contains("zt_admin_"), "list never shows a token");

    // A weak token added by hand is refused: the admins in force stay, /health says why.
    let good = std::fs::read_to_string(&file).unwrap();
    write_private(&file, &format!("{good}carol x\n"));
    until("the weak file reported", || {
        health_as(&server, &bob)["reload_errors"]["admin_token_file"]
            .as_str()
            .is_some_and(|e| e.contains("weak") && e.contains("carol"))
    });
    // Anyone else learns that it failed, not the admins' names or the file's path.
    let public = health(&server)["reload_errors"]["admin_token_file"].clone();
    assert_eq!(
        public,
        "failed; the reason is shown to admins and in the server log"
    );
    assert_eq!(server.json_as(&bob, "GET", "/policies", None).0, 200);
    assert_eq!(server.json_as("x", "GET", "/policies", None).0, 401);

    // Removing bob is picked up too, and a good file clears the reported error.
    write_private(&file, &good);
    let removed = zt(&[
        "admin",
        "remove",
        "bob",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(removed.status.code(), Some(0));
    until("bob's token refused", || {
        server.json_as(&bob, "GET", "/policies", None).0 == 401
    });
    assert_eq!(health(&server)["reload_errors"], json!({}));
    let last = zt(&[
        "admin",
        "remove",
        "admin",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(last.status.code(), Some(2), "the last admin stays");

    // SIGHUP without --policy is not silently ignored.
    hangup(&server);
    std::thread::sleep(Duration::from_millis(500));
    let (code, log) = stop_with_log(server);
    assert_eq!(code, Some(0));
    assert!(log.contains("no --policy file to reload"), "{log}");
    assert!(
        log.contains("admin token file reloaded") && log.contains("\"bob\""),
        "{log}"
    );
    assert!(log.contains("admin token file refused"), "{log}");
    for token in [&first, &bob] {
        assert!(!log.contains(token.as_str()), "a token reached the log");
    }
}

/// SIGTERM, then the exit code and what the server logged.
fn stop_with_log(mut server: Server) -> (Option<i32>, String) {
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    let code = server.child.wait().unwrap().code();
    (code, server.stderr())
}

#[test]
fn a_weak_admin_token_refuses_the_start_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("admins");
    write_private(&tokens, "alice x\n");
    let data_dir = dir.path().join("data");
    let out = Command::new(zt_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--admin-token-file")
        .arg(&tokens)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a weak token is a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("weak") && stderr.contains("`alice`") && stderr.contains("zt admin add"),
        "{stderr}"
    );
    assert!(!data_dir.exists(), "a refused start creates nothing");
}

#[test]
fn a_bad_policy_file_leaves_no_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("bad.cedar");
    std::fs::write(&policy, "permit(principal, action ==").unwrap();
    let data_dir = dir.path().join("data");
    let out = Command::new(zt_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.cedar"), "{stderr}");
    assert!(
        !data_dir.exists(),
        "no token file, key, audit database or lock is left behind"
    );
}

#[test]
fn pending_proposals_survive_a_restart_with_ids_unique_and_matched_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = two_admins(dir.path());
    let server = Server::start_with_auth(dir.path(), "credentials", &[]);
    let propose = |server: &Server, action: &str| {
        let (s, _, body) = server.json_as(
            &alice,
            "POST",
            "/policies/allow",
            Some(json!({"action": action})),
        );
        assert_eq!(s, 202, "{body}");
        assert_eq!(body["approvers"], json!(["bob"]));
        body["proposal"].as_str().unwrap().to_string()
    };
    let first = propose(&server, "docs.read");
    assert_eq!(server.terminate(), Some(0));

    let server = Server::start_with_auth(dir.path(), "credentials", &[]);
    let (s, _, kept) = server.json_as(&bob, "GET", &format!("/policies/proposals/{first}"), None);
    assert_eq!(s, 200, "the pending proposal survived the restart: {kept}");
    assert_eq!(kept["status"]["state"], "pending");
    assert_eq!(kept["proposed_by"], "alice");
    let second = propose(&server, "docs.write");
    assert_ne!(first, second, "ids are never reused");
    let seq = |id: &str| id.strip_prefix("prop-").unwrap().parse::<u64>().unwrap();
    assert!(seq(&second) > seq(&first));

    // Aliases of an id are not that id.
    let n = seq(&first);
    for alias in [
        format!("prop-+{n}"),
        format!("prop-0{n}"),
        format!("prop-{n}%20"),
    ] {
        let (s, _, body) = server.json_as(
            &bob,
            "POST",
            &format!("/policies/proposals/{alias}/approve"),
            None,
        );
        assert_eq!(s, 404, "{alias}: {body}");
        let (s, _, _) = server.json_as(&bob, "GET", &format!("/policies/proposals/{alias}"), None);
        assert_eq!(s, 404, "{alias}");
    }
    let (s, _, approved) = server.json_as(
        &bob,
        "POST",
        &format!("/policies/proposals/{first}/approve"),
        None,
    );
    assert_eq!(s, 200, "{approved}");

    // Each id is the seq of the record that filed it; the approval names the canonical id.
    let log = records_as(server.port, &alice);
    for id in [&first, &second] {
        let filed = &log[seq(id) as usize];
        assert_eq!(filed["action"], "zt.admin.policies.propose", "{filed}");
        assert_eq!(filed["actor"], "alice");
    }
    let approval = log
        .iter()
        .find(|r| r["action"] == "zt.admin.policies.approve")
        .unwrap();
    assert_eq!(approval["resource"], json!(first));

    // Any admin may withdraw a pending proposal (here not its proposer); the withdrawal is
    // recorded, the proposal is gone, and an activated one cannot be withdrawn.
    let withdraw =
        |id: &str| server.json_as(&bob, "DELETE", &format!("/policies/proposals/{id}"), None);
    let (s, _, body) = withdraw(&second);
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["id"], json!(second));
    assert_eq!(body["withdrawn_by"], "bob");
    let (s, _, _) = server.json_as(
        &alice,
        "GET",
        &format!("/policies/proposals/{second}"),
        None,
    );
    assert_eq!(s, 404, "a withdrawn proposal is gone");
    assert_eq!(withdraw(&second).0, 404, "withdrawn once");
    assert_eq!(withdraw("prop-999999").0, 404);
    let (s, _, body) = withdraw(&first);
    assert_eq!(s, 409, "an activated proposal stays: {body}");
    let log = records_as(server.port, &alice);
    let withdrawals: Vec<&Value> = log
        .iter()
        .filter(|r| r["action"] == "zt.admin.policies.withdraw")
        .collect();
    assert_eq!(withdrawals.len(), 1, "one withdrawal recorded");
    assert_eq!(withdrawals[0]["resource"], json!(second));
    assert_eq!(withdrawals[0]["actor"], "bob");
    assert_eq!(withdrawals[0]["kind"], "admin");
    assert_eq!(
        std::fs::metadata(dir.path().join("proposals.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[test]
fn a_policy_file_owns_the_policy_and_its_reload_errors_show_in_health() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = two_admins(dir.path());
    let policy = dir.path().join("live.cedar");
    let good = "@id(\"p\")\n@reason(\"ok\")\npermit(principal, action == Action::\"one.read\", resource);\n";
    std::fs::write(&policy, good).unwrap();
    let server = Server::start_with_auth(
        dir.path(),
        "credentials",
        &["--policy", policy.to_str().unwrap()],
    );
    for (path, body) in [
        ("/policies/allow", json!({"action": "two.read"})),
        ("/policies/proposals", json!({"cedar": good})),
        ("/policies/proposals/prop-1/approve", json!({})),
    ] {
        let (s, _, refused) = server.json_as(&alice, "POST", path, Some(body));
        assert_eq!(s, 409, "{path}: {refused}");
        let error = refused["error"].as_str().unwrap();
        assert!(
            error.contains("managed by the file") && error.contains("live.cedar"),
            "{error}"
        );
    }
    let (s, _, shown) = server.json_as(&bob, "GET", "/policies", None);
    assert_eq!(s, 200, "reading routes keep working");
    assert!(shown["policy_file"]
        .as_str()
        .unwrap()
        .ends_with("live.cedar"));
    assert_eq!(health(&server)["reload_errors"], json!({}));

    std::fs::write(&policy, "permit(principal, action ==").unwrap();
    until("the refused reload reported", || {
        health_as(&server, &alice)["reload_errors"]["policy_file"]
            .as_str()
            .is_some_and(|e| e.contains("live.cedar"))
    });
    let public = health(&server)["reload_errors"]["policy_file"].clone();
    assert!(!public.as_str().unwrap().contains("live.cedar"), "{public}");
    std::fs::write(&policy, good.replace("one.read", "three.read")).unwrap();
    until("a good reload clears the error", || {
        health(&server)["reload_errors"] == json!({})
    });
}

#[test]
fn allow_compares_parsed_policies_not_escaped_text() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, _) = two_admins(dir.path());
    let server = Server::start_with_auth(dir.path(), "credentials", &["--single-admin"]);
    let (s, _, registered) =
        server.json_as(&alice, "POST", "/agents", Some(json!({"actor": "quoter"})));
    assert_eq!(s, 201, "{registered}");
    let agent = registered["token"].as_str().unwrap().to_string();
    let allow = |action: &str, reason: &str| {
        server.json_as(
            &alice,
            "POST",
            "/policies/allow",
            Some(json!({"action": action, "reason": reason})),
        )
    };
    let decide = |action: &str| {
        server
            .json_as(&agent, "POST", "/actions", Some(json!({"action": action})))
            .0
    };

    // An action whose escaped spelling differs from its text is outside the action grammar.
    for tricky in ["qq\")\n@reason(\"R", "q\"x"] {
        let (s, _, body) = allow(tricky, "ok");
        assert_eq!(s, 400, "{body}");
    }

    // A reason whose escaped spelling differs from its text: allowed means allowed, and
    // allowing the same rule again changes nothing and is not a duplicate id.
    let reason = "quoted \"ok\")\n@id(\"other";
    let (s, _, once) = allow("tools.quote", reason);
    assert_eq!(s, 201, "{once}");
    assert_eq!(decide("tools.quote"), 200);
    let (s, _, twice) = allow("tools.quote", reason);
    assert_eq!(s, 201, "{twice}");
    assert_eq!(once["policy_version"], twice["policy_version"]);

    // The same id with another reason is a different policy: refused, not silently kept.
    let (s, _, other) = allow("tools.quote", "another reason");
    assert_eq!(s, 409, "{other}");
}

#[test]
fn registering_an_agent_again_with_other_attributes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, _) = two_admins(dir.path());
    let server = Server::start_with_auth(dir.path(), "credentials", &[]);
    let register = |trust: &str| {
        server.json_as(
            &alice,
            "POST",
            "/agents",
            Some(json!({"actor": "coder", "trust_level": trust})),
        )
    };
    let (s, _, first) = register("high");
    assert_eq!(s, 201, "{first}");
    assert!(first["token"].as_str().is_some());
    let (s, _, same) = register("high");
    assert_eq!(s, 201, "the same attributes: already registered, {same}");
    assert!(same.get("token").is_none());
    let (s, _, bare) = server.json_as(&alice, "POST", "/agents", Some(json!({"actor": "coder"})));
    assert_eq!(
        s, 201,
        "no attributes given: only confirms it exists, {bare}"
    );
    assert!(bare.get("token").is_none());
    let (s, _, other) = register("low");
    assert_eq!(s, 409, "{other}");
    let error = other["error"].as_str().unwrap();
    assert!(
        error.contains("`coder`") && error.contains("\"trust_level\":\"high\""),
        "{error}"
    );
    let (_, _, agents) = server.json_as(&alice, "GET", "/agents", None);
    assert_eq!(agents["agents"][0]["attributes"]["trust_level"], "high");
    let registrations = records_as(server.port, &alice)
        .iter()
        .filter(|r| r["action"] == "zt.admin.agents.register")
        .count();
    assert_eq!(registrations, 1);
}

#[test]
fn get_root_points_to_health() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (s, body) = server.json("GET", "/", None);
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["health"], "/health");
    assert_eq!(body["routes"]["decide"], "POST /actions");
}
