//! Canonical JSON (the text records are hashed over): never a panic, valid JSON out, the same
//! value back, and canonical twice is canonical once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zt_contract::canonical::canonical_json;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let canonical = canonical_json(&value);
    let again: serde_json::Value =
        serde_json::from_str(&canonical).expect("canonical JSON is JSON");
    assert_eq!(again, value, "canonical JSON keeps the value");
    assert_eq!(
        canonical_json(&again),
        canonical,
        "canonical JSON is a fixed point"
    );
});
