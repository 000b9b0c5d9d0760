//! `zt bench` against real servers: it explains a server whose policy changes need a second
//! admin and a server whose rate limit it would measure, exits 1 for both, and in every case
//! leaves the server as it found it (no `bench-agent`, the policy it started with, no pending
//! proposal).

use crate::common;

use std::process::Output;

use common::{zt, Server};
use serde_json::Value;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `zt bench` for one second on two connections, with the server's admin token file.
fn bench(server: &Server, extra: &[&str]) -> Output {
    let token_file = server.data_dir.join("admin-token");
    let url = server.url();
    let mut args = vec![
        "bench",
        "--url",
        &url,
        "--admin-token-file",
        token_file.to_str().unwrap(),
        "--connections",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0",
    ];
    args.extend_from_slice(extra);
    zt(&args)
}

/// The registered actors and the active policy version, as an admin sees them.
fn state(server: &Server) -> (Vec<String>, String) {
    let admin = server.admin_token();
    let (status, _, agents) = server.json_as(&admin, "GET", "/agents", None);
    assert_eq!(status, 200, "{agents}");
    let actors = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["actor"].as_str().unwrap().to_string())
        .collect();
    let (status, _, policy) = server.json_as(&admin, "GET", "/policies", None);
    assert_eq!(status, 200, "{policy}");
    (
        actors,
        policy["policy_version"].as_str().unwrap().to_string(),
    )
}

#[test]
fn a_two_admin_server_is_explained_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_auth(dir.path(), "credentials", &[]);
    let before = state(&server);
    let out = bench(&server, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("second admin"), "{err}");
    assert!(err.contains("--single-admin"), "{err}");
    assert!(err.contains("proposal `"), "{err}");
    assert_eq!(state(&server), before, "bench-agent must be removed");

    // The proposal it filed is withdrawn again, on the record.
    let id = err
        .split("proposal `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap();
    let admin = server.admin_token();
    let (status, _, body) =
        server.json_as(&admin, "GET", &format!("/policies/proposals/{id}"), None);
    assert_eq!(status, 404, "the proposal is gone: {body}");
    let log = common::records_as(server.port, &admin);
    let withdrawn = log
        .iter()
        .find(|r| r["action"] == "zt.admin.policies.withdraw")
        .unwrap_or_else(|| panic!("no withdrawal record in {log:?}"));
    assert_eq!(withdrawn["resource"], id);
    assert_eq!(withdrawn["kind"], "admin");
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn a_rate_limit_is_explained_and_the_setup_undone() {
    let dir = tempfile::tempdir().unwrap();
    // A limit this machine reaches for sure (the default 100/s, burst 200, is reached by a
    // release build; a debug build under load may not).
    let server = Server::start_with_auth(
        dir.path(),
        "credentials",
        &["--single-admin", "--rate-limit", "5/s", "--rate-burst", "5"],
    );
    let before = state(&server);
    let out = bench(&server, &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("rate limit (429)"), "{err}");
    assert!(err.contains("--rate-limit"), "{err}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["rate_limited"].as_u64().unwrap() > 0, "{report}");
    assert!(report["allowed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(state(&server), before, "agent removed and policy restored");
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn a_server_fit_for_benchmarking_is_measured_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_auth(
        dir.path(),
        "credentials",
        &["--single-admin", "--rate-limit", "1000000/s"],
    );
    let before = state(&server);
    let out = bench(&server, &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["allowed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        (
            report["denied"].as_u64(),
            report["rate_limited"].as_u64(),
            report["unauthenticated"].as_u64(),
            report["errors"].as_u64()
        ),
        (Some(0), Some(0), Some(0), Some(0)),
        "{report}"
    );
    assert_eq!(state(&server), before, "agent removed and policy restored");

    // `--keep` leaves the agent and the rule for the next run.
    let out = bench(&server, &["--keep"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (actors, version) = state(&server);
    assert!(actors.contains(&"bench-agent".to_string()), "{actors:?}");
    assert_ne!(version, before.1);

    // Without a credential the setup says how to give one.
    let out = zt(&["bench", "--url", &server.url(), "--duration", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--admin-token-file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn an_open_loop_offers_the_rate_asked_and_reports_every_percentile() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_auth(
        dir.path(),
        "credentials",
        &["--single-admin", "--rate-limit", "1000000/s"],
    );
    let out = bench(&server, &["--rate", "50", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mode"], "open", "{report}");
    assert_eq!(report["rate"], 50, "{report}");
    // One second at 50/s: the schedule never sends more than it offers, whatever the answers.
    let decisions = report["decisions"].as_u64().unwrap();
    assert!((1..=50).contains(&decisions), "{report}");
    let latency = &report["latency_ms"];
    for key in ["mean", "p50", "p90", "p99", "p999", "max"] {
        assert!(latency[key].as_f64().unwrap() > 0.0, "{key}: {report}");
    }
    assert!(
        latency["p50"].as_f64() <= latency["max"].as_f64(),
        "{report}"
    );
    // The open loop counts from when each request was due: nothing to correct afterwards.
    assert!(report["uncorrected_latency_ms"].is_null(), "{report}");
    assert!(report["expected_interval_ms"].is_null(), "{report}");

    // Closed loop, the default, says so, and corrects for coordinated omission at its own
    // pace: one request every `duration * connections / answers` a connection.
    let out = bench(&server, &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mode"], "closed", "{report}");
    assert!(report["rate"].is_null(), "{report}");
    let answers = report["decisions"].as_f64().unwrap();
    let interval = report["expected_interval_ms"].as_f64().unwrap();
    let pace = 1000.0 * report["connections"].as_f64().unwrap() / answers;
    assert!((interval - pace).abs() <= 0.01 * pace + 0.002, "{report}");
    let (corrected, answered) = (&report["latency_ms"], &report["uncorrected_latency_ms"]);
    for key in ["mean", "p50", "p90", "p99", "p999", "max"] {
        assert!(answered[key].as_f64().unwrap() > 0.0, "{key}: {report}");
    }
    // Added samples are each below the slow answer they stand in for.
    assert_eq!(corrected["max"], answered["max"], "{report}");
    assert!(
        corrected["mean"].as_f64() >= answered["mean"].as_f64(),
        "{report}"
    );
    // The terminal report says so too.
    let out = bench(&server, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("corrected for coordinated omission"),
        "{text}"
    );
    assert!(text.contains("as answered: p50"), "{text}");

    // A rate of zero is a usage error.
    let out = bench(&server, &["--rate", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(server.terminate(), Some(0));
}

/// With `--request-ids` every request carries an id of its own, never one an earlier run
/// used: two runs against one server are decided in full (no replay), and the log holds one
/// distinct id per decision.
#[test]
fn request_ids_are_unique_to_each_request_and_each_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_auth(
        dir.path(),
        "credentials",
        &["--single-admin", "--rate-limit", "1000000/s"],
    );
    let mut decided = 0;
    for _ in 0..2 {
        // Paced, so the log stays within one page of records.
        let out = bench(&server, &["--request-ids", "--rate", "500", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (report["denied"].as_u64(), report["errors"].as_u64()),
            (Some(0), Some(0)),
            "{report}"
        );
        decided += report["allowed"].as_u64().unwrap();
    }
    let ids: Vec<String> = common::records_as(server.port, &server.admin_token())
        .iter()
        .filter_map(|record| record["request_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(server.terminate(), Some(0));
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "an id was used twice");
    // Every decision measured carried one (the warm-up's and the tail's too, so at least).
    assert!(
        ids.len() as u64 >= decided && decided > 0,
        "{} ids, {decided} decided",
        ids.len()
    );
}
