use serde_json::{json, Value};

use super::*;

fn granted() -> Value {
    serde_json::to_value(SandboxProfile::default_profile()).unwrap()
}

fn decision(seq: u64, actor: &str, decision: &str, sandbox: Option<Value>) -> Value {
    let mut record = json!({
        "kind": "decision", "seq": seq, "actor": actor, "action": "ci.build",
        "decision": decision, "timestamp": "t", "current_hash": format!("{seq:064}"),
    });
    if let Some(sandbox) = sandbox {
        record["sandbox"] = sandbox;
    }
    record
}

fn receipt(seq: u64, actor: &str, decision_seq: u64, sandbox: Value) -> Value {
    let digest = "0".repeat(64);
    json!({
        "kind": "execution", "seq": seq, "actor": actor, "decision": "allow", "sandbox": sandbox,
        "execution": {
            "decision_seq": decision_seq, "decision_hash": format!("{decision_seq:064}"),
            "outcome": "exited", "exit_code": 0, "duration_ms": 1,
            "stdout_bytes": 0, "stdout_sha256": digest, "stderr_bytes": 0, "stderr_sha256": digest,
        }
    })
}

fn feed(records: &[Value]) -> Result<ReceiptChecker, ReceiptProblem> {
    let mut checker = ReceiptChecker::new();
    for record in records {
        checker.check_line(&record.to_string())?;
    }
    Ok(checker)
}

#[test]
fn a_receipt_for_its_broker_allow_passes_and_closes_the_decision() {
    let checker = feed(&[
        decision(0, "a", "allow", Some(granted())),
        decision(1, "a", "allow", Some(granted())),
        receipt(2, "a", 0, granted()),
    ])
    .unwrap();
    assert_eq!(checker.receipts(), 1);
    let orphans = checker.orphans();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].seq, 1);
}

#[test]
fn forged_receipts_fail() {
    let narrow = serde_json::to_value(
        SandboxProfile::new(vec![], vec!["@tmp".into()], vec![], vec![]).unwrap(),
    )
    .unwrap();
    let wide = serde_json::to_value(
        SandboxProfile::new(vec![], vec!["/".into()], vec![], vec![]).unwrap(),
    )
    .unwrap();
    let cases = [
        // Another actor's decision.
        vec![
            decision(0, "a", "allow", Some(granted())),
            receipt(1, "b", 0, granted()),
        ],
        // Twice for one decision.
        vec![
            decision(0, "a", "allow", Some(granted())),
            receipt(1, "a", 0, narrow.clone()),
            receipt(2, "a", 0, narrow),
        ],
        // For a deny, for an allow without a sandbox, for a later or missing decision.
        vec![
            decision(0, "a", "deny", Some(granted())),
            receipt(1, "a", 0, granted()),
        ],
        vec![
            decision(0, "a", "allow", None),
            receipt(1, "a", 0, granted()),
        ],
        vec![
            receipt(0, "a", 1, granted()),
            decision(1, "a", "allow", Some(granted())),
        ],
        // Wider than granted.
        vec![
            decision(0, "a", "allow", Some(granted())),
            receipt(1, "a", 0, wide),
        ],
    ];
    for records in cases {
        assert!(feed(&records).is_err(), "{records:?}");
    }
    // A receipt that lost its `sandbox` is still checked (and fails).
    let mut bare = receipt(1, "a", 0, granted());
    bare.as_object_mut().unwrap().remove("sandbox");
    assert!(feed(&[decision(0, "a", "allow", Some(granted())), bare]).is_err());
}
