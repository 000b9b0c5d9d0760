//! End-to-end tests of checkpoints and proofs: the real `zt` binary over real sockets. Signed
//! checkpoints verify with the published key; inclusion and consistency proofs verify; a
//! forged server is caught; and a history rewritten after a checkpoint was saved is caught even
//! when every hash is recomputed and every record re-signed with the server's own key.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http, http_raw, zt, Server};
use serde_json::{json, Value};
use zt_contract::merkle::{audit_leaf_hash, verify_consistency, verify_inclusion};
use zt_contract::note::NoteKey;
use zt_contract::{verify_checkpoint, Checkpoint, Digest32, Jwks, RecordBody};
use zt_ledger::{AuditStore, LocalKeySigner, SealedRecord, Signer, SqliteStore};

/// Runs `zt ARGS` (which must include `--json`); returns the exit code and the JSON printed.
fn zt_json(args: &[&str]) -> (i32, Value) {
    let out = zt(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "zt {args:?} printed no JSON: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), value)
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `zt audit verify-inclusion --url URL --seq SEQ --checkpoint CP --json`.
fn cli_inclusion(url: &str, seq: impl std::fmt::Display, checkpoint: &Path) -> (i32, Value) {
    zt_json(&[
        "audit",
        "verify-inclusion",
        "--url",
        url,
        "--seq",
        &seq.to_string(),
        "--checkpoint",
        path_str(checkpoint),
        "--json",
    ])
}

/// `zt audit verify-consistency --url URL --old CP --json`.
fn cli_consistency(url: &str, old: &Path) -> (i32, Value) {
    zt_json(&[
        "audit",
        "verify-consistency",
        "--url",
        url,
        "--old",
        path_str(old),
        "--json",
    ])
}

/// The CLI refused with exit 1 and names the `check` that failed.
fn assert_refused(code: i32, report: &Value, check: &str, what: &str) {
    assert_eq!(code, 1, "{what}: {report}");
    assert_eq!(report["error"]["check"], check, "{what}: {report}");
}

/// `audit verify SOURCE [extra] --json`.
fn verify_args<'a>(source: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(source);
    args.extend_from_slice(extra);
    args.push("--json");
    args
}

fn get_text(port: u16, path: &str) -> (u16, String) {
    let (status, body) = http(port, "GET", path, None).unwrap();
    (status, String::from_utf8(body).unwrap())
}

fn get_json(port: u16, path: &str) -> (u16, Value) {
    let (status, body) = get_text(port, path);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn hashes(value: &Value) -> Vec<Digest32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Digest32::from_hex(h.as_str().unwrap()).unwrap())
        .collect()
}

/// `n` decisions, alternately denied (unregistered actor) and allowed.
fn decide(server: &Server, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let actor = if i % 2 == 0 { "nobody" } else { "proof-agent" };
            let (status, body) = server.decide(actor, "proofs.read", &format!("r{i}"));
            assert!(status == 200 || status == 403, "{status} {body}");
            body
        })
        .collect()
}

/// A server with a registered agent allowed `proofs.read`.
fn server_with_agent(data_dir: &Path) -> Server {
    let server = Server::start(data_dir, &[]);
    let (status, _) = server.json("POST", "/agents", Some(json!({"actor": "proof-agent"})));
    assert_eq!(status, 201);
    let (status, _) = server.json(
        "POST",
        "/policies/allow",
        Some(json!({"action": "proofs.read", "reason": "tests"})),
    );
    assert_eq!(status, 201);
    server
}

fn save_checkpoint(server: &Server, out: &Path) -> Value {
    let (code, saved) = zt_json(&[
        "audit",
        "checkpoint",
        "save",
        "--url",
        &server.url(),
        "--out",
        path_str(out),
        "--fresh",
        "--json",
    ]);
    assert_eq!(code, 0, "{saved}");
    saved
}

#[test]
fn checkpoints_and_proofs_verify_with_the_published_key() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let server = server_with_agent(&dir.path().join("data"));
    let answers = decide(&server, 11);
    let size = server.records().len() as u64;

    // The key endpoint and the JWKS agree, and the checkpoint verifies with either.
    let (status, key) = get_json(server.port, "/audit/checkpoint/key");
    assert_eq!(status, 200, "{key}");
    let origin = key["origin"].as_str().unwrap().to_string();
    let (_, jwks) = get_text(server.port, "/audit/keys");
    let jwks: Jwks = serde_json::from_str(&jwks).unwrap();
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid == key["kid"].as_str().unwrap())
        .unwrap();
    let from_jwk = NoteKey::from_jwk(&origin, jwk).unwrap();
    let from_vkey = NoteKey::from_vkey(key["vkey"].as_str().unwrap()).unwrap();
    assert_eq!(from_jwk.vkey(), from_vkey.vkey());
    assert_eq!(
        key["note_key_id"],
        format!("{:08x}", from_vkey.key_id()).as_str()
    );

    let (status, headers, note) =
        http_raw(server.port, "GET", "/audit/checkpoint?fresh=1", &[], None).unwrap();
    assert_eq!(status, 200);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain; charset=utf-8"),
        "{headers}"
    );
    let note = String::from_utf8(note).unwrap();
    let checkpoint = verify_checkpoint(&note, &origin, std::slice::from_ref(&from_vkey)).unwrap();
    assert_eq!(checkpoint.size, size);
    assert!(verify_checkpoint(&note, "another/log", std::slice::from_ref(&from_vkey)).is_err());

    // Without `fresh`, a checkpoint of the grown log is issued within about a second.
    decide(&server, 2);
    let grown = size + 2;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, latest) = get_text(server.port, "/audit/checkpoint");
        if verify_checkpoint(&latest, &origin, std::slice::from_ref(&from_vkey))
            .unwrap()
            .size
            == grown
        {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint of the grown log");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Inclusion: every record of the checkpoint, its leaf recomputed from the record.
    let records = server.records();
    for (seq, line) in records.iter().enumerate().take(size as usize) {
        let stored: Value = serde_json::from_str(line).unwrap();
        let current = Digest32::from_hex(stored["current_hash"].as_str().unwrap()).unwrap();
        let (status, proof) = get_json(
            server.port,
            &format!("/audit/proof/inclusion?seq={seq}&size={size}"),
        );
        assert_eq!(status, 200, "{proof}");
        assert_eq!(proof["seq"], seq);
        assert_eq!(proof["size"], size);
        let leaf = audit_leaf_hash(&current);
        assert_eq!(proof["leaf_hash"], leaf.to_hex().as_str());
        verify_inclusion(
            &leaf,
            seq as u64,
            size,
            &hashes(&proof["proof"]),
            &checkpoint.root,
        )
        .unwrap();
    }
    // A decision's own answer is enough to find its leaf: evidence.seq and current_hash.
    let last = answers.last().unwrap();
    let seq = last["evidence"]["seq"].as_u64().unwrap();
    let current = Digest32::from_hex(last["audit"]["current_hash"].as_str().unwrap()).unwrap();
    let (_, proof) = get_json(
        server.port,
        &format!("/audit/proof/inclusion?seq={seq}&size={size}"),
    );
    verify_inclusion(
        &audit_leaf_hash(&current),
        seq,
        size,
        &hashes(&proof["proof"]),
        &checkpoint.root,
    )
    .unwrap();

    // The CLI: save two checkpoints, check inclusion of every record, consistency between them.
    let first = outside.path().join("first.checkpoint");
    let saved = save_checkpoint(&server, &first);
    assert_eq!(saved["size"], grown);
    assert_eq!(saved["origin"], origin.as_str());
    let saved_note = std::fs::read_to_string(&first).unwrap();
    assert!(verify_checkpoint(&saved_note, &origin, &[from_jwk]).is_ok());
    for seq in 0..grown {
        let (code, report) = cli_inclusion(&server.url(), seq, &first);
        assert_eq!(code, 0, "seq {seq}: {report}");
        assert_eq!(report["seq"], seq);
    }
    let (code, report) = cli_inclusion(&server.url(), grown, &first);
    assert_refused(code, &report, "inclusion", "a record after the checkpoint");

    decide(&server, 6);
    let second = outside.path().join("second.checkpoint");
    let saved = save_checkpoint(&server, &second);
    let newest = grown + 6;
    assert_eq!(saved["size"], newest);
    let url = server.url();
    let consistency = |old: &Path, new: Option<&Path>| {
        let mut args = vec![
            "audit",
            "verify-consistency",
            "--url",
            url.as_str(),
            "--old",
            path_str(old),
            "--json",
        ];
        if let Some(new) = new {
            args.extend(["--new", path_str(new)]);
        }
        zt_json(&args)
    };
    let (code, report) = consistency(&first, Some(&second));
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["old"]["size"], grown);
    assert_eq!(report["new"]["size"], newest);
    let (code, report) = consistency(&first, None);
    assert_eq!(code, 0, "{report}");
    let (code, report) = consistency(&second, Some(&first));
    assert_refused(code, &report, "consistency", "a smaller new checkpoint");

    // The raw consistency proof checks out with the contract's verifier too.
    let (_, proof) = get_json(
        server.port,
        &format!("/audit/proof/consistency?from={grown}&to={newest}"),
    );
    let (old, new) = (read_checkpoint(&first), read_checkpoint(&second));
    verify_consistency(
        grown,
        newest,
        &old.root,
        &new.root,
        &hashes(&proof["proof"]),
    )
    .unwrap();

    // `verify --checkpoint` from all three sources.
    for source in [
        vec!["--url", url.as_str()],
        vec!["--data-dir", path_str(&server.data_dir)],
    ] {
        for cp in [&first, &second] {
            let mut args = vec!["audit", "verify", "--checkpoint", path_str(cp), "--json"];
            args.extend(&source);
            let (code, report) = zt_json(&args);
            assert_eq!(code, 0, "{args:?}: {report}");
            assert_eq!(report["checkpoint"]["matches"], true);
        }
    }
    let export = outside.path().join("records.jsonl");
    std::fs::write(&export, server.records().join("\n")).unwrap();
    let keys = outside.path().join("keys.json");
    std::fs::write(&keys, serde_json::to_string(&jwks).unwrap()).unwrap();
    let verify_export = || {
        zt_json(&[
            "audit",
            "verify",
            "--file",
            path_str(&export),
            "--keys",
            path_str(&keys),
            "--checkpoint",
            path_str(&second),
            "--json",
        ])
    };
    let (code, report) = verify_export();
    assert_eq!(code, 0, "{report}");
    // A log cut below the checkpoint's size.
    let cut: Vec<String> = server.records().into_iter().take(3).collect();
    std::fs::write(&export, cut.join("\n")).unwrap();
    let (code, report) = verify_export();
    assert_refused(
        code,
        &report,
        "checkpoint",
        "a log cut below the checkpoint",
    );
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("records were removed"),
        "{report}"
    );
}

fn read_checkpoint(path: &Path) -> Checkpoint {
    let note = std::fs::read_to_string(path).unwrap();
    zt_contract::parse_signed_note(&note).unwrap().0
}

#[test]
fn bad_proof_queries_are_400_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    decide(&server, 4);
    let size = server.records().len();
    assert_eq!(size, 4);
    let cases = [
        ("/audit/proof/inclusion", "`seq` is required"),
        ("/audit/proof/inclusion?seq=1", "`size` is required"),
        ("/audit/proof/inclusion?size=4", "`seq` is required"),
        ("/audit/proof/inclusion?seq=4&size=4", "not below"),
        ("/audit/proof/inclusion?seq=0&size=0", "not below"),
        (
            "/audit/proof/inclusion?seq=1&size=5",
            "beyond the log's current size 4",
        ),
        (
            "/audit/proof/inclusion?seq=1&size=18446744073709551615",
            "beyond",
        ),
        (
            "/audit/proof/inclusion?seq=-1&size=4",
            "non-negative integer",
        ),
        (
            "/audit/proof/inclusion?seq=one&size=4",
            "non-negative integer",
        ),
        (
            "/audit/proof/inclusion?seq=1&size=99999999999999999999",
            "non-negative integer",
        ),
        ("/audit/proof/inclusion?seq=1&size=4&seq=2", "given twice"),
        (
            "/audit/proof/inclusion?seq=1&size=4&evil=1",
            "unknown query parameter",
        ),
        ("/audit/proof/consistency?from=3&to=2", "larger than `to`"),
        (
            "/audit/proof/consistency?from=1&to=5",
            "beyond the log's current size 4",
        ),
        ("/audit/proof/consistency?from=1", "`to` is required"),
        ("/audit/proof/consistency?to=2", "`from` is required"),
        (
            "/audit/proof/consistency?from=1&to=2.0",
            "non-negative integer",
        ),
        ("/audit/checkpoint?fresh=yes", "`fresh` must be"),
        ("/audit/checkpoint?size=3", "unknown query parameter"),
        ("/audit/checkpoint/key?x=1", "unknown query parameter"),
    ];
    for (path, message) in cases {
        let (status, headers, body) = http_raw(server.port, "GET", path, &[], None).unwrap();
        assert_eq!(status, 400, "{path}");
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{path}: {headers}"
        );
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["ok"], false, "{path}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(message), "{path}: {error}");
    }
    // Edges that are valid: trivial consistency proofs, the last leaf, the whole tree.
    for (path, proof_len) in [
        ("/audit/proof/consistency?from=0&to=4", Some(0)),
        ("/audit/proof/consistency?from=4&to=4", Some(0)),
        ("/audit/proof/consistency?from=0&to=0", Some(0)),
        ("/audit/proof/consistency?from=3&to=4", None),
        ("/audit/proof/inclusion?seq=3&size=4", Some(2)),
        ("/audit/proof/inclusion?seq=0&size=1", Some(0)),
    ] {
        let (status, body) = get_json(server.port, path);
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["ok"], true);
        if let Some(n) = proof_len {
            assert_eq!(body["proof"].as_array().unwrap().len(), n, "{path}");
        }
    }
    // Refusals are counted like every other bad request.
    let (_, metrics) = get_text(server.port, "/metrics");
    assert!(
        metrics.contains("cause=\"invalid_request\""),
        "refused proof queries are counted"
    );
}

/// What a forging proxy does to one answer: path, status, body in; status, body out.
type Tamper = dyn Fn(&str, u16, Vec<u8>) -> (u16, Vec<u8>) + Send + Sync;

/// A proxy in front of `upstream` that passes every GET through `tamper`; returns its port.
fn forging_proxy(upstream: u16, tamper: Arc<Tamper>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let tamper = tamper.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, headers, body) = http_raw(upstream, "GET", &path, &[], None).unwrap();
                let content_type = headers
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-type: ")
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| "application/json".into());
                let (status, body) = tamper(&path, status, body);
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    port
}

/// Flips the first hex digit of the first proof hash in a JSON proof answer.
fn flip_first_proof_hash(body: Vec<u8>) -> Vec<u8> {
    let mut answer: Value = serde_json::from_slice(&body).unwrap();
    let first = answer["proof"][0].as_str().unwrap().to_string();
    let flipped = if first.starts_with('0') { "1" } else { "0" };
    answer["proof"][0] = json!(format!("{flipped}{}", &first[1..]));
    answer.to_string().into_bytes()
}

#[test]
fn a_forged_server_is_rejected_by_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let server = server_with_agent(&dir.path().join("data"));
    decide(&server, 9);
    let saved = outside.path().join("saved.checkpoint");
    save_checkpoint(&server, &saved);
    decide(&server, 4);
    let size = read_checkpoint(&saved).size;
    let seq = 5u64;
    assert!(seq < size);
    let upstream = server.port;

    // 1. A tampered inclusion proof.
    let proxy = forging_proxy(
        upstream,
        Arc::new(|path, status, body| {
            if path.starts_with("/audit/proof/inclusion") {
                (status, flip_first_proof_hash(body))
            } else {
                (status, body)
            }
        }),
    );
    let inclusion =
        |port: u16, seq: u64| cli_inclusion(&format!("http://127.0.0.1:{port}"), seq, &saved);
    let (code, report) = inclusion(upstream, seq);
    assert_eq!(code, 0, "the honest server: {report}");
    let (code, report) = inclusion(proxy, seq);
    assert_refused(code, &report, "inclusion", "tampered inclusion proof");

    // 2. A record that is not in the log: validly hashed and signed with the server's own key
    //    (a server that lies has its key), with the real proof for that seq and a leaf hash
    //    that matches the forgery. The CLI computes the leaf from the record: rejected.
    let signer = Arc::new(LocalKeySigner::load_or_create(&server.data_dir).unwrap());
    let forged_leaf = Arc::new(std::sync::Mutex::new(String::new()));
    let proxy = {
        let forged_leaf = forged_leaf.clone();
        forging_proxy(
            upstream,
            Arc::new(move |path, status, body| {
                if path.starts_with("/audit/records") {
                    let line = String::from_utf8(body).unwrap();
                    let mut forged: RecordBody = serde_json::from_str(line.trim()).unwrap();
                    forged.decision = zt_contract::Decision::Allow;
                    forged.reason = "forged".into();
                    let sealed = SealedRecord::seal(forged, signer.as_ref()).unwrap();
                    *forged_leaf.lock().unwrap() = audit_leaf_hash(&sealed.current_hash).to_hex();
                    (status, format!("{}\n", sealed.line).into_bytes())
                } else if path.starts_with("/audit/proof/inclusion") {
                    let mut answer: Value = serde_json::from_slice(&body).unwrap();
                    answer["leaf_hash"] = json!(forged_leaf.lock().unwrap().clone());
                    (status, answer.to_string().into_bytes())
                } else {
                    (status, body)
                }
            }),
        )
    };
    let (code, report) = inclusion(proxy, seq);
    assert_refused(code, &report, "inclusion", "forged record");
    assert!(!forged_leaf.lock().unwrap().is_empty());

    // 2b. The genuine record with a second `decision` before its own: its hash, signature and
    //     proof hold for the last copy, a reader keeping the first sees an allow. Refused.
    let proxy = forging_proxy(
        upstream,
        Arc::new(|path, status, body| {
            if path.starts_with("/audit/records") {
                let line = String::from_utf8(body).unwrap();
                (
                    status,
                    line.replacen('{', r#"{"decision":"allow","#, 1)
                        .into_bytes(),
                )
            } else {
                (status, body)
            }
        }),
    );
    let (code, report) = inclusion(proxy, seq);
    assert_refused(code, &report, "record", "a record with a duplicate key");

    // 3. A proof for another record passed off as this one's.
    let proxy = forging_proxy(
        upstream,
        Arc::new(move |path, status, body| {
            if let Some(query) = path.strip_prefix("/audit/proof/inclusion?") {
                let other = query.replacen(&format!("seq={seq}"), &format!("seq={}", seq + 1), 1);
                let (_, real) = get_json(upstream, &format!("/audit/proof/inclusion?{other}"));
                let mut answer = real;
                answer["seq"] = json!(seq);
                (status, answer.to_string().into_bytes())
            } else {
                (status, body)
            }
        }),
    );
    let (code, report) = inclusion(proxy, seq);
    assert_refused(code, &report, "inclusion", "another record's proof");

    // 4. A tampered consistency proof, and a truncated one.
    for truncate in [false, true] {
        let proxy = forging_proxy(
            upstream,
            Arc::new(move |path, status, body| {
                if path.starts_with("/audit/proof/consistency") {
                    if truncate {
                        let mut answer: Value = serde_json::from_slice(&body).unwrap();
                        answer["proof"].as_array_mut().unwrap().pop();
                        (status, answer.to_string().into_bytes())
                    } else {
                        (status, flip_first_proof_hash(body))
                    }
                } else {
                    (status, body)
                }
            }),
        );
        let (code, report) = cli_consistency(&format!("http://127.0.0.1:{proxy}"), &saved);
        assert_refused(
            code,
            &report,
            "consistency",
            &format!("tampered consistency proof ({truncate})"),
        );
    }

    // 5. A checkpoint whose root was changed after signing, and one signed by another key.
    let attacker_dir = tempfile::tempdir().unwrap();
    let attacker = Arc::new(LocalKeySigner::load_or_create(attacker_dir.path()).unwrap());
    for resign in [false, true] {
        let attacker = attacker.clone();
        let proxy = forging_proxy(
            upstream,
            Arc::new(move |path, status, body| {
                if !path.starts_with("/audit/checkpoint")
                    || path.starts_with("/audit/checkpoint/key")
                {
                    return (status, body);
                }
                let note = String::from_utf8(body).unwrap();
                let (mut checkpoint, _) = zt_contract::parse_signed_note(&note).unwrap();
                checkpoint.root = Digest32::sha256(b"another history");
                let text = checkpoint.body();
                if resign {
                    let key = NoteKey::from_jwk(&checkpoint.origin, attacker.public_jwk()).unwrap();
                    let sig = Signer::sign_digest(
                        attacker.as_ref(),
                        &zt_contract::checkpoint_signing_input(&text),
                    )
                    .unwrap();
                    let der = base64_decode(&sig.signature);
                    let line = zt_contract::NoteSignature {
                        name: key.name().into(),
                        key_id: key.key_id(),
                        signature: der,
                    };
                    (
                        status,
                        zt_contract::note::format_note(&text, &[line]).into_bytes(),
                    )
                } else {
                    let signatures = note.split_once("\n\n").unwrap().1;
                    (status, format!("{text}\n{signatures}").into_bytes())
                }
            }),
        );
        let out = outside.path().join("forged.checkpoint");
        let (code, report) = zt_json(&[
            "audit",
            "checkpoint",
            "save",
            "--url",
            &format!("http://127.0.0.1:{proxy}"),
            "--out",
            path_str(&out),
            "--json",
        ]);
        assert_refused(
            code,
            &report,
            "checkpoint",
            &format!("forged checkpoint (re-signed: {resign})"),
        );
        assert!(!out.exists(), "a rejected checkpoint is not saved");
        let (code, report) = cli_consistency(&format!("http://127.0.0.1:{proxy}"), &saved);
        assert_eq!(
            code, 1,
            "forged current checkpoint (re-signed: {resign}): {report}"
        );
        assert_eq!(report["error"]["check"], "checkpoint", "{report}");
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// Rewrites records `from..` of a stopped server's log: the record `from` says `allow`, and
/// every record from it on is re-chained, re-hashed and re-signed with the server's own key, so
/// the chain and every signature still verify.
fn rewrite_history(data_dir: &Path, from: usize) {
    let db = SqliteStore::path_in(data_dir);
    let lines = SqliteStore::open_read_only(&db)
        .unwrap()
        .read(0, 100_000)
        .unwrap();
    let signer = LocalKeySigner::load_or_create(data_dir).unwrap();
    let mut previous = if from == 0 {
        zt_contract::GENESIS_HASH.to_string()
    } else {
        serde_json::from_str::<Value>(&lines[from - 1]).unwrap()["current_hash"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut rewritten = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(from) {
        let mut body: RecordBody = serde_json::from_str(line).unwrap();
        if i == from {
            assert_eq!(body.decision, zt_contract::Decision::Deny);
            body.decision = zt_contract::Decision::Allow;
            body.reason = "rewritten after the fact".into();
        }
        body.previous_hash = previous;
        let sealed = SealedRecord::seal(body, &signer).unwrap();
        previous = sealed.current_hash.to_hex();
        rewritten.push(sealed);
    }
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut sql = String::from("BEGIN;");
    for r in &rewritten {
        sql.push_str(&format!(
            "UPDATE records SET line = {}, current_hash = {} WHERE seq = {};",
            quote(&r.line),
            quote(&r.current_hash.to_hex()),
            r.body.seq
        ));
    }
    sql.push_str("COMMIT;");
    match Command::new("sqlite3").arg(&db).arg(&sql).output() {
        Ok(out) => assert!(
            out.status.success(),
            "sqlite3: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // No sqlite3 CLI: rebuild the database with the rewritten records instead.
            let kept: Vec<SealedRecord> = lines
                .iter()
                .take(from)
                .map(|l| {
                    let body: RecordBody = serde_json::from_str(l).unwrap();
                    let v: Value = serde_json::from_str(l).unwrap();
                    let current = Digest32::from_hex(v["current_hash"].as_str().unwrap()).unwrap();
                    let signature = serde_json::from_value(v["kms_signature"].clone()).unwrap();
                    SealedRecord {
                        body,
                        current_hash: current,
                        signature,
                        line: l.clone(),
                    }
                })
                .collect();
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
            let mut store = SqliteStore::open(&db).unwrap();
            store.publish_key(signer.public_jwk()).unwrap();
            store.append(&kept).unwrap();
            store.append(&rewritten).unwrap();
        }
        Err(e) => panic!("sqlite3: {e}"),
    }
}

#[test]
fn a_history_rewritten_and_re_signed_after_a_checkpoint_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = server_with_agent(&data_dir);
    decide(&server, 12);
    let records = server.records();
    // The first denied decision after the admin records.
    let target = records
        .iter()
        .position(|l| l.contains("\"decision\":\"deny\"") && l.contains("\"kind\":\"decision\""))
        .unwrap();
    let saved = outside.path().join("saved.checkpoint");
    save_checkpoint(&server, &saved);
    let keys = outside.path().join("keys.json");
    let (_, jwks) = get_text(server.port, "/audit/keys");
    std::fs::write(&keys, jwks).unwrap();
    let (code, report) = cli_inclusion(&server.url(), target, &saved);
    assert_eq!(code, 0, "before the rewrite: {report}");
    assert_eq!(server.terminate(), Some(0));

    rewrite_history(&data_dir, target);

    // The server starts on the rewritten log: its tail verifies (hashes, links, signatures).
    let server = Server::start(&data_dir, &[]);
    decide(&server, 3);
    let dd = path_str(&data_dir);
    let url = server.url();

    // The same three sources, offline and over HTTP.
    let keys_path = path_str(&keys);
    let sources: [&[&str]; 3] = [
        &["--data-dir", dd],
        &["--data-dir", dd, "--keys", keys_path],
        &["--url", url.as_str()],
    ];

    // Plain verification passes: every hash, link and signature checks out.
    for source in sources {
        let args = verify_args(source, &[]);
        let (code, report) = zt_json(&args);
        assert_eq!(code, 0, "{args:?}: {report}");
        assert_eq!(report["valid"], true);
    }

    // The saved checkpoint catches it, offline and over HTTP.
    for source in sources {
        let args = verify_args(source, &["--checkpoint", path_str(&saved)]);
        let (code, report) = zt_json(&args);
        assert_eq!(code, 1, "{args:?}: {report}");
        assert_eq!(report["valid"], false);
        assert_eq!(report["error"]["check"], "checkpoint", "{report}");
        assert_eq!(report["checkpoint"]["matches"], false);
        assert!(
            report["error"]["message"]
                .as_str()
                .unwrap()
                .contains("rewritten"),
            "{report}"
        );
    }
    let out = zt(&[
        "audit",
        "verify",
        "--data-dir",
        dd,
        "--checkpoint",
        path_str(&saved),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("INVALID: "));

    // The server's own checkpoints now describe the rewritten log: no consistency proof
    // links the saved one to them.
    let (code, report) = cli_consistency(&server.url(), &saved);
    assert_refused(
        code,
        &report,
        "consistency",
        "consistency with the rewritten log",
    );
    let out = zt(&[
        "audit",
        "verify-consistency",
        "--url",
        &server.url(),
        "--old",
        path_str(&saved),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("REJECTED: "));

    // The rewritten record is not in the saved checkpoint's log. Nor, as the server now
    // proves, is the unchanged record before it: every audit path to the saved root passes
    // through a subtree that holds rewritten records, so the server can prove nothing against
    // the checkpoint any more.
    let inclusion = |seq: usize| cli_inclusion(url.as_str(), seq, &saved);
    let (code, report) = inclusion(target);
    assert_refused(code, &report, "inclusion", "the rewritten record");
    let (code, report) = inclusion(target - 1);
    assert_refused(code, &report, "inclusion", "the unchanged record before it");
}
