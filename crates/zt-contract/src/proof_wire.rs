//! Wire types of the proof routes (`GET /audit/checkpoint/key`, `GET /audit/proof/inclusion`,
//! `GET /audit/proof/consistency`; see `docs/PROOFS.md`): what the server writes and clients
//! read. Hashes travel as 64 lowercase hex digits; a client parses them itself
//! ([`Digest32::from_hex`]) so that a malformed one is a malformed proof, not a bad answer.
//! Unknown fields are ignored, so a server may add fields without breaking older clients.

use serde::{Deserialize, Serialize};

use crate::Digest32;

/// `GET /audit/checkpoint/key`: what a verifier needs to check checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointKeyBody {
    /// Always true.
    pub ok: bool,
    /// The log's origin: the first line of every checkpoint and the note key's name.
    pub origin: String,
    /// The `kid` of the signing key in `GET /audit/keys`.
    pub kid: String,
    /// The signed-note key ID (8 hex digits) that starts every checkpoint signature.
    pub note_key_id: String,
    /// The note verifier key, `<origin>+<note key ID>+<base64(0x02 || SPKI DER)>`.
    pub vkey: String,
}

/// `GET /audit/proof/inclusion?seq=N&size=M`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionBody {
    /// Always true.
    pub ok: bool,
    /// The record (leaf index).
    pub seq: u64,
    /// The tree size the proof is for.
    pub size: u64,
    /// The record's leaf hash, `SHA-256(0x00 || current_hash bytes)`, in hex. Informative
    /// only: a verifier recomputes it from the record.
    pub leaf_hash: String,
    /// The audit path, the leaf's sibling first, in hex.
    pub proof: Vec<String>,
}

/// `GET /audit/proof/consistency?from=M&to=N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyBody {
    /// Always true.
    pub ok: bool,
    /// The older tree size.
    pub from: u64,
    /// The newer tree size.
    pub to: u64,
    /// The consistency proof, in hex (empty when `from` is 0 or equals `to`).
    pub proof: Vec<String>,
}

impl InclusionBody {
    /// The answer for the proof of leaf `seq` in the tree of `size` leaves.
    pub fn new(seq: u64, size: u64, leaf_hash: &Digest32, proof: &[Digest32]) -> Self {
        Self {
            ok: true,
            seq,
            size,
            leaf_hash: leaf_hash.to_hex(),
            proof: hex_all(proof),
        }
    }
}

impl ConsistencyBody {
    /// The answer for the proof from the tree of `from` leaves to the tree of `to`.
    pub fn new(from: u64, to: u64, proof: &[Digest32]) -> Self {
        Self {
            ok: true,
            from,
            to,
            proof: hex_all(proof),
        }
    }
}

fn hex_all(hashes: &[Digest32]) -> Vec<String> {
    hashes.iter().map(Digest32::to_hex).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_bodies_keep_their_wire_shape() {
        let a = Digest32([0xab; 32]);
        let b = Digest32([0x01; 32]);
        let inclusion = InclusionBody::new(3, 8, &a, &[b]);
        let expected = json!({"ok": true, "seq": 3, "size": 8, "leaf_hash": "ab".repeat(32),
                              "proof": ["01".repeat(32)]});
        assert_eq!(serde_json::to_value(&inclusion).unwrap(), expected);
        assert_eq!(
            serde_json::from_value::<InclusionBody>(expected).unwrap(),
            inclusion
        );

        let consistency = ConsistencyBody::new(0, 5, &[]);
        let expected = json!({"ok": true, "from": 0, "to": 5, "proof": []});
        assert_eq!(serde_json::to_value(&consistency).unwrap(), expected);

        // A newer server may add fields; a missing one is an error.
        let key = json!({"ok": true, "origin": "o", "kid": "k", "note_key_id": "0a0b0c0d",
                         "vkey": "o+0a0b0c0d+AA==", "added_later": 1});
        let parsed: CheckpointKeyBody = serde_json::from_value(key).unwrap();
        assert_eq!(parsed.vkey, "o+0a0b0c0d+AA==");
        assert!(serde_json::from_value::<ConsistencyBody>(json!({"ok": true, "from": 1})).is_err());
    }
}
