//! The PKCS#11 custody key: an EC P-256 private key on a token (an HSM, or SoftHSM2 for
//! tests), found by its token label and key label, used with `CKM_ECDSA` over the 32-byte
//! digest. The private key never leaves the token: this process holds only handles.
//!
//! A batch's digests are signed on a few sessions at once ([`SESSIONS`] threads), since one
//! PKCS#11 session runs one operation at a time. The user is logged in once; PKCS#11 login
//! state is shared by every session of the application on that token.
//!
//! A token that fails (an HSM restarted or unreachable, its key object gone, sessions closed
//! under us) leaves handles that will never work again. After a failed PKCS#11 call the next
//! call starts over: the sessions are closed, the module finalized and initialized again, the
//! token found, the user logged in and the key found by its label, and it is used only if its
//! public point is the one the server started with. Until that succeeds every call fails,
//! so decisions are refused, never signed by anything else.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zt_contract::Digest32;
use zt_ledger::SignError;

use crate::der::{ecdsa_raw_to_der, p256_point_from_ec_point};
use crate::remote::{RemoteIdentity, RemoteKey};
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

/// An open connection to the token: logged-in sessions and the key's handle.
struct Link {
    sessions: Mutex<Vec<Session>>,
    /// Signalled when a session is given back.
    returned: Condvar,
    key: ObjectHandle,
}

/// A key pair on a token, with a connection that is made again after the token fails.
pub struct Pkcs11Key {
    uri: Pkcs11Uri,
    /// Kept to log in again when the token comes back.
    pin: AuthPin,
    /// `None` while the token is unreachable. Calls hold the read lock; reconnecting takes
    /// the write lock, so no session is in use when the module is finalized.
    link: RwLock<Option<Link>>,
    /// Set by a failed PKCS#11 call: the next call reconnects first.
    stale: AtomicBool,
    identity: RemoteIdentity,
    /// Kept last so the sessions close before the library is unloaded.
    context: Pkcs11,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Sessions are logged in and the PIN is held: only the key is named.
        f.debug_struct("Pkcs11Key")
            .field("key_id", &self.identity.key_id)
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
        let pin = AuthPin::from(pin.to_string());
        let (link, point) = connect(&context, uri, &pin)?;
        let identity = RemoteIdentity::fingerprinted("pkcs11", "zt-pkcs11-", &point)
            .map_err(CustodyError::Pkcs11)?;
        Ok(Self {
            uri: uri.clone(),
            pin,
            link: RwLock::new(Some(link)),
            stale: AtomicBool::new(false),
            identity,
            context,
        })
    }

    /// Starts the connection over (see the module documentation); an error leaves it down.
    fn reconnect(&self) -> Result<(), SignError> {
        let mut link = self.link.write().unwrap_or_else(PoisonError::into_inner);
        if !self.stale.load(Ordering::SeqCst) {
            // Another call reconnected while this one waited.
            return Ok(());
        }
        // Closes the old sessions, then the module: its handles are dead anyway, and a module
        // is initialized again only after it was finalized. A module already gone may refuse
        // to finalize; initializing tells.
        *link = None;
        let _ = self.context.clone().finalize();
        let (fresh, point) = connect(&self.context, &self.uri, &self.pin)
            .map_err(|e| SignError::Unavailable(e.to_string()))?;
        if self.identity.jwk.uncompressed_point().ok().as_deref() != Some(point.as_slice()) {
            return Err(SignError::Unavailable(format!(
                "key `{}` on token `{}` is no longer the key `{}` this server started with",
                self.uri.key, self.uri.token, self.identity.key_id
            )));
        }
        *link = Some(fresh);
        self.stale.store(false, Ordering::SeqCst);
        tracing::info!(key_id = %self.identity.key_id, "PKCS#11 token reconnected");
        Ok(())
    }

    /// Signs `digests` on `link`'s sessions, at most [`SESSIONS`] at once.
    fn sign_on(
        &self,
        link: &Link,
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
                        let session = link.take_session(started + deadline).ok_or_else(|| {
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
                                self.sign_with(&session, link.key, d)
                            })
                            .collect();
                        link.give_back(session);
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

    /// One signature; a failed call marks the connection stale.
    fn sign_with(
        &self,
        session: &Session,
        key: ObjectHandle,
        digest: &Digest32,
    ) -> Result<Vec<u8>, SignError> {
        let raw = session
            .sign(&Mechanism::Ecdsa, key, &digest.0)
            .map_err(|e| {
                self.stale.store(true, Ordering::SeqCst);
                SignError::Unavailable(format!("C_Sign: {e}"))
            })?;
        ecdsa_raw_to_der(&raw).ok_or_else(|| {
            SignError::Unavailable("the token returned a signature that is not P-256".into())
        })
    }
}

/// Initializes the module, finds the token, opens [`SESSIONS`] sessions, logs in and finds the
/// key pair: the connection and the key's uncompressed public point.
fn connect(
    context: &Pkcs11,
    uri: &Pkcs11Uri,
    pin: &AuthPin,
) -> Result<(Link, Vec<u8>), CustodyError> {
    // Another key of this process (the outgoing key of a rotation) may have initialized the
    // module and logged in to the token already; both are per process.
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Err(cryptoki::error::Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) | Ok(()) => {}
        Err(e) => return Err(p11("initializing the module")(e)),
    }
    let slot = find_token(context, &uri.token)?;
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
    match first.login(UserType::User, Some(pin)) {
        Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) | Ok(()) => {}
        Err(e) => return Err(p11("logging in")(e)),
    }
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
        .ok_or_else(|| CustodyError::Pkcs11(format!("key `{}` is not a P-256 key", uri.key)))?
        .to_vec();
    Ok((
        Link {
            sessions: Mutex::new(sessions),
            returned: Condvar::new(),
            key,
        },
        point,
    ))
}

/// The slot of the one token labelled `label`.
fn find_token(context: &Pkcs11, label: &str) -> Result<Slot, CustodyError> {
    let mut slot = None;
    for candidate in context
        .get_slots_with_token()
        .map_err(p11("listing slots"))?
    {
        let info = context
            .get_token_info(candidate)
            .map_err(p11("reading a token"))?;
        if info.label().trim_end() == label {
            if slot.is_some() {
                return Err(CustodyError::Pkcs11(format!(
                    "two tokens are labelled `{label}`"
                )));
            }
            slot = Some(candidate);
        }
    }
    slot.ok_or_else(|| CustodyError::Pkcs11(format!("no token labelled `{label}`")))
}

impl Link {
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
}

impl RemoteKey for Pkcs11Key {
    fn identity(&self) -> &RemoteIdentity {
        &self.identity
    }

    fn sign_digests(
        &self,
        digests: &[Digest32],
        deadline: Duration,
    ) -> Result<Vec<Vec<u8>>, SignError> {
        if self.stale.load(Ordering::SeqCst) {
            self.reconnect()?;
        }
        let link = self.link.read().unwrap_or_else(PoisonError::into_inner);
        let Some(link) = link.as_ref() else {
            return Err(SignError::Unavailable(
                "the PKCS#11 token is not connected".into(),
            ));
        };
        self.sign_on(link, digests, deadline)
    }
}
