//! `zt audit verify` against a real log: the untouched log verifies, and every kind of tampering
//! (edited fields, deleted, reordered or replayed records, swapped or foreign signatures,
//! truncation, forged hashes, edits straight in the SQLite store) fails with exit 1 and names the
//! first bad record and the check it failed, in `--json` and in the human output.

// Test code: the workspace's production lints (no unwrap/expect/panic/indexing) are meant to be
// relaxed in tests (clippy.toml), but clippy only relaxes them inside `#[test]` functions, not in
// the helpers they call (nor in `common`).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{parse, rehash, relink, resign, zt, Server};
use serde_json::{json, Map, Value};
use tempfile::TempDir;
use zt_ledger::{LocalKeySigner, Signer};

/// Records in the fixture log: 1 registration, 3 for the policy change (proposal, approval,
/// activation), 20 decisions.
const RECORDS: usize = 24;
/// A deny decision in the middle of the log (odd seqs are denies, even seqs >= 2 are allows).
const K: usize = 9;

/// A real log written by a real server, which is stopped again.
struct Log {
    dir: TempDir,
    data_dir: PathBuf,
    lines: Vec<String>,
    keys: PathBuf,
    head: String,
}

impl Log {
    fn new() -> Log {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let (lines, keys_json, head) = record_a_log(&data_dir);
        assert_eq!(lines.len(), RECORDS);
        let keys = dir.path().join("keys.json");
        std::fs::write(&keys, keys_json.to_string()).unwrap();
        Log {
            dir,
            data_dir,
            lines,
            keys,
            head,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `lines` as a JSONL file (one record a line, trailing newline).
    fn write(&self, name: &str, lines: &[String]) -> PathBuf {
        let path = self.path(name);
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Every record, parsed.
    fn records(&self) -> Vec<Map<String, Value>> {
        self.lines.iter().map(|l| as_map(parse(l))).collect()
    }

    /// `zt audit verify --file F --keys K [extra] --json`: exit code and the JSON report.
    fn verify_json(&self, file: &Path, extra: &[&str]) -> (i32, Value) {
        let mut args = self.verify_args(file, extra);
        args.push("--json");
        run_json(&args)
    }

    /// `audit verify --file F --keys K [extra]`.
    fn verify_args<'a>(&'a self, file: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "audit",
            "verify",
            "--file",
            path_str(file),
            "--keys",
            path_str(&self.keys),
        ];
        args.extend_from_slice(extra);
        args
    }

    /// The same without `--json`: exit code and stdout.
    fn verify_text(&self, file: &Path, extra: &[&str]) -> (i32, String) {
        let out = zt(&self.verify_args(file, extra));
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
        )
    }

    /// Writes `lines`, verifies it and asserts it is invalid at record position `index`
    /// (record `seq`, when it has one) with `check`, in both output forms. Returns the report.
    fn expect_invalid(
        &self,
        name: &str,
        lines: &[String],
        extra: &[&str],
        index: usize,
        seq: Option<usize>,
        check: &str,
    ) -> Value {
        let file = self.write(name, lines);
        let (code, report) = self.verify_json(&file, extra);
        assert_invalid(code, &report, index, seq, check, name);
        let (code, text) = self.verify_text(&file, extra);
        assert_eq!(code, 1, "{name}: human verify must exit 1: {text}");
        assert_text_names(
            &text,
            seq.map_or_else(|| format!("line {}", index + 1), |s| format!("seq {s}")),
            check,
            name,
        );
        report
    }
}

/// Starts a server on `data_dir`, registers an agent, allows one action, makes 20 decisions
/// (alternating allow and deny), then returns the stored lines, the JWKS and the head hash,
/// after a clean SIGTERM.
fn record_a_log(data_dir: &Path) -> (Vec<String>, Value, String) {
    let server = Server::start(data_dir, &[]);
    let (s, _) = server.json("POST", "/agents", Some(json!({"actor": "auditee"})));
    assert_eq!(s, 201);
    let (s, _) = server.json(
        "POST",
        "/policies/allow",
        Some(json!({"action": "report.read", "reason": "Reports are read-only."})),
    );
    assert_eq!(s, 201);
    for i in 0..20 {
        if i % 2 == 0 {
            let (s, b) = server.decide("auditee", "report.read", &format!("report-{i}"));
            assert_eq!(s, 200, "{b}");
        } else {
            let (s, b) = server.decide("auditee", "aws.ec2.terminate_instances", &format!("i-{i}"));
            assert_eq!(s, 403, "{b}");
        }
    }
    let lines = server.records();
    let (s, keys) = server.json("GET", "/audit/keys", None);
    assert_eq!(s, 200);
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(1));
    let (s, head) = server.json("GET", "/audit/head", None);
    assert_eq!(s, 200);
    let head = head["current_hash"].as_str().unwrap().to_string();
    assert_eq!(parse(lines.last().unwrap())["current_hash"], head.as_str());
    assert_eq!(server.terminate(), Some(0));
    (lines, keys, head)
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn as_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn to_line(m: &Map<String, Value>) -> String {
    Value::Object(m.clone()).to_string()
}

fn to_lines(records: &[Map<String, Value>]) -> Vec<String> {
    records.iter().map(to_line).collect()
}

/// Runs zt and parses its stdout as one JSON object.
fn run_json(args: &[&str]) -> (i32, Value) {
    let out = zt(args);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "zt {args:?}: stdout is not one JSON object ({e}): {stdout:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

fn assert_valid(code: i32, report: &Value, records: usize, what: &str) {
    assert_eq!(code, 0, "{what}: verify must exit 0: {report}");
    assert_eq!(report["valid"], true, "{what}: {report}");
    assert_eq!(report["records"], records, "{what}: {report}");
}

fn assert_invalid(
    code: i32,
    report: &Value,
    index: usize,
    seq: Option<usize>,
    check: &str,
    what: &str,
) {
    assert_eq!(code, 1, "{what}: verify must exit 1: {report}");
    assert_eq!(report["valid"], false, "{what}: {report}");
    let error = &report["error"];
    assert_eq!(error["check"], check, "{what}: wrong check: {report}");
    assert_eq!(error["seq"], json!(seq), "{what}: wrong seq: {report}");
    assert_eq!(error["index"], index, "{what}: wrong index: {report}");
    // A head failure is found after every record checked out on its own, the last included.
    let checked = if check == "head" { index + 1 } else { index };
    assert_eq!(
        report["records_checked"], checked,
        "{what}: records that checked out: {report}"
    );
}

/// The human report must say INVALID, name the position (`seq N` not followed by another
/// digit, or `line N`) and the check.
fn assert_text_names(text: &str, position: String, check: &str, what: &str) {
    assert!(text.contains("INVALID"), "{what}: human output: {text}");
    let named = text
        .match_indices(&position)
        .any(|(at, m)| !text[at + m.len()..].starts_with(|c: char| c.is_ascii_digit()));
    assert!(
        named,
        "{what}: human output does not name `{position}`: {text}"
    );
    assert!(
        text.contains(&format!("{check} check")),
        "{what}: human output does not name the {check} check: {text}"
    );
}

/// The log's lines with record `at` changed by `edit`.
fn edited(log: &Log, at: usize, edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<String> {
    let mut records = log.records();
    edit(&mut records[at]);
    to_lines(&records)
}

/// The log's lines with field `field` of record K's signature set to `value`.
fn with_signature_field(log: &Log, field: &str, value: Value) -> Vec<String> {
    edited(log, K, |r| {
        r["kms_signature"]
            .as_object_mut()
            .unwrap()
            .insert(field.into(), value);
    })
}

#[test]
fn untouched_log_verifies_in_every_form() {
    let log = Log::new();
    let file = log.write("log.jsonl", &log.lines);

    let (code, report) = log.verify_json(&file, &[]);
    assert_valid(code, &report, RECORDS, "untouched");
    assert_eq!(report["head_hash"], log.head.as_str());
    assert_eq!(report["signatures_checked"], true);

    let (code, text) = log.verify_text(&file, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("valid: {RECORDS} records")),
        "{text}"
    );
    assert!(text.contains(&log.head), "{text}");
    assert!(!text.contains("INVALID"), "{text}");

    // The head it really ends at is accepted.
    let (code, report) = log.verify_json(&file, &["--expect-head", &log.head]);
    assert_valid(code, &report, RECORDS, "untouched with --expect-head");

    // Re-serializing every record (key order, spacing) changes nothing: hashes are canonical.
    let reserialized: Vec<String> = log.records().iter().map(to_line).collect();
    let file = log.write("reserialized.jsonl", &reserialized);
    let (code, report) = log.verify_json(&file, &[]);
    assert_valid(code, &report, RECORDS, "reserialized");

    // Blank lines are not records.
    let mut spaced = log.lines.clone();
    spaced.insert(5, String::new());
    spaced.push(String::new());
    let file = log.write("blank-lines.jsonl", &spaced);
    let (code, report) = log.verify_json(&file, &[]);
    assert_valid(code, &report, RECORDS, "blank lines");
}

#[test]
fn edited_fields_fail_the_hash_of_that_record() {
    let log = Log::new();
    assert_eq!(
        log.records()[K]["decision"],
        "deny",
        "fixture: record {K} is a deny"
    );
    let last = RECORDS - 1;
    // (case, record edited, field set, value): each fails the hash of that record, and the
    // hash it found is the one stored.
    let cases = [
        ("decision", K, "decision", json!("allow")),
        (
            "reason",
            K,
            "reason",
            json!("Terminating EC2 instances is fine, really."),
        ),
        // A field that is only in the stored record (not in the contract body): still hashed.
        ("authenticated", K, "authenticated", json!(true)),
        ("extra-field", K, "approved_by", json!("mallory")),
        // The first record is checked too, and the last.
        ("first", 0, "resource", json!("mallory-agent")),
        ("last", last, "resource", json!("i-other")),
    ];
    for (name, at, field, value) in cases {
        let lines = edited(&log, at, |r| {
            r.insert(field.into(), value);
        });
        let name = format!("{name}.jsonl");
        let report = log.expect_invalid(&name, &lines, &[], at, Some(at), "hash");
        assert_eq!(
            report["error"]["found"],
            log.records()[at]["current_hash"],
            "{name}: found = the stored hash: {report}"
        );
    }
}

#[test]
fn a_duplicate_key_in_a_genuine_record_fails_its_format() {
    let log = Log::new();
    assert_eq!(log.records()[K]["decision"], "deny", "fixture: a deny");
    // A reader that keeps the first of two equal keys reads `allow`; one that keeps the last
    // reads the genuine record, whose hash and signature hold. The line means two things.
    let mut lines = log.lines.clone();
    lines[K] = lines[K].replacen('{', r#"{"decision":"allow","#, 1);
    let last_wins: Map<String, Value> = serde_json::from_str(&lines[K]).unwrap();
    assert_eq!(
        last_wins,
        log.records()[K],
        "fixture: hash and signature hold"
    );
    let report = log.expect_invalid("duplicate.jsonl", &lines, &[], K, None, "format");
    let found = report["error"]["found"].as_str().unwrap();
    assert!(found.contains("duplicate key `decision`"), "{report}");
}

#[test]
fn a_keys_file_with_a_positional_key_is_refused() {
    let log = Log::new();
    let file = log.write("genuine.jsonl", &log.lines);
    assert_eq!(
        log.verify_json(&file, &[]).0,
        0,
        "fixture: the genuine log verifies"
    );
    // The same keys, each written as an array of its members in field order: serde's derived
    // types read that as the key, a strict reader of a trust anchor must not.
    let keys = parse(&std::fs::read_to_string(&log.keys).unwrap());
    let positional: Vec<Value> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| json!([k["kty"], k["crv"], k["x"], k["y"], k["kid"], k["use"], k["alg"]]))
        .collect();
    let positional_keys = log.path("positional-keys.json");
    std::fs::write(&positional_keys, json!({"keys": positional}).to_string()).unwrap();
    let out = zt(&[
        "audit",
        "verify",
        "--file",
        path_str(&file),
        "--keys",
        path_str(&positional_keys),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot use keys"), "{stderr}");
    assert!(stderr.contains("expected struct Jwk"), "{stderr}");
}

/// A log whose records are out of sequence, where verification must stop and, when the case
/// pins them, the seq it expected and found there.
struct OutOfSequence {
    name: &'static str,
    lines: Vec<String>,
    index: usize,
    seq: usize,
    check: &'static str,
    expected: Option<usize>,
    found: Option<usize>,
}

#[test]
fn deleted_reordered_and_replayed_records_fail_the_sequence() {
    let log = Log::new();
    let changed = |change: &dyn Fn(&mut Vec<String>)| {
        let mut lines = log.lines.clone();
        change(&mut lines);
        lines
    };
    // Renumber the records after a deletion so seq is contiguous: the link breaks instead.
    let mut renumbered = log.records();
    renumbered.remove(K);
    for (i, r) in renumbered.iter_mut().enumerate().skip(K) {
        r.insert("seq".into(), json!(i));
    }
    let cases = [
        // Delete record K: the record after it is where the chain breaks (seq is checked first).
        OutOfSequence {
            name: "deleted",
            lines: changed(&|l| {
                l.remove(K);
            }),
            index: K,
            seq: K + 1,
            check: "sequence",
            expected: Some(K),
            found: Some(K + 1),
        },
        OutOfSequence {
            name: "deleted-first",
            lines: changed(&|l| {
                l.remove(0);
            }),
            index: 0,
            seq: 1,
            check: "sequence",
            expected: None,
            found: None,
        },
        // Two adjacent records swapped, then two distant ones.
        OutOfSequence {
            name: "swapped",
            lines: changed(&|l| l.swap(K, K + 1)),
            index: K,
            seq: K + 1,
            check: "sequence",
            expected: Some(K),
            found: None,
        },
        OutOfSequence {
            name: "swapped-far",
            lines: changed(&|l| l.swap(4, 17)),
            index: 4,
            seq: 17,
            check: "sequence",
            expected: None,
            found: None,
        },
        // Record K replayed right after itself.
        OutOfSequence {
            name: "replayed",
            lines: changed(&|l| l.insert(K + 1, log.lines[K].clone())),
            index: K + 1,
            seq: K,
            check: "sequence",
            expected: Some(K + 1),
            found: None,
        },
        OutOfSequence {
            name: "deleted-renumbered",
            lines: to_lines(&renumbered),
            index: K,
            seq: K,
            check: "link",
            expected: None,
            found: None,
        },
    ];
    for case in cases {
        let name = format!("{}.jsonl", case.name);
        let report = log.expect_invalid(
            &name,
            &case.lines,
            &[],
            case.index,
            Some(case.seq),
            case.check,
        );
        for (key, want) in [("expected", case.expected), ("found", case.found)] {
            if let Some(want) = want {
                assert_eq!(report["error"][key], want.to_string(), "{name}: {report}");
            }
        }
    }
}

#[test]
fn swapped_and_foreign_signatures_fail_the_signature_check() {
    let log = Log::new();

    // Swap the signatures of two records: both are genuine, neither is over its record.
    let mut swapped = log.records();
    let (a, b) = (
        swapped[K]["kms_signature"].clone(),
        swapped[K + 3]["kms_signature"].clone(),
    );
    assert_ne!(a, b);
    swapped[K].insert("kms_signature".into(), b);
    swapped[K + 3].insert("kms_signature".into(), a);

    // A genuine signature from another server's log (another key).
    let other = tempfile::tempdir().unwrap();
    let (other_lines, other_keys, _) = record_a_log(&other.path().join("data"));
    let other_sig = parse(&other_lines[K])["kms_signature"].clone();
    let other_kid = other_keys["keys"][0]["kid"].as_str().unwrap().to_string();
    let our_kid = log.records()[K]["kms_signature"]["key_id"].clone();
    assert_ne!(other_sig["key_id"], our_kid);
    let mut other_relabelled = other_sig.clone();
    other_relabelled["key_id"] = our_kid.clone();

    // A correct signature over the right hash by an attacker's own key.
    let attacker_dir = tempfile::tempdir().unwrap();
    let attacker = LocalKeySigner::load_or_create(attacker_dir.path()).unwrap();
    let mut attacker_signed = log.records();
    resign(&mut attacker_signed[K], &attacker);
    let mut attacker_relabelled = attacker_signed.clone();
    attacker_relabelled[K]["kms_signature"]
        .as_object_mut()
        .unwrap()
        .insert("key_id".into(), our_kid);

    // (case, lines, what `error.found` must contain): each fails the signature of record K.
    let cases: [(&str, Vec<String>, Option<&str>); 9] = [
        ("sig-swapped", to_lines(&swapped), Some("does not verify")),
        (
            "sig-other-server",
            edited(&log, K, |r| {
                r.insert("kms_signature".into(), other_sig.clone());
            }),
            Some(other_kid.as_str()),
        ),
        // The other server's signature relabelled with our key id: does not verify.
        (
            "sig-other-relabelled",
            edited(&log, K, |r| {
                r.insert("kms_signature".into(), other_relabelled);
            }),
            None,
        ),
        // Our own genuine signature, but the key id changed to one nobody published.
        (
            "sig-unknown-kid",
            with_signature_field(&log, "key_id", json!("zt-p256-0000000000000000")),
            Some("zt-p256-0000000000000000"),
        ),
        // The attacker's key is unknown; relabelled as our key, it does not verify.
        ("sig-attacker", to_lines(&attacker_signed), None),
        (
            "sig-attacker-relabelled",
            to_lines(&attacker_relabelled),
            None,
        ),
        // No signature at all, a wrong algorithm, a signature that is not base64.
        (
            "sig-missing",
            edited(&log, K, |r| {
                r.remove("kms_signature");
            }),
            None,
        ),
        (
            "sig-algorithm",
            with_signature_field(&log, "algorithm", json!("NONE")),
            None,
        ),
        (
            "sig-garbage",
            with_signature_field(&log, "signature", json!("!!not base64!!")),
            None,
        ),
    ];
    for (name, lines, found) in cases {
        let name = format!("{name}.jsonl");
        let report = log.expect_invalid(&name, &lines, &[], K, Some(K), "signature");
        if let Some(found) = found {
            assert!(
                report["error"]["found"].as_str().unwrap().contains(found),
                "{name}: found must name `{found}`: {report}"
            );
        }
    }

    // With the keys of the *other* server, our untouched log does not verify from record 0.
    let other_keys_file = log.path("other-keys.json");
    std::fs::write(&other_keys_file, other_keys.to_string()).unwrap();
    let file = log.write("untouched.jsonl", &log.lines);
    let (code, report) = run_json(&[
        "audit",
        "verify",
        "--file",
        path_str(&file),
        "--keys",
        path_str(&other_keys_file),
        "--json",
    ]);
    assert_invalid(code, &report, 0, Some(0), "signature", "wrong keys file");
}

#[test]
fn forged_hashes_are_caught_by_the_link_or_the_signature() {
    let log = Log::new();

    // Edit record K and recompute its current_hash: its hash now matches, so with signatures
    // its own signature fails (it signs the old hash) ...
    let mut records = log.records();
    records[K].insert("decision".into(), json!("allow"));
    rehash(&mut records[K]);
    assert_ne!(records[K]["current_hash"], log.records()[K]["current_hash"]);
    let lines = to_lines(&records);
    let report = log.expect_invalid("forged-hash.jsonl", &lines, &[], K, Some(K), "signature");
    assert!(
        report["error"]["found"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{report}"
    );
    // ... and without signatures the next record's link fails.
    let report = log.expect_invalid(
        "forged-hash-nosig.jsonl",
        &lines,
        &["--insecure-skip-signatures"],
        K + 1,
        Some(K + 1),
        "link",
    );
    assert_eq!(
        report["error"]["expected"], records[K]["current_hash"],
        "{report}"
    );
    assert_eq!(
        report["error"]["found"],
        log.records()[K]["current_hash"],
        "{report}"
    );

    // Relink the whole suffix consistently: only signatures can catch it.
    let mut records = log.records();
    records[K].insert("decision".into(), json!("allow"));
    relink(&mut records, K, None);
    let lines = to_lines(&records);
    log.expect_invalid("forged-suffix.jsonl", &lines, &[], K, Some(K), "signature");
    let file = log.write("forged-suffix-nosig.jsonl", &lines);
    let (code, report) = log.verify_json(&file, &["--insecure-skip-signatures"]);
    assert_valid(
        code,
        &report,
        RECORDS,
        "consistent rewrite without signatures (the documented danger)",
    );
    assert_eq!(report["signatures_checked"], false);
    // The real head still exposes it without signatures.
    let report = log.expect_invalid(
        "forged-suffix-nosig-head.jsonl",
        &lines,
        &["--insecure-skip-signatures", "--expect-head", &log.head],
        RECORDS - 1,
        Some(RECORDS - 1),
        "head",
    );
    assert_eq!(report["error"]["expected"], log.head.as_str(), "{report}");

    // Relinked and re-signed with an attacker's key: the first forged record names the key.
    let attacker_dir = tempfile::tempdir().unwrap();
    let attacker = LocalKeySigner::load_or_create(attacker_dir.path()).unwrap();
    let mut records = log.records();
    records[K].insert("decision".into(), json!("allow"));
    relink(&mut records, K, Some(&attacker));
    let report = log.expect_invalid(
        "forged-resigned.jsonl",
        &to_lines(&records),
        &[],
        K,
        Some(K),
        "signature",
    );
    assert!(
        report["error"]["found"]
            .as_str()
            .unwrap()
            .contains(attacker.key_id()),
        "{report}"
    );
}

#[test]
fn truncation_fails_the_format_or_the_head() {
    let log = Log::new();

    // Cut mid-way through the last line (no trailing newline).
    let full = log.lines.join("\n");
    let cut = full.len() - log.lines.last().unwrap().len() / 2;
    let file = log.path("cut-last.jsonl");
    std::fs::write(&file, &full[..cut]).unwrap();
    let (code, report) = log.verify_json(&file, &[]);
    assert_invalid(
        code,
        &report,
        RECORDS - 1,
        None,
        "format",
        "cut mid last line",
    );
    let (code, text) = log.verify_text(&file, &[]);
    assert_eq!(code, 1);
    assert_text_names(
        &text,
        format!("line {RECORDS}"),
        "format",
        "cut mid last line",
    );

    // Cut mid-way through a middle line, as a torn copy would.
    let mut torn: Vec<String> = log.lines[..K].to_vec();
    let half = &log.lines[K][..log.lines[K].len() / 2];
    torn.push(half.to_string());
    let file = log.path("cut-middle.jsonl");
    std::fs::write(&file, torn.join("\n")).unwrap();
    let (code, report) = log.verify_json(&file, &[]);
    assert_invalid(code, &report, K, None, "format", "cut mid line K");

    // A line that is JSON but not an object.
    let mut lines = log.lines.clone();
    lines[K] = "[1,2,3]".into();
    log.expect_invalid("not-object.jsonl", &lines, &[], K, None, "format");

    // A record without its timestamp.
    let mut records = log.records();
    records[K].remove("timestamp");
    log.expect_invalid(
        "no-timestamp.jsonl",
        &to_lines(&records),
        &[],
        K,
        Some(K),
        "format",
    );

    // Drop the last records at a line boundary: the chain alone cannot tell ...
    let kept = RECORDS - 3;
    let file = log.write("dropped-tail.jsonl", &log.lines[..kept]);
    let (code, report) = log.verify_json(&file, &[]);
    assert_valid(code, &report, kept, "a clean prefix is a valid chain");
    // ... the trusted head can: the last remaining record is named.
    let report = log.expect_invalid(
        "dropped-tail-head.jsonl",
        &log.lines[..kept],
        &["--expect-head", &log.head],
        kept - 1,
        Some(kept - 1),
        "head",
    );
    assert_eq!(report["error"]["expected"], log.head.as_str(), "{report}");
    assert_eq!(
        report["error"]["found"],
        parse(&log.lines[kept - 1])["current_hash"],
        "{report}"
    );
    assert_eq!(report["records_checked"], kept, "{report}");

    // A head that is not the log's (the log was extended past it) fails too.
    let early_head = parse(&log.lines[K])["current_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let file = log.write("extended.jsonl", &log.lines);
    let (code, report) = log.verify_json(&file, &["--expect-head", &early_head]);
    assert_invalid(
        code,
        &report,
        RECORDS - 1,
        Some(RECORDS - 1),
        "head",
        "log extended past the trusted head",
    );

    // An empty file against the real head: nothing verifies.
    let file = log.write("empty.jsonl", &[]);
    let (code, report) = log.verify_json(&file, &["--expect-head", &log.head]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["error"]["check"], "head", "{report}");
}

#[test]
fn golden_vector_usage_errors_and_unreadable_sources() {
    let dir = tempfile::tempdir().unwrap();
    let vector_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../zt-contract/tests/vectors/contract_golden.json");
    let vector: Value =
        serde_json::from_str(&std::fs::read_to_string(vector_path).unwrap()).unwrap();
    let mut record = as_map(vector["body"].clone());
    record.insert("current_hash".into(), vector["current_hash"].clone());
    let file = dir.path().join("golden.jsonl");
    std::fs::write(&file, format!("{}\n", to_line(&record))).unwrap();
    let f = path_str(&file);

    let (code, report) = run_json(&[
        "audit",
        "verify",
        "--file",
        f,
        "--insecure-skip-signatures",
        "--json",
    ]);
    assert_valid(code, &report, 1, "golden vector");
    assert_eq!(report["head_hash"], vector["current_hash"]);
    assert_eq!(report["signatures_checked"], false);
    let out = zt(&["audit", "verify", "--file", f, "--insecure-skip-signatures"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("SIGNATURES WERE NOT CHECKED"), "{text}");

    // --file needs --keys or the explicit insecure flag: usage error.
    let out = zt(&["audit", "verify", "--file", f]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--keys"));
    let out = zt(&["audit", "verify", "--file", f, "--json"]);
    assert_eq!(out.status.code(), Some(2));

    // The vector carries no signature, so with keys it fails the signature check.
    let keys = dir.path().join("empty-keys.json");
    std::fs::write(&keys, r#"{"keys":[]}"#).unwrap();
    let (code, report) = run_json(&[
        "audit",
        "verify",
        "--file",
        f,
        "--keys",
        path_str(&keys),
        "--json",
    ]);
    assert_invalid(
        code,
        &report,
        0,
        None,
        "signature",
        "golden vector with keys",
    );

    // The vector with one byte of its body changed fails its hash.
    let mut edited = record.clone();
    edited.insert("resource".into(), json!("r2"));
    let edited_file = dir.path().join("golden-edited.jsonl");
    std::fs::write(&edited_file, to_line(&edited)).unwrap();
    let (code, report) = run_json(&[
        "audit",
        "verify",
        "--file",
        path_str(&edited_file),
        "--insecure-skip-signatures",
        "--json",
    ]);
    assert_invalid(code, &report, 0, None, "hash", "edited golden vector");

    // No source at all, or two sources: usage.
    let out = zt(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    let out = zt(&["audit", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(common::zt_bin())
        .args([
            "audit",
            "verify",
            "--file",
            f,
            "--data-dir",
            path_str(dir.path()),
            "--insecure-skip-signatures",
        ])
        .env_remove("ZT_DATA_DIR")
        .env_remove("ZT_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // Sources that cannot be read: exit 1, never 0.
    let missing = dir.path().join("missing.jsonl");
    let (code, report) = run_json(&[
        "audit",
        "verify",
        "--file",
        path_str(&missing),
        "--insecure-skip-signatures",
        "--json",
    ]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["valid"], false);
    assert_eq!(report["error"]["check"], "read");
    let (code, report) = run_json(&[
        "audit",
        "verify",
        "--data-dir",
        path_str(&dir.path().join("nope")),
        "--json",
    ]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["valid"], false);
    let (code, report) = run_json(&[
        "audit",
        "verify",
        "--file",
        f,
        "--keys",
        path_str(&missing),
        "--json",
    ]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["valid"], false);
}

/// `zt audit verify --data-dir DD [extra] --json`: exit code and the JSON report.
fn verify_data_dir(dd: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["audit", "verify", "--data-dir", dd];
    args.extend_from_slice(extra);
    args.push("--json");
    run_json(&args)
}

/// Runs `sqlite3 DB SQL`; `None` when the sqlite3 CLI is not installed.
fn sqlite3(db: &Path, sql: &str) -> Option<String> {
    let out = match Command::new("sqlite3").arg(db).arg(sql).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("sqlite3: {e}"),
    };
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[test]
fn data_dir_verifies_and_catches_edits_in_the_database() {
    let log = Log::new();
    let dd = path_str(&log.data_dir);

    let (code, report) = verify_data_dir(dd, &[]);
    assert_valid(code, &report, RECORDS, "--data-dir");
    assert_eq!(report["head_hash"], log.head.as_str());
    let (code, report) = verify_data_dir(
        dd,
        &["--keys", path_str(&log.keys), "--expect-head", &log.head],
    );
    assert_valid(
        code,
        &report,
        RECORDS,
        "--data-dir with trusted keys and head",
    );

    let db = log.data_dir.join("audit.db");
    let mut records = log.records();
    records[K].insert("decision".into(), json!("allow"));
    let sql = format!(
        "UPDATE records SET line = {} WHERE seq = {K}; SELECT changes();",
        sql_quote(&to_line(&records[K]))
    );
    let Some(changed) = sqlite3(&db, &sql) else {
        eprintln!("SKIPPED: the sqlite3 CLI is not installed; database tampering not tested");
        return;
    };
    assert_eq!(changed.trim(), "1");

    let (code, report) = verify_data_dir(dd, &[]);
    assert_invalid(
        code,
        &report,
        K,
        Some(K),
        "hash",
        "record edited in the database",
    );
    let out = zt(&["audit", "verify", "--data-dir", dd]);
    assert_eq!(out.status.code(), Some(1));
    assert_text_names(
        &String::from_utf8(out.stdout).unwrap(),
        format!("seq {K}"),
        "hash",
        "database edit, human",
    );

    // A consistent rewrite re-signed with an attacker's key, hash column and all: the trusted
    // keys (and the keys the store itself publishes) do not know that key.
    let attacker_dir = tempfile::tempdir().unwrap();
    let attacker = LocalKeySigner::load_or_create(attacker_dir.path()).unwrap();
    relink(&mut records, K, Some(&attacker));
    let mut sql = String::from("BEGIN;");
    for r in &records[K..] {
        sql.push_str(&format!(
            "UPDATE records SET line = {}, current_hash = {} WHERE seq = {};",
            sql_quote(&to_line(r)),
            sql_quote(r["current_hash"].as_str().unwrap()),
            r["seq"]
        ));
    }
    sql.push_str("COMMIT;");
    sqlite3(&db, &sql).unwrap();
    // (case, flags, record position where verification stops, check).
    let last = RECORDS - 1;
    let cases: [(&str, &[&str], usize, &str); 3] = [
        (
            "database rewrite, trusted keys",
            &["--keys", path_str(&log.keys)],
            K,
            "signature",
        ),
        ("database rewrite, stored keys", &[], K, "signature"),
        (
            "database rewrite, trusted head",
            &["--insecure-skip-signatures", "--expect-head", &log.head],
            last,
            "head",
        ),
    ];
    for (what, extra, at, check) in cases {
        let (code, report) = verify_data_dir(dd, extra);
        assert_invalid(code, &report, at, Some(at), check, what);
    }

    // Deleting a row: the next record fails its sequence.
    sqlite3(&db, &format!("DELETE FROM records WHERE seq = {};", K + 2)).unwrap();
    let (code, report) = verify_data_dir(dd, &["--insecure-skip-signatures"]);
    assert_invalid(
        code,
        &report,
        K + 2,
        Some(K + 3),
        "sequence",
        "row deleted from the database",
    );
}
