//! Verification of a stored audit log: every hash recomputed from canonical JSON, every link,
//! contiguous sequence numbers, and every signature against the published keys.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::hash::{record_hash, GENESIS_HASH};
use crate::keys::PublicKeySet;
use crate::strict_json;
use crate::timestamp::is_wire_timestamp;
use crate::wire::ALGORITHM_ECDSA_SHA_256;
use crate::Digest32;

/// Which check a record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyCheck {
    /// The line is not a JSON object with the required fields.
    Format,
    /// `current_hash` is not the hash of the record's body.
    Hash,
    /// `previous_hash` is not the previous record's `current_hash`.
    Link,
    /// `seq` is not the next number.
    Sequence,
    /// The log does not end at the head the caller trusts (records were cut off the end).
    Head,
    /// `kms_signature` is missing, not `ECDSA_SHA_256`, names an unknown key, does not verify,
    /// or was made by a session key outside its certified validity period; or a rotation
    /// record's endorsement of the incoming key by the outgoing one does not hold, or the
    /// record is not signed by the incoming key (or a session key it certified).
    Signature,
    /// An execution receipt that does not answer a broker's allow decision of the same actor,
    /// or a second receipt for one (see [`crate::receipts`]).
    Receipt,
}

impl VerifyCheck {
    /// Stable lowercase name, used in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyCheck::Format => "format",
            VerifyCheck::Hash => "hash",
            VerifyCheck::Link => "link",
            VerifyCheck::Sequence => "sequence",
            VerifyCheck::Head => "head",
            VerifyCheck::Signature => "signature",
            VerifyCheck::Receipt => "receipt",
        }
    }
}

impl fmt::Display for VerifyCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first bad record: where it is, which check failed, what was expected and found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {position}: {check} check failed: expected {expected}, found {found}")]
pub struct VerifyError {
    /// Position in the input, from 0.
    pub index: u64,
    /// The record's `seq` when it has one that parses.
    pub seq: Option<u64>,
    /// Which check failed.
    pub check: VerifyCheck,
    /// What a valid record has there.
    pub expected: String,
    /// What this record has.
    pub found: String,
    /// Human description of the position (`seq 12` or `line 13`).
    pub position: String,
}

/// How signatures are treated.
#[derive(Debug)]
pub enum SignaturePolicy<'k> {
    /// Every record must carry a valid `ECDSA_SHA_256` signature by one of these keys.
    Require(&'k PublicKeySet),
    /// Signatures are not checked: only hashes, links and sequence. Danger: anyone can rewrite
    /// such a log consistently; use only for fixtures that carry no signature.
    DangerousSkip,
}

/// What the in-order checks of one record found: its hash, its signature still to verify, the
/// custody key behind that signature, and the custody key its rotation retires.
type Examined<'k> = (
    Digest32,
    Option<PendingSignature>,
    Option<&'k str>,
    Option<String>,
);

/// Checks records one at a time, in log order, holding only the previous hash.
#[derive(Debug)]
pub struct ChainVerifier<'k> {
    signatures: SignaturePolicy<'k>,
    previous_hash: String,
    /// The custody key behind the last good record's signature (`None` before the first
    /// record seen, or when signatures are skipped): a rotation must follow its outgoing key.
    previous_custody: Option<&'k str>,
    /// Custody keys handed over by a rotation bound to its place in this log: none of them,
    /// nor a session key they certified, may sign a later record.
    retired: Vec<String>,
    next_index: u64,
    next_seq: u64,
}

impl<'k> ChainVerifier<'k> {
    /// A verifier for a log that starts at genesis (seq 0, previous hash 64 zeros).
    pub fn new(signatures: SignaturePolicy<'k>) -> Self {
        Self {
            signatures,
            previous_hash: GENESIS_HASH.to_string(),
            previous_custody: None,
            retired: Vec::new(),
            next_index: 0,
            next_seq: 0,
        }
    }

    /// A verifier that continues a chain from a trusted point: the next record must have
    /// `seq == next_seq` and link to `previous_hash`.
    pub fn resume(signatures: SignaturePolicy<'k>, next_seq: u64, previous_hash: &str) -> Self {
        Self {
            signatures,
            previous_hash: previous_hash.to_string(),
            previous_custody: None,
            retired: Vec::new(),
            next_index: 0,
            next_seq,
        }
    }

    /// Number of records checked so far.
    pub fn checked(&self) -> u64 {
        self.next_index
    }

    /// `current_hash` of the last good record (64 zeros before the first).
    pub fn head_hash(&self) -> &str {
        &self.previous_hash
    }

    /// Checks one stored record given as a JSON line.
    pub fn check_line(&mut self, line: &str) -> Result<(), VerifyError> {
        let record = self.parse_line(line)?;
        self.check_record(&record)
    }

    /// Parses one stored line into the record it must be (a JSON object); the format failure
    /// otherwise, at the position of the next record. Strict: a line with two equal keys is
    /// refused, since its hash and signature hold for one reading (serde_json keeps the last
    /// copy) while a reader that keeps the first sees another record. The server never writes
    /// one.
    pub fn parse_line(&self, line: &str) -> Result<Map<String, Value>, VerifyError> {
        match strict_json::parse_value(line.as_bytes()) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(self.fail(
                None,
                VerifyCheck::Format,
                "a JSON object",
                "another JSON value",
            )),
            Err(e) => Err(self.fail(None, VerifyCheck::Format, "a JSON object", &e.to_string())),
        }
    }

    /// Checks one stored record, its signature included. On failure the verifier stays where
    /// it was, before this record.
    pub fn check_record(&mut self, record: &Map<String, Value>) -> Result<(), VerifyError> {
        let (computed, signature, custody, retires) = self.examine(record)?;
        if let (Some(signature), SignaturePolicy::Require(keys)) = (&signature, &self.signatures) {
            signature.verify(keys)?;
        }
        self.advance(&computed, custody, retires);
        Ok(())
    }

    /// Checks one stored record in log order (format, sequence, link, hash, and the form of
    /// its signature: algorithm, known key, encoding) and moves on to the next, but leaves the
    /// ECDSA verification, most of a record's cost, to the caller: the returned signature (none
    /// when signatures are skipped) must be verified before the record counts as valid, and
    /// may be verified on another thread. The verifier moves on even if it later fails.
    pub fn check_record_deferred(
        &mut self,
        record: &Map<String, Value>,
    ) -> Result<Option<PendingSignature>, VerifyError> {
        let (computed, signature, custody, retires) = self.examine(record)?;
        self.advance(&computed, custody, retires);
        Ok(signature)
    }

    /// Every in-order check of one record; its hash, its signature still to verify, the
    /// custody key behind that signature, and the custody key it retires (a rotation bound to
    /// its place).
    fn examine(&self, record: &Map<String, Value>) -> Result<Examined<'k>, VerifyError> {
        let seq = record.get("seq").and_then(Value::as_u64);
        if let Some(found) = record.get("seq") {
            if seq != Some(self.next_seq) {
                return Err(self.fail(
                    seq,
                    VerifyCheck::Sequence,
                    &self.next_seq.to_string(),
                    &found.to_string(),
                ));
            }
        }
        for key in ["timestamp", "previous_hash", "current_hash"] {
            if !record.get(key).is_some_and(Value::is_string) {
                return Err(self.fail(
                    seq,
                    VerifyCheck::Format,
                    &format!("a string `{key}`"),
                    "none",
                ));
            }
        }
        let timestamp = str_field(record, "timestamp");
        if !is_wire_timestamp(timestamp) {
            return Err(self.fail(
                seq,
                VerifyCheck::Format,
                "an RFC 3339 UTC millisecond timestamp",
                timestamp,
            ));
        }
        let previous = str_field(record, "previous_hash");
        if previous != self.previous_hash {
            return Err(self.fail(seq, VerifyCheck::Link, &self.previous_hash, previous));
        }
        let stored = str_field(record, "current_hash");
        let computed = record_hash(record);
        if stored != computed.to_hex() {
            return Err(self.fail(seq, VerifyCheck::Hash, &computed.to_hex(), stored));
        }
        let signature = match self.signatures {
            SignaturePolicy::Require(keys) => {
                let (key_id, der) = signature_form(keys, record.get("kms_signature"), timestamp)
                    .map_err(|(expected, found)| {
                        self.fail(seq, VerifyCheck::Signature, &expected, &found)
                    })?;
                let custody = keys.custody_key_of(&key_id);
                if let Some(retired) = custody.filter(|c| self.retired.iter().any(|r| r == c)) {
                    return Err(self.fail(
                        seq,
                        VerifyCheck::Signature,
                        "a record signed under a custody key not handed over by an earlier rotation",
                        &format!("a record signed under `{retired}`, retired by an earlier rotation"),
                    ));
                }
                let mut retires = None;
                if let Some(rotation) = record.get("key_rotation") {
                    let place = Place {
                        previous_hash: previous,
                        previous_custody: self.previous_custody,
                    };
                    match check_rotation(keys, rotation, &key_id, place) {
                        Ok(handed_over) => retires = handed_over,
                        Err(found) => {
                            return Err(self.fail(
                                seq,
                                VerifyCheck::Signature,
                                "a key rotation, signed by the incoming key, whose endorsement verifies with the outgoing key, right after that key's last record",
                                &found,
                            ))
                        }
                    }
                }
                let pending = PendingSignature {
                    index: self.next_index,
                    seq,
                    key_id,
                    digest: computed,
                    der,
                };
                (Some(pending), custody, retires)
            }
            SignaturePolicy::DangerousSkip => (None, None, None),
        };
        let (signature, custody, retires) = signature;
        Ok((computed, signature, custody, retires))
    }

    /// Makes the record whose hash is `computed`, signed under `custody`, the last good one;
    /// `retires`, the custody key its rotation handed over, may sign nothing after it.
    fn advance(&mut self, computed: &Digest32, custody: Option<&'k str>, retires: Option<String>) {
        self.previous_hash = computed.to_hex();
        self.previous_custody = custody;
        self.retired.extend(retires);
        self.next_index += 1;
        self.next_seq += 1;
    }

    /// Ends verification: when the caller holds a trusted head hash (a saved `/audit/head`, or
    /// the newest decision it was given), the log must end exactly there; a log cut short or
    /// extended past it fails, naming its last record.
    pub fn finish(&self, expected_head: Option<&str>) -> Result<(), VerifyError> {
        match expected_head {
            Some(expected) if expected != self.previous_hash => {
                let last = self.next_seq.checked_sub(1);
                let mut error = self.fail(last, VerifyCheck::Head, expected, &self.previous_hash);
                error.index = self.next_index.saturating_sub(1);
                Err(error)
            }
            _ => Ok(()),
        }
    }

    fn fail(
        &self,
        seq: Option<u64>,
        check: VerifyCheck,
        expected: &str,
        found: &str,
    ) -> VerifyError {
        failure(self.next_index, seq, check, expected, found)
    }
}

/// A record's signature whose form has been checked in log order, its ECDSA verification
/// still to do (see [`ChainVerifier::check_record_deferred`]).
#[derive(Debug)]
pub struct PendingSignature {
    index: u64,
    seq: Option<u64>,
    key_id: String,
    digest: Digest32,
    der: Vec<u8>,
}

impl PendingSignature {
    /// The record's position in the input, from 0.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Verifies the signature; the failure names the record as the in-order checks would.
    pub fn verify(&self, keys: &PublicKeySet) -> Result<(), VerifyError> {
        if keys.verify_digest(&self.key_id, &self.digest, &self.der) {
            Ok(())
        } else {
            Err(failure(
                self.index,
                self.seq,
                VerifyCheck::Signature,
                &format!("a valid signature by `{}`", self.key_id),
                "a signature that does not verify",
            ))
        }
    }
}

/// The failure of the record at `index` (with `seq` when it has one that parses).
fn failure(
    index: u64,
    seq: Option<u64>,
    check: VerifyCheck,
    expected: &str,
    found: &str,
) -> VerifyError {
    let position = match seq {
        Some(seq) => format!("seq {seq}"),
        None => format!("line {}", index + 1),
    };
    VerifyError {
        index,
        seq,
        check,
        expected: expected.to_string(),
        found: truncate(found),
        position,
    }
}

fn str_field<'a>(record: &'a Map<String, Value>, key: &str) -> &'a str {
    record.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", s.get(..cut).unwrap_or_default()),
        None => s.to_string(),
    }
}

/// Where a rotation record stands: its own `previous_hash`, and the custody key behind the
/// record before it when the verifier saw that record.
struct Place<'a> {
    previous_hash: &'a str,
    previous_custody: Option<&'a str>,
}

/// Checks the `key_rotation` member of a rotation record (see [`crate::key_rotation`]) whose
/// record is signed by `signer` and stands at `place`: the record must be the incoming key's
/// (signed by it or by a session key it certified), so an endorsement copied into a record of
/// another key does not pass for that key's rotation, and it must stand where the endorsement
/// says custody passed.
fn check_rotation(
    keys: &PublicKeySet,
    rotation: &Value,
    signer: &str,
    place: Place<'_>,
) -> Result<Option<String>, String> {
    let rotation =
        crate::KeyRotation::deserialize(rotation).map_err(|e| format!("key_rotation: {e}"))?;
    rotation.check(keys)?;
    rotation.check_position(place.previous_hash, place.previous_custody)?;
    // A rotation bound to its place is one writer's: custody passed from the outgoing key
    // for good. One that names no place is a replica's, among others that may still sign with
    // the outgoing key.
    let handed_over = rotation
        .previous_hash
        .is_some()
        .then(|| rotation.previous_key_id.clone());
    match keys.custody_key_of(signer) {
        Some(custody) if custody == rotation.key_id => Ok(handed_over),
        _ => Err(format!(
            "a rotation to `{}` in a record signed by `{signer}`",
            rotation.key_id
        )),
    }
}

/// Checks the form of a record's `kms_signature`: the algorithm, a published key, a decodable
/// signature, and a time inside the certified validity of a session key. Returns the key id
/// and the DER signature to verify; on failure (expected, found) for the report.
fn signature_form(
    keys: &PublicKeySet,
    sig: Option<&Value>,
    timestamp: &str,
) -> Result<(String, Vec<u8>), (String, String)> {
    let Some(Value::Object(sig)) = sig else {
        return Err(("a kms_signature object".into(), "none".into()));
    };
    let algorithm = sig
        .get("algorithm")
        .and_then(Value::as_str)
        .unwrap_or("none");
    if algorithm != ALGORITHM_ECDSA_SHA_256 {
        return Err((
            format!("algorithm {ALGORITHM_ECDSA_SHA_256}"),
            format!("algorithm {algorithm}"),
        ));
    }
    let key_id = sig
        .get("key_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !keys.contains(key_id) {
        return Err(("a published key id".into(), format!("key id `{key_id}`")));
    }
    let signature = sig
        .get("signature")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Ok(der) = STANDARD.decode(signature) else {
        return Err((
            "base64 DER signature".into(),
            "undecodable signature".into(),
        ));
    };
    if !keys.valid_at(key_id, timestamp) {
        return Err((
            format!("a time inside the certified validity of session key `{key_id}`"),
            format!("timestamp {timestamp}"),
        ));
    }
    Ok((key_id.to_string(), der))
}
