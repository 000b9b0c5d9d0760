//! Golden vectors: the wire contract's hashing, byte for byte.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use serde_json::Value;
use zt_contract::canonical::canonical_json;
use zt_contract::verify::{SignaturePolicy, VerifyCheck};
use zt_contract::{record_hash, ChainVerifier, Decision, RecordBody, RecordKind};

fn golden() -> Value {
    serde_json::from_str(include_str!("vectors/contract_golden.json")).unwrap()
}

#[test]
fn contract_golden_vector_hashes_byte_for_byte() {
    let g = golden();
    let body = g["body"].as_object().unwrap();
    assert_eq!(canonical_json(&g["body"]), g["canonical"].as_str().unwrap());
    assert_eq!(
        record_hash(body).to_hex(),
        g["current_hash"].as_str().unwrap()
    );
}

#[test]
fn contract_golden_vector_verifies_as_a_one_record_chain() {
    let g = golden();
    let mut record = g["body"].as_object().unwrap().clone();
    record.insert("current_hash".into(), g["current_hash"].clone());
    let mut verifier = ChainVerifier::new(SignaturePolicy::DangerousSkip);
    verifier.check_record(&record).unwrap();
    assert_eq!(verifier.head_hash(), g["current_hash"].as_str().unwrap());
}

#[test]
fn a_line_with_a_duplicate_key_is_refused_though_its_hash_holds() {
    let g = golden();
    let mut record = g["body"].as_object().unwrap().clone();
    record.insert("current_hash".into(), g["current_hash"].clone());
    let line = serde_json::to_string(&record).unwrap();
    // serde_json keeps the last `decision`, the golden `allow`, so the hash holds; a reader
    // keeping the first would see `deny`.
    let doubled = line.replacen('{', r#"{"decision":"deny","#, 1);
    let last_wins: serde_json::Map<String, Value> = serde_json::from_str(&doubled).unwrap();
    assert_eq!(last_wins, record);
    let mut verifier = ChainVerifier::new(SignaturePolicy::DangerousSkip);
    let error = verifier.check_line(&doubled).unwrap_err();
    assert_eq!(error.check, VerifyCheck::Format, "{error}");
    assert!(error.found.contains("duplicate key `decision`"), "{error}");
    // Refused before any check: the verifier still expects the first record.
    verifier.check_line(&line).unwrap();
}

#[test]
fn typed_record_body_serializes_canonically() {
    let body = RecordBody {
        action: "a.b".into(),
        actor: "x\u{1}\"é".into(),
        authenticated: false,
        claimed_actor: Some("claimed".into()),
        context_sha256: Some("00".into()),
        counts: Some(
            [("z".to_string(), 2), ("a".to_string(), 1)]
                .into_iter()
                .collect(),
        ),
        decision: Decision::Deny,
        execution: Some(zt_contract::ExecutionReceipt {
            decision_hash: "h".into(),
            decision_seq: 3,
            degraded: Some(vec!["network".into()]),
            detail: None,
            duration_ms: 12,
            exit_code: Some(-1),
            outcome: zt_contract::ExecutionOutcome::Exited,
            signal: None,
            stderr_bytes: 0,
            stderr_sha256: "e".into(),
            stdout_bytes: 5,
            stdout_sha256: "o".into(),
        }),
        key_rotation: None,
        kind: RecordKind::Rejections,
        policies: Some(vec!["p-2".into(), "p-1".into()]),
        policy_version: Some("v".into()),
        previous_hash: "p".into(),
        reason: "r".into(),
        request_id: Some("id".into()),
        resource: "".into(),
        resource_attributes_sha256: Some("ra".into()),
        sandbox: Some(zt_contract::SandboxProfile::default_profile()),
        seq: 7,
        timestamp: "t".into(),
    };
    let typed = serde_json::to_string(&body).unwrap();
    let generic: Value = serde_json::from_str(&typed).unwrap();
    assert_eq!(typed, canonical_json(&generic));
}
