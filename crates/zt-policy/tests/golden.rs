//! Golden vectors: the compiled default policy's canonical text and version. A Cedar upgrade
//! that renders policies differently changes every `policy_version` in the audit log; this
//! test makes that visible. Regenerate with `ZT_BLESS=1 cargo test -p zt-policy --test golden`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;

use aws_lc_rs::digest;
use zt_policy::PolicyEngine;

#[test]
fn the_default_policy_compiles_to_the_golden_text() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/default_policy.cedar");
    let engine = PolicyEngine::default_policy();
    if std::env::var_os("ZT_BLESS").is_some() {
        std::fs::write(&path, engine.source()).unwrap();
    }
    let golden = std::fs::read_to_string(&path).unwrap();
    assert_eq!(engine.source(), golden);
    let expected = format!(
        "sha256:{}",
        hex::encode(digest::digest(&digest::SHA256, golden.as_bytes()).as_ref())
    );
    assert_eq!(engine.version(), expected);
    // Loading the golden text gives the same engine.
    assert_eq!(
        PolicyEngine::from_cedar(&golden).unwrap().version(),
        expected
    );
}
