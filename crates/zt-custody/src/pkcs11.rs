//! The PKCS#11 custody key: an EC P-256 private key on a token (an HSM, or SoftHSM2 for
//! tests), found by its token label and key label, used with `CKM_ECDSA` over the 32-byte
//! digest. The private key never leaves the token: this process holds only handles.
//!
//! A batch's digests are signed on a few sessions at once ([`SESSIONS`] threads), since one
//! PKCS#11 session runs one operation at a time. The user is logged in once; PKCS#11 login
//! state is shared by every session of the application on that token.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zt_contract::{Digest32, Jwk};
use zt_ledger::SignError;

use crate::der::{ecdsa_raw_to_der, p256_point_from_ec_point};
use crate::remote::RemoteKey;
use crate::CustodyError;

/// Sessions opened on the token, and so signatures made at once.
pub const SESSIONS: usize = 4;

/// Where the key is: `pkcs11:module=<path>;token=<label>;key=<label>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The key's `CKA_LABEL` (private and public key objects).
    pub key: String,
}

impl Pkcs11Uri {
    /// Parses the part after `pkcs11:`; every attribute exactly once, nothing else.
    pub fn parse(text: &str) -> Result<Self, CustodyError> {
        let bad = || {
            CustodyError::Spec(format!(
                "`pkcs11:{text}` must be `pkcs11:module=<path>;token=<label>;key=<label>`"
            ))
        };
        let (mut module, mut token, mut key) = (None, None, None);
        for part in text.split(';') {
            let (name, value) = part.split_once('=').ok_or_else(bad)?;
            let slot = match name {
                "module" => &mut module,
                "token" => &mut token,
                "key" => &mut key,
                _ => return Err(bad()),
            };
            if value.is_empty() || slot.replace(value.to_string()).is_some() {
                return Err(bad());
            }
        }
        match (module, token, key) {
            (Some(module), Some(token), Some(key)) => Ok(Self {
                module: PathBuf::from(module),
                token,
                key,
            }),
            _ => Err(bad()),
        }
    }
}

/// A logged-in token and the key's handle, with a pool of sessions.
pub struct Pkcs11Key {
    sessions: Mutex<Vec<Session>>,
    /// Signalled when a session is given back.
    returned: Condvar,
    key: ObjectHandle,
    key_id: String,
    jwk: Jwk,
    /// Kept last so the sessions close before the library is finalized.
    _context: Pkcs11,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Sessions are logged in: only the key is named.
        f.debug_struct("Pkcs11Key")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn p11(what: &str) -> impl Fn(cryptoki::error::Error) -> CustodyError + '_ {
    move |e| CustodyError::Pkcs11(format!("{what}: {e}"))
}

impl Pkcs11Key {
    /// Loads the module, finds the token, logs in with `pin` and finds the key pair.
    pub fn open(uri: &Pkcs11Uri, pin: &str) -> Result<Self, CustodyError> {
        let context = Pkcs11::new(Path::new(&uri.module)).map_err(p11("loading the module"))?;
        context
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(p11("initializing the module"))?;
        let mut slot = None;
        for candidate in context
            .get_slots_with_token()
            .map_err(p11("listing slots"))?
        {
            let info = context
                .get_token_info(candidate)
                .map_err(p11("reading a token"))?;
            if info.label().trim_end() == uri.token {
                if slot.is_some() {
                    return Err(CustodyError::Pkcs11(format!(
                        "two tokens are labelled `{}`",
                        uri.token
                    )));
                }
                slot = Some(candidate);
            }
        }
        let slot =
            slot.ok_or_else(|| CustodyError::Pkcs11(format!("no token labelled `{}`", uri.token)))?;
        let mut sessions = Vec::with_capacity(SESSIONS);
        for _ in 0..SESSIONS {
            sessions.push(
                context
                    .open_ro_session(slot)
                    .map_err(p11("opening a session"))?,
            );
        }
        let first = sessions
            .first()
            .ok_or_else(|| CustodyError::Pkcs11("no session".into()))?;
        first
            .login(UserType::User, Some(&AuthPin::from(pin.to_string())))
            .map_err(p11("logging in"))?;
        let label = Attribute::Label(uri.key.as_bytes().to_vec());
        let find = |class| {
            let found = first
                .find_objects(&[
                    Attribute::Class(class),
                    Attribute::KeyType(KeyType::EC),
                    label.clone(),
                ])
                .map_err(p11("finding the key"))?;
            match found.as_slice() {
                [one] => Ok(*one),
                [] => Err(CustodyError::Pkcs11(format!(
                    "no EC {class} labelled `{}` on token `{}`",
                    uri.key, uri.token
                ))),
                _ => Err(CustodyError::Pkcs11(format!(
                    "several EC {class} objects are labelled `{}`",
                    uri.key
                ))),
            }
        };
        let key = find(ObjectClass::PRIVATE_KEY)?;
        let public = find(ObjectClass::PUBLIC_KEY)?;
        let attributes = first
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(p11("reading the public key"))?;
        let point = attributes
            .iter()
            .find_map(|a| match a {
                Attribute::EcPoint(point) => p256_point_from_ec_point(point),
                _ => None,
            })
            .ok_or_else(|| CustodyError::Pkcs11(format!("key `{}` is not a P-256 key", uri.key)))?;
        let fingerprint = Digest32::sha256(point).to_hex();
        let key_id = format!("zt-pkcs11-{}", fingerprint.get(..16).unwrap_or_default());
        let jwk = Jwk::from_uncompressed_p256(&key_id, point)
            .map_err(|e| CustodyError::Pkcs11(e.to_string()))?;
        Ok(Self {
            sessions: Mutex::new(sessions),
            returned: Condvar::new(),
            key,
            key_id,
            jwk,
            _context: context,
        })
    }

    /// A free session, waiting for one until `until` (records and checkpoints share them).
    fn take_session(&self, until: Instant) -> Option<Session> {
        let mut free = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(session) = free.pop() {
                return Some(session);
            }
            let left = until.checked_duration_since(Instant::now())?;
            free = self
                .returned
                .wait_timeout(free, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn give_back(&self, session: Session) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(session);
        self.returned.notify_one();
    }

    fn sign_with(&self, session: &Session, digest: &Digest32) -> Result<Vec<u8>, SignError> {
        let raw = session
            .sign(&Mechanism::Ecdsa, self.key, &digest.0)
            .map_err(|e| SignError::Unavailable(format!("C_Sign: {e}")))?;
        ecdsa_raw_to_der(&raw).ok_or_else(|| {
            SignError::Unavailable("the token returned a signature that is not P-256".into())
        })
    }
}

impl RemoteKey for Pkcs11Key {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    fn sign_digests(
        &self,
        digests: &[Digest32],
        deadline: Duration,
    ) -> Result<Vec<Vec<u8>>, SignError> {
        let started = Instant::now();
        let workers = digests.len().clamp(1, SESSIONS);
        let chunk = digests.len().div_ceil(workers).max(1);
        let results: Vec<Result<Vec<Vec<u8>>, SignError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = digests
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        let session = self.take_session(started + deadline).ok_or_else(|| {
                            SignError::Unavailable(format!(
                                "no free PKCS#11 session within {deadline:?}"
                            ))
                        })?;
                        let signed = part
                            .iter()
                            .map(|d| {
                                if started.elapsed() > deadline {
                                    return Err(SignError::Unavailable(format!(
                                        "no answer within {deadline:?}"
                                    )));
                                }
                                self.sign_with(&session, d)
                            })
                            .collect();
                        self.give_back(session);
                        signed
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(SignError::Unavailable("a signing thread panicked".into()))
                    })
                })
                .collect()
        });
        let mut signatures = Vec::with_capacity(digests.len());
        for part in results {
            signatures.extend(part?);
        }
        Ok(signatures)
    }
}
