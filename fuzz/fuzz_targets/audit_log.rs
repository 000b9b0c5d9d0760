//! The audit log verifier (`zt audit verify`, every source) fed a hostile log and hostile
//! keys: never a panic. The first line is a JWKS (as `--keys` or `GET /audit/keys` gives it);
//! where it loads it replaces two fixed custody keys. The harness gives every later line the
//! sequence number, link and hash the verifier expects, so the fuzzer reaches the checks
//! behind them: the signature's form (algorithm, key, base64 DER, a session key's validity)
//! and key rotations (statement, endorsement, place). A line the verifier accepts parses the
//! same leniently; a signature it defers is then checked, which must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use zt_contract::verify::SignaturePolicy;
use zt_contract::{record_hash, ChainVerifier, Jwks, PublicKeySet};

/// Two valid P-256 public keys nobody here signs with: `old`, then `new`.
const FIXED_KEYS: &str = r#"{"keys":[
{"kty":"EC","crv":"P-256","kid":"old","use":"sig","alg":"ES256","x":"vNkVf8nCu6G4aI_5lx06P6SnBvzFVc94c43sTAowOLQ","y":"1igvRMhQlvV-j1j7LcGZeP_wT07D1mw3KjrE_hZJAvA"},
{"kty":"EC","crv":"P-256","kid":"new","use":"sig","alg":"ES256","x":"AUOcu2ACfSJu2ejXXRRmI2AMzrmlC7sqPCjwIjIvpMU","y":"FZ2Ws8Ry_vyui457tFweLMX3hBo6tDhO37CJlxbNnKk"}]}"#;

/// Records looked at per input, so one input costs a bounded time.
const MAX_RECORDS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let given = lines
        .next()
        // As `zt audit verify --keys` reads a key file.
        .and_then(|first| Jwks::from_json(first.as_bytes()).ok())
        .and_then(|jwks| PublicKeySet::from_jwks(&jwks).ok());
    let keys = match given {
        Some(keys) => keys,
        None => {
            let jwks = Jwks::from_json(FIXED_KEYS.as_bytes()).expect("the fixed keys parse");
            PublicKeySet::from_jwks(&jwks).expect("the fixed keys load")
        }
    };
    let mut verifier = ChainVerifier::new(SignaturePolicy::Require(&keys));
    for line in lines.take(MAX_RECORDS) {
        let Ok(mut record) = verifier.parse_line(line) else {
            continue;
        };
        let lenient: Map<String, Value> =
            serde_json::from_str(line).expect("serde_json reads what the verifier accepts");
        assert_eq!(lenient, record);
        record.insert("seq".into(), Value::from(verifier.checked()));
        record.insert("previous_hash".into(), verifier.head_hash().into());
        record.insert("current_hash".into(), record_hash(&record).to_hex().into());
        if let Ok(Some(pending)) = verifier.check_record_deferred(&record) {
            let _ = pending.verify(&keys);
        }
    }
    let _ = verifier.finish(None);
});
