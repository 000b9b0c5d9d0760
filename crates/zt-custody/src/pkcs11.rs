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
//! so decisions are refused, never signed by anything else. A signature that fails
//! verify-after-sign also starts the connection over, so a key replaced under its label is
//! checked again.
//!
//! Reconnections are tried at most once per [`RECONNECT_INTERVAL`]; calls in between fail at
//! once with the last error. A token that refuses the PIN (incorrect, locked, expired) is
//! never logged into again: HSMs lock the user PIN after a few wrong tries, so the signer
//! stays failed until the server is restarted with the right PIN.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
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

use crate::bounded::Bounded;
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
///
/// Every call into the module that can block (signing, and reconnecting: finalize, initialize,
/// open sessions, log in, find the key) runs on a thread of [`Bounded`] and is waited for only
/// until the call's deadline: a module that stops answering makes the call fail in time, never
/// hangs the committer.
pub struct Pkcs11Key {
    uri: Pkcs11Uri,
    /// Kept to log in again when the token comes back.
    pin: Arc<AuthPin>,
    /// `None` while the token is unreachable. Calls hold the read lock; reconnecting takes
    /// the write lock, so no session is handed out while the module is started over.
    link: RwLock<Option<Link>>,
    /// Set by a failed or timed-out PKCS#11 call: the next call reconnects first.
    stale: AtomicBool,
    /// Set while a reconnection runs (also one abandoned at its deadline): at most one at a
    /// time, so two never start the module over under each other.
    reconnecting: Arc<AtomicBool>,
    /// When the last reconnection started and how it failed; cleared when one succeeds.
    last_attempt: Mutex<Attempts>,
    /// Set once the token refused the PIN: no reconnection (no login) is tried again.
    pin_refused: Arc<AtomicBool>,
    /// The threads calls into the module run on.
    calls: Bounded,
    identity: RemoteIdentity,
    /// Kept last so the sessions close before the library is unloaded.
    context: Pkcs11,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Sessions are logged in and the PIN is held: only the key is named.
        f.debug_struct("Pkcs11Key")
            .field("key_id", &self.identity.jwk.kid)
            .finish_non_exhaustive()
    }
}

fn p11(what: &str) -> impl Fn(cryptoki::error::Error) -> CustodyError + '_ {
    move |e| CustodyError::Pkcs11(format!("{what}: {e}"))
}

/// The longest a start waits for the token, whatever `--signer-timeout-ms` says: opening
/// initializes the module and logs in, which a network HSM may take a while to do.
const OPEN_AT_LEAST: Duration = Duration::from_secs(10);

/// The least time between two reconnections: a token that is down is asked again this often,
/// not by every batch.
pub const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

/// The last reconnection, if it failed: the next is tried [`RECONNECT_INTERVAL`] after it
/// started, calls before that fail with its error.
#[derive(Debug, Default)]
struct Attempts {
    failed: Option<(Instant, String)>,
}

impl Attempts {
    /// The error to fail with if `now` is too soon for another reconnection.
    fn too_soon(&self, now: Instant) -> Option<String> {
        let (at, error) = self.failed.as_ref()?;
        (now.saturating_duration_since(*at) < RECONNECT_INTERVAL).then(|| {
            format!(
                "{error} (reconnections are tried once per {} ms)",
                RECONNECT_INTERVAL.as_millis()
            )
        })
    }

    /// The outcome of the reconnection that started at `started`.
    fn record(&mut self, started: Instant, outcome: &Result<(), SignError>) {
        self.failed = match outcome {
            Ok(()) => None,
            Err(SignError::Unavailable(e)) => Some((started, e.clone())),
            Err(e) => Some((started, e.to_string())),
        };
    }
}

/// Whether `error` (from `C_Login`) means the token refused the PIN itself, so that logging
/// in again with it can only count towards locking the user PIN.
fn refuses_the_pin(error: &cryptoki::error::Error) -> bool {
    matches!(
        error,
        cryptoki::error::Error::Pkcs11(
            RvError::PinIncorrect
                | RvError::PinLocked
                | RvError::PinExpired
                | RvError::PinInvalid
                | RvError::PinLenRange,
            _
        )
    )
}

/// What `/health` says once the PIN was refused.
fn pin_refused_error(uri: &Pkcs11Uri) -> String {
    format!(
        "token `{}` refused the PIN: the server will not log in with it again (HSMs lock the \
         PIN after a few wrong tries); restart the server with the right PIN",
        uri.token
    )
}

/// Clears the reconnecting flag when the reconnection's thread ends, however late.
struct Reconnecting(Arc<AtomicBool>);

impl Drop for Reconnecting {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Pkcs11Key {
    /// Loads the module, finds the token, logs in with `pin` and finds the key pair, waiting
    /// at most `timeout` (and at least [`OPEN_AT_LEAST`]) for the token.
    pub fn open(uri: &Pkcs11Uri, pin: AuthPin, timeout: Duration) -> Result<Self, CustodyError> {
        let context = Pkcs11::new(Path::new(&uri.module)).map_err(p11("loading the module"))?;
        let pin = Arc::new(pin);
        let calls = Bounded::new("zt-pkcs11", OUTSTANDING);
        let (link, point) = {
            let (context, uri, pin) = (context.clone(), uri.clone(), Arc::clone(&pin));
            calls
                .run(Instant::now() + timeout.max(OPEN_AT_LEAST), move || {
                    connect(&context, &uri, &pin, &AtomicBool::new(false))
                })
                .map_err(|e| CustodyError::Pkcs11(format!("opening the token: {e}")))??
        };
        let identity = RemoteIdentity::fingerprinted("pkcs11", "zt-pkcs11-", &point)
            .map_err(CustodyError::Pkcs11)?;
        Ok(Self {
            uri: uri.clone(),
            pin,
            link: RwLock::new(Some(link)),
            stale: AtomicBool::new(false),
            reconnecting: Arc::new(AtomicBool::new(false)),
            last_attempt: Mutex::new(Attempts::default()),
            pin_refused: Arc::new(AtomicBool::new(false)),
            calls,
            identity,
            context,
        })
    }

    /// Starts the connection over (see the module documentation) by `until`, unless the PIN
    /// was refused or the last attempt is less than [`RECONNECT_INTERVAL`] old (then its error
    /// is returned at once); an error leaves it down.
    fn reconnect(&self, until: Instant) -> Result<(), SignError> {
        let link = self.link.write().unwrap_or_else(PoisonError::into_inner);
        if !self.stale.load(Ordering::SeqCst) {
            // Another call reconnected while this one waited.
            return Ok(());
        }
        if self.pin_refused.load(Ordering::SeqCst) {
            return Err(SignError::Unavailable(pin_refused_error(&self.uri)));
        }
        let mut last = self
            .last_attempt
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        if let Some(error) = last.too_soon(started) {
            return Err(SignError::Unavailable(error));
        }
        let outcome = self.start_over(link, until);
        last.record(started, &outcome);
        outcome
    }

    /// One reconnection, holding the connection's write lock.
    fn start_over(
        &self,
        mut link: std::sync::RwLockWriteGuard<'_, Option<Link>>,
        until: Instant,
    ) -> Result<(), SignError> {
        if self.reconnecting.swap(true, Ordering::SeqCst) {
            return Err(SignError::Unavailable(
                "an earlier reconnection to the PKCS#11 token has not returned".into(),
            ));
        }
        let flag = Reconnecting(Arc::clone(&self.reconnecting));
        // Room for the call first, so that a refusal leaves the old sessions where they are
        // rather than closing them on this thread (closing may block on a module that hangs).
        let mut slot = self.calls.reserve(1).map_err(|e| {
            SignError::Unavailable(format!("reconnecting to the PKCS#11 token: {e}"))
        })?;
        let old = link.take();
        let (context, uri, pin, refused) = (
            self.context.clone(),
            self.uri.clone(),
            Arc::clone(&self.pin),
            Arc::clone(&self.pin_refused),
        );
        let calls = self.calls.clone();
        let outcome = slot.start(move || {
            let _flag = flag;
            // Closes the old sessions, then the module: its handles are dead anyway, and a
            // module is initialized again only after it was finalized. A module already gone
            // may refuse to finalize; initializing tells. Not while an abandoned call is still
            // inside the module (this call is the one outstanding otherwise): finalizing under
            // a running call is undefined, and a session handle it closes when it returns
            // could by then name a new session. Fresh sessions on the initialized module do.
            drop(old);
            if calls.outstanding() <= 1 {
                let _ = context.clone().finalize();
            }
            connect(&context, &uri, &pin, &refused)
        });
        let (fresh, point) = outcome
            .and_then(|call| call.wait(until))
            .map_err(|e| SignError::Unavailable(format!("reconnecting to the PKCS#11 token: {e}")))?
            .map_err(|e| {
                if self.pin_refused.load(Ordering::SeqCst) {
                    tracing::error!(key_id = %self.identity.jwk.kid, error = %e, "the PKCS#11 token refused the PIN; not logging in again until restarted");
                    SignError::Unavailable(format!("{}: {e}", pin_refused_error(&self.uri)))
                } else {
                    SignError::Unavailable(e.to_string())
                }
            })?;
        if self.identity.jwk.uncompressed_point().ok().as_deref() != Some(point.as_slice()) {
            return Err(SignError::Unavailable(format!(
                "key `{}` on token `{}` is no longer the key `{}` this server started with",
                self.uri.key, self.uri.token, self.identity.jwk.kid
            )));
        }
        *link = Some(fresh);
        self.stale.store(false, Ordering::SeqCst);
        tracing::info!(key_id = %self.identity.jwk.kid, "PKCS#11 token reconnected");
        Ok(())
    }

    /// Signs `digests` on `link`'s free sessions (at least one, at most [`SESSIONS`]), each
    /// session's share on a thread of [`Bounded`], all by `until`.
    fn sign_on(
        &self,
        link: &Link,
        digests: &[Digest32],
        until: Instant,
    ) -> Result<Vec<Vec<u8>>, SignError> {
        let wanted = digests.len().clamp(1, SESSIONS);
        // Room for every share's call before any session is taken: when calls are refused,
        // no session is left to close on this thread.
        let mut slots = self
            .calls
            .reserve(wanted)
            .map_err(|e| SignError::Unavailable(format!("PKCS#11 call: {e}")))?;
        let mut sessions = vec![link.take_session(until).ok_or_else(|| {
            SignError::Unavailable("no free PKCS#11 session before the deadline".into())
        })?];
        while sessions.len() < wanted {
            match link.try_take_session() {
                Some(session) => sessions.push(session),
                None => break,
            }
        }
        let chunk = digests.len().div_ceil(sessions.len()).max(1);
        let mut pending = Vec::with_capacity(sessions.len());
        let mut parts = digests.chunks(chunk);
        let mut sessions = sessions.into_iter();
        while let Some(session) = sessions.next() {
            let Some(part) = parts.next() else {
                link.give_back(session);
                continue;
            };
            let (part, key) = (part.to_vec(), link.key);
            let started = slots.start(move || {
                let signed = sign_part(&session, key, &part, until);
                (session, signed)
            });
            match started {
                Ok(call) => pending.push(call),
                // No thread (the system is out of them): the session went with the closure.
                // The calls already started are abandoned; the connection is started over.
                Err(e) => {
                    sessions.for_each(|rest| link.give_back(rest));
                    self.stale.store(true, Ordering::SeqCst);
                    return Err(SignError::Unavailable(format!("PKCS#11 call: {e}")));
                }
            }
        }
        let mut signatures = Vec::with_capacity(digests.len());
        let mut failure = None;
        // Every share is waited for (by the same deadline) so that each session that answered
        // goes back to the pool; a share that did not answer keeps its session on its thread,
        // and the session is closed there when the call returns, never used again.
        for call in pending {
            match call.wait(until) {
                Ok((session, signed)) => {
                    link.give_back(session);
                    match signed {
                        Ok(part) if failure.is_none() => signatures.extend(part),
                        Ok(_) => {}
                        Err(e) => {
                            self.stale.store(true, Ordering::SeqCst);
                            failure.get_or_insert(e);
                        }
                    }
                }
                Err(e) => {
                    self.stale.store(true, Ordering::SeqCst);
                    failure.get_or_insert(SignError::Unavailable(format!("PKCS#11 C_Sign: {e}")));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(signatures),
        }
    }
}

/// Calls a blocking token may hold at once (signing shares and a reconnection, running or
/// abandoned): past this, calls are refused at once until some return.
pub const OUTSTANDING: usize = 2 * SESSIONS + 1;

/// Signs `part` in order on `session`, stopping at `until`; runs on a [`Bounded`] thread.
fn sign_part(
    session: &Session,
    key: ObjectHandle,
    part: &[Digest32],
    until: Instant,
) -> Result<Vec<Vec<u8>>, SignError> {
    part.iter()
        .map(|digest| {
            if Instant::now() > until {
                return Err(SignError::Unavailable(
                    "PKCS#11: no answer before the deadline".into(),
                ));
            }
            let raw = session
                .sign(&Mechanism::Ecdsa, key, &digest.0)
                .map_err(|e| SignError::Unavailable(format!("C_Sign: {e}")))?;
            ecdsa_raw_to_der(&raw).ok_or_else(|| {
                SignError::Unavailable("the token returned a signature that is not P-256".into())
            })
        })
        .collect()
}

/// Initializes the module, finds the token, opens [`SESSIONS`] sessions, logs in and finds the
/// key pair: the connection and the key's uncompressed public point. Sets `pin_refused` when
/// the token refuses the PIN.
fn connect(
    context: &Pkcs11,
    uri: &Pkcs11Uri,
    pin: &AuthPin,
    pin_refused: &AtomicBool,
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
        Err(e) => {
            if refuses_the_pin(&e) {
                pin_refused.store(true, Ordering::SeqCst);
            }
            return Err(p11("logging in")(e));
        }
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

    /// A free session, if there is one now.
    fn try_take_session(&self) -> Option<Session> {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
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

    fn distrust(&self) {
        // The key that signed may not be the one found at the start (replaced under its
        // label): the next call reconnects, which finds the key again and checks it.
        self.stale.store(true, Ordering::SeqCst);
    }

    fn sign_digests(
        &self,
        digests: &[Digest32],
        deadline: Duration,
    ) -> Result<Vec<Vec<u8>>, SignError> {
        let until = Instant::now() + deadline;
        if self.stale.load(Ordering::SeqCst) {
            self.reconnect(until)?;
        }
        let link = self.link.read().unwrap_or_else(PoisonError::into_inner);
        let Some(link) = link.as_ref() else {
            return Err(SignError::Unavailable(
                "the PKCS#11 token is not connected".into(),
            ));
        };
        self.sign_on(link, digests, until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reconnection_is_tried_again_only_after_the_interval() {
        let mut attempts = Attempts::default();
        let start = Instant::now();
        assert_eq!(attempts.too_soon(start), None, "the first is tried at once");
        attempts.record(start, &Err(SignError::Unavailable("no token".into())));
        for early in [
            Duration::ZERO,
            RECONNECT_INTERVAL / 2,
            RECONNECT_INTERVAL - Duration::from_millis(1),
        ] {
            let error = attempts.too_soon(start + early).unwrap();
            assert!(error.starts_with("no token"), "{error}");
        }
        assert_eq!(attempts.too_soon(start + RECONNECT_INTERVAL), None);
        let later = start + RECONNECT_INTERVAL;
        attempts.record(later, &Ok(()));
        assert_eq!(attempts.too_soon(later), None, "after a success, at once");
    }

    #[test]
    fn only_a_refused_pin_stops_logging_in() {
        for refused in [
            RvError::PinIncorrect,
            RvError::PinLocked,
            RvError::PinExpired,
            RvError::PinInvalid,
            RvError::PinLenRange,
        ] {
            let error = cryptoki::error::Error::Pkcs11(refused, cryptoki::context::Function::Login);
            assert!(refuses_the_pin(&error), "{error}");
        }
        for other in [
            RvError::DeviceError,
            RvError::DeviceRemoved,
            RvError::TokenNotPresent,
            RvError::SessionHandleInvalid,
            RvError::UserAlreadyLoggedIn,
            RvError::GeneralError,
        ] {
            let error = cryptoki::error::Error::Pkcs11(other, cryptoki::context::Function::Login);
            assert!(!refuses_the_pin(&error), "{error}");
        }
    }
}
