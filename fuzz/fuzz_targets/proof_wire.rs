//! Proof answers as a client reads them (`zt audit prove`): the wire types, their hex hashes,
//! and the RFC 9162 verifiers fed whatever they hold; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zt_contract::merkle::{verify_consistency, verify_inclusion};
use zt_contract::{CheckpointKeyBody, ConsistencyBody, Digest32, InclusionBody, NoteKey};

fn digests(hex: &[String]) -> Vec<Digest32> {
    hex.iter().filter_map(|h| Digest32::from_hex(h)).collect()
}

fuzz_target!(|data: &[u8]| {
    let root = Digest32::sha256(data);
    if let Ok(body) = serde_json::from_slice::<InclusionBody>(data) {
        let proof = digests(&body.proof);
        let leaf = Digest32::from_hex(&body.leaf_hash).unwrap_or(root);
        let _ = verify_inclusion(&leaf, body.seq, body.size, &proof, &root);
    }
    if let Ok(body) = serde_json::from_slice::<ConsistencyBody>(data) {
        let proof = digests(&body.proof);
        let _ = verify_consistency(body.from, body.to, &root, &root, &proof);
    }
    if let Ok(body) = serde_json::from_slice::<CheckpointKeyBody>(data) {
        let _ = NoteKey::from_vkey(&body.vkey);
    }
});
