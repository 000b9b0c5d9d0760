//! The request body parser every body route uses (`zt_server::parse_json`): never a
//! panic, and whatever it accepts serde_json reads the same way (the strict parser only ever
//! refuses more: duplicate keys, non-object tops, deep nesting, structs from arrays).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zt_contract::authzen::{EvaluationRequest, EvaluationsRequest};
use zt_contract::{DecisionRequest, ReceiptRequest};
use zt_server::parse_json;

fuzz_target!(|data: &[u8]| {
    if let Ok(strict) = parse_json::<DecisionRequest>(data) {
        let lax: DecisionRequest =
            serde_json::from_slice(data).expect("serde_json reads what the strict parser accepts");
        assert_eq!(strict, lax);
        if let Some(context) = &strict.context {
            // The context hash is computed over its canonical form: stable under a round trip.
            let value = serde_json::Value::Object(context.clone());
            let canonical = zt_contract::canonical::canonical_json(&value);
            let again: serde_json::Value =
                serde_json::from_str(&canonical).expect("canonical JSON parses");
            assert_eq!(zt_contract::canonical::canonical_json(&again), canonical);
        }
    }
    if let Ok(strict) = parse_json::<EvaluationRequest>(data) {
        let lax: EvaluationRequest = serde_json::from_slice(data).expect("serde_json agrees");
        assert_eq!(strict, lax);
    }
    let _ = parse_json::<EvaluationsRequest>(data);
    // An execution receipt: whatever parses is canonical (its profile re-serializes to a form
    // that parses back equal) and validates without a panic.
    if let Ok(receipt) = parse_json::<ReceiptRequest>(data) {
        let text = serde_json::to_string(&receipt.sandbox).expect("a profile serializes");
        let again: zt_contract::SandboxProfile =
            serde_json::from_str(&text).expect("a canonical profile parses");
        assert_eq!(again, receipt.sandbox);
        let _ = receipt.execution.validate();
    }
});
