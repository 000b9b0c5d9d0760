//! State chosen while authentication was off, end to end: agents registered or re-tokened and
//! policies activated under `--auth none` keep a server with credentials from starting on the
//! same data directory, named one by one, until the operator accepts them once with
//! `--accept-unauthenticated-state` (audited). And every file the server leaves in its data
//! directory is private (0600).

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, records_as, zt_bin, Server};
use serde_json::{json, Value};

/// Runs `zt serve --auth credentials` on `data_dir`, expecting it to refuse to start; returns
/// its stderr.
fn refused_start(data_dir: &Path) -> String {
    let mut child = Command::new(zt_bin())
        .args(["serve", "--auth", "credentials", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(data_dir)
        .env("ZT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started on state chosen without authentication");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(status.code(), Some(1), "{stderr}");
    stderr
}

/// Registers `actor`; the token it was issued, if any (none under `--auth none`).
fn register(server: &Server, admin: Option<&str>, actor: &str) -> Option<String> {
    let body = Some(json!({"actor": actor}));
    let (status, body) = match admin {
        Some(admin) => {
            let (s, _, b) = server.json_as(admin, "POST", "/agents", body);
            (s, b)
        }
        None => server.json("POST", "/agents", body),
    };
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().map(str::to_string)
}

fn decide(server: &Server, token: &str, actor: &str, action: &str) -> u16 {
    let (status, _, body) = server.json_as(
        token,
        "POST",
        "/actions",
        Some(json!({"actor": actor, "action": action})),
    );
    assert!(status == 200 || status == 403, "{status} {body}");
    status
}

fn assert_private(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let name = entry.file_name().to_string_lossy().to_string();
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "directory {name}");
            assert_private(&entry.path());
        } else {
            assert_eq!(mode, 0o600, "file {name}");
        }
    }
}

#[test]
fn state_from_an_unauthenticated_period_is_refused_until_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();

    // With credentials: two agents an authenticated admin vouches for.
    let server = Server::start_with_auth(data, "credentials", &["--single-admin"]);
    let admin = server.admin_token();
    let vetted = register(&server, Some(&admin), "vetted").unwrap();
    register(&server, Some(&admin), "rotated");
    assert_eq!(server.terminate(), Some(0));

    // Authentication off: anyone registers an agent (no token is issued: it would prove
    // nothing), re-tokens another, and activates a policy.
    let server = Server::start(data, &[]);
    assert_eq!(register(&server, None, "anonymous"), None);
    let (status, rotated) = server.json("POST", "/agents/rotated/token", None);
    assert_eq!(status, 200, "{rotated}");
    let rotated = rotated["token"].as_str().unwrap().to_string();
    let (status, allowed) = server.json(
        "POST",
        "/policies/allow",
        Some(json!({"action": "files.read", "reason": "anyone said so"})),
    );
    assert_eq!(status, 201, "{allowed}");
    let policy = allowed["policy_version"].as_str().unwrap().to_string();
    assert_eq!(server.terminate(), Some(0));
    assert_private(data);

    // Credentials again: refused, naming exactly what came from the unauthenticated period.
    let stderr = refused_start(data);
    assert!(
        stderr.contains(&format!(
            "agents `anonymous`, `rotated`; active policy `{policy}`"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("`vetted`"), "{stderr}");
    assert!(
        stderr.contains("--accept-unauthenticated-state"),
        "{stderr}"
    );

    // Accepted once: the server starts, the acceptance is audited, the tokens work.
    let server = Server::start_with_auth(data, "credentials", &["--accept-unauthenticated-state"]);
    let (status, _, issued) = server.json_as(&admin, "POST", "/agents/anonymous/token", None);
    assert_eq!(status, 200, "{issued}");
    let anonymous = issued["token"].as_str().unwrap().to_string();
    assert_eq!(decide(&server, &anonymous, "anonymous", "files.read"), 200);
    assert_eq!(decide(&server, &rotated, "rotated", "files.read"), 200);
    assert_eq!(decide(&server, &vetted, "vetted", "files.read"), 200);
    let records: Vec<Value> = records_as(server.port, &admin);
    let accepted: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "zt.admin.unauthenticated_state.accept")
        .collect();
    assert_eq!(accepted.len(), 1, "{records:?}");
    let record = accepted[0];
    assert_eq!(record["kind"], "admin");
    assert_eq!(record["policy_version"], policy.as_str());
    let reason = record["reason"].as_str().unwrap();
    assert!(reason.contains("agents `anonymous`, `rotated`"), "{reason}");
    assert_eq!(server.terminate(), Some(0));

    // The marks are cleared: the next start needs no flag.
    let server = Server::start_with_auth(data, "credentials", &[]);
    assert_eq!(decide(&server, &anonymous, "anonymous", "files.read"), 200);
    assert_eq!(server.terminate(), Some(0));
    assert_private(data);
}

#[test]
fn accepting_needs_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::zt(&[
        "serve",
        "--auth",
        "none",
        "--accept-unauthenticated-state",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("`--accept-unauthenticated-state` needs `--auth credentials`"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "refused before any state"
    );
}
