//! JWT-SVIDs (SPIFFE JWT Verifiable Identity Documents) as bearer tokens.
//!
//! A token is checked as the SPIFFE JWT-SVID specification asks: its header names a key
//! (`kid`) of the trusted JWKS bundle and an algorithm that key is for (never `none`, never a
//! symmetric one); the signature verifies; `aud` contains the configured audience; `exp` is in
//! the future (with [`LEEWAY_SECONDS`] of clock skew allowed, also for `nbf` when present);
//! `sub` is a valid SPIFFE ID, which becomes the caller's identity; and `exp` is at most
//! [`MAX_LIFETIME_SECONDS`] away (a longer-lived token is refused). `iss` is not checked (the
//! specification leaves it optional).
//!
//! A token that verified is remembered (by its SHA-256, with its `exp` and `nbf`) so that its
//! next uses cost a hash instead of a signature check. This is exact, not a shortcut: keys and
//! audience are fixed for the life of a verifier (a reloaded bundle is a new verifier, with an
//! empty memory; `jwt_bundle.rs`), so only the clock can change the verdict,
//! and the remembered `exp` and `nbf` are checked again on every use. Only verified tokens are
//! remembered, at most [`CACHE_ENTRIES`] of them.
//!
//! The bundle is a JWKS file, e.g. a SPIFFE trust bundle: keys with `"use": "x509-svid"` (X.509
//! authorities) are skipped; every other key must be an EC P-256 / P-384 or RSA (≥ 2048 bits)
//! public key with a `kid`, or the server refuses to start.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{PoisonError, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::spiffe::SpiffeId;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub(crate) const LEEWAY_SECONDS: u64 = 30;
/// Longest validity left a token may have when first seen, in seconds (24 hours). A JWT-SVID is
/// meant to live minutes (SPIRE issues them for 5); one valid for months is a bearer secret
/// that outlives any revocation this server could learn of.
pub(crate) const MAX_LIFETIME_SECONDS: u64 = 24 * 60 * 60;
/// Longest token considered, in bytes.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest piece of a token echoed in an error message.
const MAX_ECHO: usize = 64;
/// Most verified tokens remembered.
pub(crate) const CACHE_ENTRIES: usize = 10_000;

/// Why the JWKS bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Reading the file failed.
    #[error("jwt-svid bundle `{0}`: {1}")]
    Io(String, std::io::Error),
    /// The file is not a JWKS (`{"keys": [...]}`).
    #[error("jwt-svid bundle `{0}` is not a jwks document: {1}")]
    Format(String, String),
    /// A key cannot be used to verify JWT-SVIDs.
    #[error("jwt-svid bundle `{0}`, key {1}: {2}")]
    Key(String, usize, String),
    /// No key usable for JWT-SVIDs.
    #[error("jwt-svid bundle `{0}` holds no jwt-svid key")]
    NoKeys(String),
    /// The audience is empty.
    #[error("the jwt-svid audience must not be empty")]
    Audience,
}

/// Why a JWT-SVID was refused. Every variant is answered 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtSvidError {
    /// Not three base64url parts with a JSON header, or over the size limit.
    #[error("the jwt-svid is malformed")]
    Malformed,
    /// `alg: none`.
    #[error("the jwt-svid algorithm `none` is not allowed")]
    AlgorithmNone,
    /// `typ` is present and not `JWT` or `JOSE`.
    #[error("the jwt-svid type `{0}` is not `JWT` or `JOSE`")]
    Type(String),
    /// The header names critical extensions (`crit`); this verifier understands none, and
    /// RFC 7515 section 4.1.11 requires refusing a token whose critical extensions are not
    /// understood.
    #[error(
        "the jwt-svid header marks `{0}` as critical (`crit`); no critical extension is understood"
    )]
    Critical(String),
    /// No `kid` in the header.
    #[error("the jwt-svid header has no key id (`kid`)")]
    MissingKeyId,
    /// The `kid` is not in the bundle.
    #[error("the jwt-svid key id `{0}` is not in the trust bundle")]
    UnknownKeyId(String),
    /// The header's `alg` is not one the named key is for.
    #[error("the jwt-svid algorithm `{0}` does not match its key")]
    Algorithm(String),
    /// The signature does not verify.
    #[error("the jwt-svid signature is not valid")]
    Signature,
    /// The `sub` is of a trust domain the server does not trust (`--spiffe-trust-domain`).
    #[error("the jwt-svid's spiffe id is not of a trust domain this server trusts")]
    UntrustedDomain,
    /// `exp` has passed.
    #[error("the jwt-svid has expired")]
    Expired,
    /// `exp` is further away than the longest lifetime allowed ([`MAX_LIFETIME_SECONDS`], or
    /// less with `--jwt-svid-max-lifetime`), spelled out.
    #[error("the jwt-svid is valid for more than {0}; use a short-lived one")]
    TooLong(String),
    /// `nbf` is in the future.
    #[error("the jwt-svid is not valid yet")]
    NotYetValid,
    /// `aud` does not contain this server's audience.
    #[error("the jwt-svid audience does not include this server")]
    Audience,
    /// `exp`, `aud` or `sub` is missing or of the wrong type.
    #[error("the jwt-svid claim `{0}` is missing or invalid")]
    Claim(String),
    /// `sub` is not a SPIFFE ID.
    #[error("the jwt-svid subject is not a spiffe id")]
    Subject,
    /// The key that signed it is not one of its `sub`'s trust domain (another domain's key
    /// named it).
    #[error("the jwt-svid is not signed by a key of its spiffe id's trust domain (--jwt-svid-jwks-for, else --jwt-svid-jwks)")]
    NotByItsDomain,
}

/// A trusted key and how tokens signed by it are validated.
struct TrustedKey {
    key: DecodingKey,
    validation: Validation,
}

/// A verified token's identity and validity window.
struct Verified {
    id: SpiffeId,
    exp: u64,
    nbf: Option<u64>,
}

/// Verifies JWT-SVIDs against a JWKS bundle for one audience.
pub struct JwtSvidVerifier {
    keys: HashMap<String, TrustedKey>,
    audience: String,
    /// The longest validity left a token may have when first seen, in seconds.
    max_lifetime_seconds: u64,
    verified: RwLock<HashMap<[u8; 32], Verified>>,
}

impl std::fmt::Debug for JwtSvidVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("JwtSvidVerifier")
            .field("kids", &kids)
            .field("audience", &self.audience)
            .finish()
    }
}

/// The claims read after the crate's checks; lenient here so that a missing or mistyped claim
/// is reported by name by those checks, not as a parse error.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    nbf: Option<Value>,
}

/// Whether a bearer token has the shape of a JWS compact serialization (three parts), and so is
/// checked as a JWT-SVID rather than looked up as an opaque token.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

fn echo(text: &str) -> String {
    text.chars().take(MAX_ECHO).collect()
}

impl JwtSvidVerifier {
    /// Reads the JWKS bundle at `path`; tokens must carry `audience` in `aud`.
    pub fn load(path: &Path, audience: &str) -> Result<Self, JwksError> {
        Self::read(path, audience, false)
    }

    /// Reads the bundle at `path` again, as [`Self::load`] does, except that an explicitly empty
    /// bundle (`"keys": []`) is taken: it trusts no key. That is how an operator withdraws the
    /// last key of a running server; at start an empty bundle is a mistake, and refused.
    pub fn reload(path: &Path, audience: &str) -> Result<Self, JwksError> {
        Self::read(path, audience, true)
    }

    fn read(path: &Path, audience: &str, may_be_empty: bool) -> Result<Self, JwksError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| JwksError::Io(shown.clone(), e))?;
        Self::parse(&text, audience, &shown, may_be_empty)
    }

    /// Builds a verifier from JWKS text; `shown` names the source in errors.
    pub fn from_jwks(text: &str, audience: &str, shown: &str) -> Result<Self, JwksError> {
        Self::parse(text, audience, shown, false)
    }

    fn parse(
        text: &str,
        audience: &str,
        shown: &str,
        may_be_empty: bool,
    ) -> Result<Self, JwksError> {
        // Make the crate's crypto backend explicit (aws-lc-rs, as everywhere else here); an
        // `Err` only means it is already installed.
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
            &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
        );
        if audience.trim().is_empty() {
            return Err(JwksError::Audience);
        }
        // Strictly: a bundle with a member twice means one key to one reader, another to the next.
        let document = zt_contract::strict_json::parse_value(text.as_bytes())
            .map_err(|e| JwksError::Format(shown.into(), e.to_string()))?;
        let keys = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwksError::Format(shown.into(), "no `keys` array".into()))?;
        let mut trusted = HashMap::new();
        for (index, key) in keys.iter().enumerate() {
            let bad = |reason: String| JwksError::Key(shown.into(), index, reason);
            let Some((kid, key)) = trusted_key(key, audience).map_err(bad)? else {
                continue;
            };
            if trusted.insert(kid.clone(), key).is_some() {
                return Err(bad(format!("key id `{}` appears twice", echo(&kid))));
            }
        }
        if trusted.is_empty() && !(may_be_empty && keys.is_empty()) {
            return Err(JwksError::NoKeys(shown.into()));
        }
        Ok(Self {
            keys: trusted,
            audience: audience.to_string(),
            max_lifetime_seconds: MAX_LIFETIME_SECONDS,
            verified: RwLock::new(HashMap::new()),
        })
    }

    /// This verifier, refusing tokens valid for more than `seconds` when first seen (at most
    /// [`MAX_LIFETIME_SECONDS`]: a larger value is taken as that).
    pub fn with_max_lifetime(mut self, seconds: u64) -> Self {
        self.max_lifetime_seconds = seconds.min(MAX_LIFETIME_SECONDS);
        self
    }

    /// The ids of the trusted keys.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// How many keys are trusted.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The audience tokens must carry.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Checks `token` and returns the SPIFFE ID it proves.
    pub fn verify(&self, token: &str) -> Result<SpiffeId, JwtSvidError> {
        self.verify_at(token, jsonwebtoken::get_current_timestamp())
    }

    /// [`Self::verify`] at `now` (seconds since the epoch) for a token seen before; a new token
    /// is always checked in full against the real clock.
    fn verify_at(&self, token: &str, now: u64) -> Result<SpiffeId, JwtSvidError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtSvidError::Malformed);
        }
        let digest = token_digest(token);
        let remembered = self
            .read_cache()
            .get(&digest)
            .map(|v| (v.id.clone(), v.exp, v.nbf));
        if let Some((id, exp, nbf)) = remembered {
            if exp.saturating_add(LEEWAY_SECONDS) < now {
                self.write_cache().remove(&digest);
                return Err(JwtSvidError::Expired);
            }
            if nbf.is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECONDS)) {
                return Err(JwtSvidError::NotYetValid);
            }
            return Ok(id);
        }
        let verified = self.verify_in_full(token)?;
        let id = verified.id.clone();
        let mut cache = self.write_cache();
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, v| v.exp.saturating_add(LEEWAY_SECONDS) >= now);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(digest, verified);
        Ok(id)
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, HashMap<[u8; 32], Verified>> {
        self.verified.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; 32], Verified>> {
        self.verified
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every check of the specification, signature included.
    fn verify_in_full(&self, token: &str) -> Result<Verified, JwtSvidError> {
        let header = header_of(token)?;
        let field = |name: &str| header.get(name).and_then(Value::as_str);
        let alg = field("alg").ok_or(JwtSvidError::Malformed)?;
        if alg.eq_ignore_ascii_case("none") {
            return Err(JwtSvidError::AlgorithmNone);
        }
        if let Some(typ) = header.get("typ") {
            match typ.as_str() {
                Some("JWT" | "JOSE") => {}
                Some(other) => return Err(JwtSvidError::Type(echo(other))),
                None => return Err(JwtSvidError::Malformed),
            }
        }
        if let Some(crit) = header.get("crit") {
            return Err(critical(crit));
        }
        let kid = field("kid").ok_or(JwtSvidError::MissingKeyId)?;
        let trusted = self
            .keys
            .get(kid)
            .ok_or_else(|| JwtSvidError::UnknownKeyId(echo(kid)))?;
        let algorithm = Algorithm::from_str(alg).map_err(|_| JwtSvidError::Algorithm(echo(alg)))?;
        if !trusted.validation.algorithms.contains(&algorithm) {
            return Err(JwtSvidError::Algorithm(echo(alg)));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &trusted.key, &trusted.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => JwtSvidError::Signature,
                ErrorKind::ExpiredSignature => JwtSvidError::Expired,
                ErrorKind::ImmatureSignature => JwtSvidError::NotYetValid,
                ErrorKind::InvalidAudience => JwtSvidError::Audience,
                ErrorKind::InvalidAlgorithm => JwtSvidError::Algorithm(echo(alg)),
                ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
                    JwtSvidError::Claim(echo(claim))
                }
                _ => JwtSvidError::Malformed,
            })?;
        let claims = data.claims;
        let sub = claims
            .sub
            .as_ref()
            .and_then(Value::as_str)
            .ok_or_else(|| JwtSvidError::Claim("sub".into()))?;
        let id = SpiffeId::parse(sub).map_err(|_| JwtSvidError::Subject)?;
        let exp = claims
            .exp
            .as_ref()
            .and_then(Value::as_u64)
            .ok_or_else(|| JwtSvidError::Claim("exp".into()))?;
        let now = jsonwebtoken::get_current_timestamp();
        if exp > now.saturating_add(self.max_lifetime_seconds + LEEWAY_SECONDS) {
            return Err(JwtSvidError::TooLong(spelled(self.max_lifetime_seconds)));
        }
        let nbf = match &claims.nbf {
            None => None,
            Some(nbf) => Some(
                nbf.as_u64()
                    .ok_or_else(|| JwtSvidError::Claim("nbf".into()))?,
            ),
        };
        Ok(Verified { id, exp, nbf })
    }
}

fn token_digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.iter_mut()
        .zip(digest.as_ref())
        .for_each(|(o, d)| *o = *d);
    out
}

/// The refusal of a header carrying `crit`: the names it lists, or malformed if it is not the
/// non-empty array of strings RFC 7515 asks for.
fn critical(crit: &Value) -> JwtSvidError {
    let names: Option<Vec<&str>> = crit
        .as_array()
        .filter(|names| !names.is_empty())
        .and_then(|names| names.iter().map(Value::as_str).collect());
    match names {
        Some(names) => JwtSvidError::Critical(echo(&names.join(", "))),
        None => JwtSvidError::Malformed,
    }
}

/// The decoded JOSE header of a compact JWS, without verifying anything; a header that
/// repeats a parameter is malformed (two readers could see two different `alg`s).
/// The trust domain of the SPIFFE ID `token` claims in `sub`, read before anything is
/// verified: only to choose which domain's keys must then verify it, as SPIFFE's per-domain
/// bundles are used. `None` if the token does not claim one.
pub(crate) fn claimed_trust_domain(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims = zt_contract::strict_json::parse_document(&bytes).ok()?;
    let sub = claims.get("sub")?.as_str()?;
    Some(SpiffeId::parse(sub).ok()?.trust_domain().to_string())
}

/// `seconds` as a reader would say it: "24 hours", "10 minutes", "90 seconds".
fn spelled(seconds: u64) -> String {
    let (count, unit) = match seconds {
        s if s % 3600 == 0 => (s / 3600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

fn header_of(token: &str) -> Result<Map<String, Value>, JwtSvidError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtSvidError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| JwtSvidError::Malformed)?;
    zt_contract::strict_json::parse_document(&bytes).map_err(|_| JwtSvidError::Malformed)
}

/// The key id and verification settings of one JWK, `None` for an X.509 authority of a SPIFFE
/// bundle, or why the key cannot be trusted.
fn trusted_key(jwk: &Value, audience: &str) -> Result<Option<(String, TrustedKey)>, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    match field("use") {
        Some("x509-svid") => return Ok(None),
        None | Some("jwt-svid" | "sig") => {}
        Some(other) => return Err(format!("`use` is `{}`, not `jwt-svid`", echo(other))),
    }
    let kid = field("kid")
        .filter(|k| !k.is_empty())
        .ok_or("a jwt-svid key needs a `kid`")?;
    let decode = |name: &str| -> Result<Vec<u8>, String> {
        let text = field(name).ok_or(format!("`{name}` is missing"))?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| format!("`{name}` is not base64url"))
    };
    let (key, mut algorithms) = match (field("kty"), field("crv")) {
        (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
            let (size, algorithm, verification) = match crv {
                "P-256" => (
                    32,
                    Algorithm::ES256,
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
                ),
                _ => (
                    48,
                    Algorithm::ES384,
                    &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
                ),
            };
            let (x, y) = (decode("x")?, decode("y")?);
            if x.len() != size || y.len() != size {
                return Err(format!("`x` and `y` must be {size} bytes for {crv}"));
            }
            let point: Vec<u8> = [&[4u8][..], &x, &y].concat();
            aws_lc_rs::signature::ParsedPublicKey::new(verification, &point)
                .map_err(|_| format!("not a point on {crv}"))?;
            let key = DecodingKey::from_ec_components(
                field("x").unwrap_or_default(),
                field("y").unwrap_or_default(),
            )
            .map_err(|_| "`x` and `y` are not base64url".to_string())?;
            (key, vec![algorithm])
        }
        (Some("EC"), crv) => {
            return Err(format!(
                "curve `{}` is not supported (P-256, P-384)",
                echo(crv.unwrap_or_default())
            ))
        }
        (Some("RSA"), _) => {
            let n = decode("n")?;
            let e = decode("e")?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < 2048 {
                return Err("an rsa key must have at least 2048 bits".into());
            }
            let key = DecodingKey::from_rsa_raw_components(&n, &e);
            let algorithms = vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ];
            (key, algorithms)
        }
        (kty, _) => {
            return Err(format!(
                "key type `{}` is not supported (EC or RSA public keys only)",
                echo(kty.unwrap_or_default())
            ))
        }
    };
    if let Some(alg) = field("alg") {
        let named = Algorithm::from_str(alg)
            .ok()
            .filter(|a| algorithms.contains(a))
            .ok_or(format!("`alg` `{}` does not fit the key type", echo(alg)))?;
        algorithms = vec![named];
    }
    let mut validation = Validation::new(Algorithm::ES256);
    validation.algorithms = algorithms;
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = true;
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    Ok(Some((kid.to_string(), TrustedKey { key, validation })))
}

#[cfg(test)]
#[path = "jwt_svid_tests.rs"]
mod tests;
