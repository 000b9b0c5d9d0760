//! `zt audit verify --jobs`: a log of several signature batches verifies from every source with
//! any number of threads, and a tampered one gives the same report, naming the same first bad
//! record, with one thread as with several.

use crate::common;

use std::path::Path;

use common::{parse, zt, Server};
use serde_json::{json, Value};

/// More records than two batches of signatures (256 each), so workers and the reader share.
const AT_LEAST: usize = 700;

fn run_json(args: &[&str]) -> (i32, Value) {
    let out = zt(args);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn every_source_verifies_with_any_number_of_jobs_and_reports_the_same_first_fault() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::start(&data_dir, &[]);
    let url = server.url();
    // `zt bench` fills the log fast; run it until the log spans several batches.
    while server.records().len() < AT_LEAST {
        let out = zt(&[
            "bench",
            "--url",
            &url,
            "--connections",
            "8",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--keep",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lines = server.records();
    let (status, keys) = server.json("GET", "/audit/keys", None);
    assert_eq!(status, 200);
    let keys_file = dir.path().join("keys.json");
    std::fs::write(&keys_file, keys.to_string()).unwrap();
    let keys_file = keys_file.to_str().unwrap();
    let dd = data_dir.to_str().unwrap();

    // The URL source verifies up to the head it read first; the log stops growing here.
    for jobs in ["1", "2", "5"] {
        let (code, report) =
            run_json(&["audit", "verify", "--url", &url, "--jobs", jobs, "--json"]);
        assert_eq!(code, 0, "--url --jobs {jobs}: {report}");
        assert!(report["records"].as_u64().unwrap() >= lines.len() as u64);
    }
    assert_eq!(server.terminate(), Some(0));
    let file = dir.path().join("log.jsonl");
    write_lines(&file, &lines);
    let file = file.to_str().unwrap();
    for jobs in ["1", "2", "5"] {
        let (code, report) = run_json(&[
            "audit",
            "verify",
            "--data-dir",
            dd,
            "--jobs",
            jobs,
            "--json",
        ]);
        assert_eq!(code, 0, "--data-dir --jobs {jobs}: {report}");
        // The stopped server may have added a record (a summary of refused requests).
        assert!(report["records"].as_u64().unwrap() >= lines.len() as u64);
        let (code, report) = run_json(&[
            "audit", "verify", "--file", file, "--keys", keys_file, "--jobs", jobs, "--json",
        ]);
        assert_eq!(code, 0, "--file --jobs {jobs}: {report}");
        assert_eq!(report["records"], lines.len() as u64);
    }

    // A signature moved from another record, two batches in, then a broken link further on:
    // the signature is the first fault, whichever thread finds it first.
    let mut tampered = lines.clone();
    let stolen = parse(&tampered[3])["kms_signature"].clone();
    let mut bad = parse(&tampered[600]);
    bad["kms_signature"] = stolen;
    tampered[600] = bad.to_string();
    let mut unlinked = parse(&tampered[650]);
    unlinked["previous_hash"] = json!("0".repeat(64));
    tampered[650] = unlinked.to_string();
    let file = dir.path().join("tampered.jsonl");
    write_lines(&file, &tampered);
    let file = file.to_str().unwrap();
    let verify = |jobs: &str| {
        run_json(&[
            "audit", "verify", "--file", file, "--keys", keys_file, "--jobs", jobs, "--json",
        ])
    };
    let (code, sequential) = verify("1");
    assert_eq!(code, 1, "{sequential}");
    assert_eq!(sequential["error"]["check"], "signature", "{sequential}");
    assert_eq!(sequential["error"]["index"], 600, "{sequential}");
    assert_eq!(sequential["records_checked"], 600, "{sequential}");
    for jobs in ["2", "3", "8"] {
        assert_eq!(verify(jobs), (1, sequential.clone()), "--jobs {jobs}");
    }

    // Zero threads is a usage error.
    let out = zt(&[
        "audit", "verify", "--file", file, "--keys", keys_file, "--jobs", "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
