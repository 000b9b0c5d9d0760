//! Operations: drain on SIGTERM, one writer per data directory, key file mode, environment
//! twins of flags, refusing to start unauthenticated unless asked by name.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, parse, zt, zt_bin, Server};
use serde_json::json;

#[test]
fn sigterm_drains_in_flight_decisions_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.json("POST", "/agents", Some(json!({"actor": "drain"})));
    let port = server.port;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    i += 1;
                    let body = json!({"actor": "drain", "action": format!("drain.t{t}"), "resource": format!("r{i}")});
                    match common::http(port, "POST", "/actions", Some(body.to_string().as_bytes())) {
                        Ok((status @ (200 | 403), raw)) => {
                            let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
                            assert_eq!(status, 403);
                            answered.lock().unwrap().push(v["audit"]["current_hash"].as_str().unwrap().to_string());
                        }
                        // Refused or reset while shutting down: not an answer, so not owed a record.
                        Ok((status, _)) => assert!(status == 503, "unexpected status {status}"),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let code = server.terminate();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(code, Some(0), "drain exits 0");
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() > 10,
        "load ran before the signal ({} answers)",
        answered.len()
    );

    let out = zt(&[
        "audit",
        "verify",
        "--json",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let server = Server::start(dir.path(), &[]);
    let stored: std::collections::HashSet<String> = server
        .records()
        .iter()
        .map(|l| parse(l)["current_hash"].as_str().unwrap().to_string())
        .collect();
    let missing = answered.iter().filter(|h| !stored.contains(*h)).count();
    assert_eq!(missing, 0, "every answered decision is in the log");
}

/// Runs `zt serve` on `data_dir` to completion: for a start that must be refused.
fn serve_once(data_dir: &Path) -> std::process::Output {
    Command::new(zt_bin())
        .args([
            "serve",
            "--auth",
            "none",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path(), &[]);
    let out = serve_once(dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another zt server"), "{stderr}");
    // The first server is unharmed.
    assert_eq!(first.json("GET", "/health", None).0, 200);
}

#[test]
fn signing_key_is_private_and_stable_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (_, keys1) = server.json("GET", "/audit/keys", None);
    assert_eq!(server.terminate(), Some(0));
    let key = dir.path().join("keys").join("audit-signing-key.p8");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let server = Server::start(dir.path(), &[]);
    let (_, keys2) = server.json("GET", "/audit/keys", None);
    assert_eq!(keys1, keys2);

    // A key file others can read is refused, not silently used.
    assert_eq!(server.terminate(), Some(0));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = serve_once(dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

#[test]
fn flags_have_environment_twins() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(zt_bin())
        .arg("serve")
        .env("ZT_AUTH", "none")
        .env("ZT_LISTEN", format!("127.0.0.1:{port}"))
        .env("ZT_DATA_DIR", dir.path())
        .env("ZT_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut healthy = false;
    while Instant::now() < deadline && !healthy {
        healthy = matches!(common::http(port, "GET", "/health", None), Ok((200, _)));
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(healthy, "server configured only by ZT_* variables came up");
    assert!(dir.path().join("audit.db").exists());

    let help = String::from_utf8(zt(&["serve", "--help"]).stdout).unwrap();
    for env in [
        "ZT_LISTEN",
        "ZT_DATA_DIR",
        "ZT_POLICY",
        "ZT_AUTH",
        "ZT_QUEUE_CAPACITY",
        "ZT_REJECTION_SUMMARY_INTERVAL",
        "ZT_ADMIN_TOKEN_FILE",
        "ZT_RATE_LIMIT",
        "ZT_RATE_BURST",
        "ZT_REPLAY_WINDOW",
    ] {
        assert!(help.contains(env), "`zt serve --help` documents {env}");
    }
}

#[test]
fn authentication_is_the_default_and_the_admin_token_never_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(zt_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("ZT_AUTH")
        .env("ZT_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut health = None;
    while Instant::now() < deadline && health.is_none() {
        if let Ok((200, raw)) = common::http(port, "GET", "/health", None) {
            health = Some(serde_json::from_slice::<serde_json::Value>(&raw).unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let health = health.expect("server came up");
    assert_eq!(health["auth"], "credentials");
    let body = json!({"actor": "anyone", "action": "x"}).to_string();
    let (status, _) = common::http(port, "POST", "/actions", Some(body.as_bytes())).unwrap();
    assert_eq!(status, 401);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    let token_file = dir.path().join("admin-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.split_whitespace().nth(1).unwrap();
    assert!(
        log.contains(token_file.to_str().unwrap()),
        "the start-up log names the admin token file:\n{log}"
    );
    assert!(
        !log.contains(token),
        "the start-up log never shows the token"
    );
    assert!(!log.contains("AUTHENTICATION IS OFF"));
}

#[test]
fn demo_tells_the_whole_story_and_exits_zero() {
    let out = zt(&["demo", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let steps: Vec<(&str, bool)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["ok"].as_bool().unwrap()))
        .collect();
    let names: Vec<&str> = steps.iter().map(|s| s.0).collect();
    assert_eq!(
        names,
        [
            "start",
            "register",
            "dangerous",
            "spoof",
            "unlisted",
            "propose",
            "policy",
            "allowed",
            "verify",
            "tamper"
        ]
    );
    assert!(steps.iter().all(|s| s.1));
    let by_name = |n: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("dangerous")["detail"]["executed"], false);
    assert_eq!(by_name("spoof")["detail"]["executed"], false);
    assert!(by_name("spoof")["detail"]["reason"]
        .as_str()
        .unwrap()
        .contains("claims actor `admin-bot`"));
    assert_eq!(
        by_name("unlisted")["detail"]["reason"],
        "action is not in the allow list"
    );
    assert_eq!(by_name("allowed")["detail"]["executed"], true);
    assert_eq!(by_name("tamper")["detail"]["valid"], false);
    assert_eq!(by_name("tamper")["detail"]["error"]["check"], "hash");

    let text = zt(&["demo"]);
    assert_eq!(text.status.code(), Some(0));
    let narration = String::from_utf8(text.stdout).unwrap();
    assert!(
        narration.contains("execution skipped") && narration.contains("executed"),
        "{narration}"
    );
}
