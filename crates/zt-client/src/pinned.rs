//! Pinned verification keys: a JWKS the caller already trusts (a file, or the JSON of an
//! earlier `GET /audit/keys`). With them, a decision counts only if its `kms_signature`
//! verifies over `current_hash` with one of these keys; an unknown `key_id` or a signature
//! that does not verify is an error (fail closed). The check is the audit verifier's own
//! ([`zt_contract::ChainVerifier`]) applied to the record the answer describes.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};
use zt_contract::verify::SignaturePolicy;
use zt_contract::{ChainVerifier, DecisionResponse, Jwks, KeyError, PublicKeySet};

use crate::ClientError;

/// Largest key file read (1 MiB): a JWKS of thousands of keys fits.
const MAX_KEY_FILE: u64 = 1 << 20;

/// Reads a JWKS file an operator gives (pinned keys, `zt audit verify --keys`): at most 1 MiB,
/// read strictly ([`Jwks::from_json`]: no key twice, no positional keys).
pub fn read_jwks_file(path: &Path) -> Result<Jwks, PinnedKeysError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| PinnedKeysError::Io(shown.clone(), e))?;
    let mut text = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut text)
        .map_err(|e| PinnedKeysError::Io(shown.clone(), e))?;
    if text.len() as u64 > MAX_KEY_FILE {
        return Err(PinnedKeysError::TooLarge(shown));
    }
    Jwks::from_json(&text).map_err(not_jwks)
}

/// [`KeyError::NotJwks`] as this module's own error, any other key error as itself.
fn not_jwks(error: KeyError) -> PinnedKeysError {
    match error {
        KeyError::NotJwks(why) => PinnedKeysError::NotJwks(why),
        other => PinnedKeysError::Key(other),
    }
}

/// Why pinned keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PinnedKeysError {
    /// The file could not be read.
    #[error("keys file `{0}`: {1}")]
    Io(String, std::io::Error),
    /// The file is larger than 1 MiB.
    #[error("keys file `{0}` is larger than {MAX_KEY_FILE} bytes")]
    TooLarge(String),
    /// Not a JWKS (`{"keys": [...]}`).
    #[error("keys are not a jwks: {0}")]
    NotJwks(String),
    /// A key is not a usable EC P-256 key, or two keys share an id.
    #[error("pinned keys: {0}")]
    Key(#[from] KeyError),
    /// No key at all: nothing could ever verify.
    #[error("pinned keys: the key set is empty")]
    Empty,
}

/// Verification keys a client trusts for decision signatures.
pub struct PinnedKeys {
    keys: PublicKeySet,
}

impl std::fmt::Debug for PinnedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl PinnedKeys {
    /// The keys of `jwks`; one bad key, or none at all, rejects the set.
    pub fn from_jwks(jwks: &Jwks) -> Result<Self, PinnedKeysError> {
        let keys = PublicKeySet::from_jwks(jwks)?;
        if keys.is_empty() {
            return Err(PinnedKeysError::Empty);
        }
        Ok(Self { keys })
    }

    /// The keys of a JWKS given as JSON (e.g. the saved answer of `GET /audit/keys`).
    /// Read strictly: a key must be an object, never a positional array.
    pub fn from_json(value: &Value) -> Result<Self, PinnedKeysError> {
        let Value::Object(document) = value else {
            return Err(PinnedKeysError::NotJwks("not a JSON object".into()));
        };
        Self::from_jwks(&Jwks::from_document(document).map_err(not_jwks)?)
    }

    /// The keys of a JWKS file (see [`read_jwks_file`]).
    pub fn from_file(path: &Path) -> Result<Self, PinnedKeysError> {
        Self::from_jwks(&read_jwks_file(path)?)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: an empty set is refused when loading.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `decision` as `zt audit verify` checks the stored record it describes: the hash
    /// recomputed from its fields, then the signature by a pinned key over that hash.
    pub fn verify(&self, decision: &DecisionResponse) -> Result<(), ClientError> {
        let rebuild = |e: &dyn std::fmt::Display| {
            ClientError::Evidence(format!("the answer's record cannot be rebuilt: {e}"))
        };
        let mut record: Map<String, Value> = match serde_json::to_value(decision.record_body()) {
            Ok(Value::Object(record)) => record,
            Ok(_) => return Err(rebuild(&"not an object")),
            Err(e) => return Err(rebuild(&e)),
        };
        record.insert(
            "current_hash".into(),
            Value::String(decision.audit.current_hash.clone()),
        );
        let signature =
            serde_json::to_value(&decision.audit.kms_signature).map_err(|e| rebuild(&e))?;
        record.insert("kms_signature".into(), signature);
        ChainVerifier::resume(
            SignaturePolicy::Require(&self.keys),
            decision.evidence.seq,
            &decision.audit.previous_hash,
        )
        .check_record(&record)
        .map_err(|e| {
            ClientError::Evidence(format!(
                "{} check failed: expected {}, found {}",
                e.check, e.expected, e.found
            ))
        })
    }
}
