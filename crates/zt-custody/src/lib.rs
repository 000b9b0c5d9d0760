//! Custody of the audit signing key: where the key that signs records and checkpoints lives.
//!
//! - [`SignerSpec`]: the `--signer` setting: `local` (a key file in the data directory),
//!   `aws-kms:<key id or ARN>` ([`kms`]) or `pkcs11:module=..;token=..;key=..` ([`pkcs11`]).
//! - [`remote`]: a remote key as an audit signer, with verify-after-sign and its status.
//! - [`session`]: session keys certified by the custody key, for signing at local speed.
//! - [`der`]: the DER shapes remote keys hand over.
//! - [`bounded`]: calls that may block forever (a PKCS#11 module) made to answer in time.
//!
//! [`open_custody`] opens the key of a [`CustodyConfig`]; [`record_signer`] gives the signer of
//! records: that key itself, or session keys it certifies.

pub mod bounded;
pub mod der;
pub mod kms;
pub mod pkcs11;
pub mod remote;
pub mod session;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cryptoki::types::AuthPin;
use zeroize::Zeroizing;
use zt_ledger::{LocalKeySigner, SignError, Signer};

pub use pkcs11::Pkcs11Uri;
pub use remote::{Custodian, RemoteIdentity, RemoteKey};
pub use session::SessionSigner;

/// Why the custody key could not be opened. The server does not start.
#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    /// The `--signer` value is not understood.
    #[error("{0}")]
    Spec(String),
    /// The local key file.
    #[error(transparent)]
    Local(#[from] SignError),
    /// AWS KMS.
    #[error("aws kms: {0}")]
    Kms(String),
    /// The PKCS#11 module or token.
    #[error("pkcs11: {0}")]
    Pkcs11(String),
    /// The PIN could not be read.
    #[error("pkcs11 pin: {0}")]
    Pin(String),
}

/// Where the custody key is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SignerSpec {
    /// `DATA_DIR/keys/audit-signing-key.p8`.
    #[default]
    Local,
    /// An AWS KMS key id, alias or ARN.
    AwsKms(String),
    /// A key on a PKCS#11 token.
    Pkcs11(Pkcs11Uri),
}

impl std::str::FromStr for SignerSpec {
    type Err = CustodyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "local" {
            return Ok(Self::Local);
        }
        if let Some(key) = text.strip_prefix("aws-kms:") {
            if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(CustodyError::Spec(
                    "`aws-kms:` needs a key id, alias or ARN".into(),
                ));
            }
            return Ok(Self::AwsKms(key.to_string()));
        }
        if let Some(uri) = text.strip_prefix("pkcs11:") {
            return Ok(Self::Pkcs11(Pkcs11Uri::parse(uri)?));
        }
        Err(CustodyError::Spec(format!(
            "unknown signer `{text}`: use `local`, `aws-kms:<key id or ARN>` or `pkcs11:module=<path>;token=<label>;key=<label>`"
        )))
    }
}

/// How the audit key is held and used.
#[derive(Debug, Clone)]
pub struct CustodyConfig {
    /// Where the custody key is.
    pub spec: SignerSpec,
    /// `Some`: sign records with session keys certified by the custody key, each valid this
    /// long; `None`: the custody key signs every record.
    pub session_key_ttl: Option<Duration>,
    /// Longest wait for one call (a batch) to a remote key before it counts as failed.
    pub timeout: Duration,
    /// Most KMS `Sign` calls in flight at once.
    pub kms_concurrency: usize,
    /// The PKCS#11 user PIN file (else `ZT_PKCS11_PIN`).
    pub pin_file: Option<PathBuf>,
    /// The custody key being rotated away from (`--previous-signer`), opened at start only to
    /// endorse the new key in the rotation record. `None`: the local retiring key left by
    /// `zt keys rotate`, if there is one.
    pub previous: Option<SignerSpec>,
}

impl Default for CustodyConfig {
    fn default() -> Self {
        Self {
            spec: SignerSpec::Local,
            session_key_ttl: None,
            timeout: Duration::from_secs(2),
            kms_concurrency: 32,
            pin_file: None,
            previous: None,
        }
    }
}

/// Opens the custody key: it signs checkpoints, session certificates and, in per-record mode,
/// every record.
pub fn open_custody(
    config: &CustodyConfig,
    data_dir: &Path,
) -> Result<Arc<dyn Signer>, CustodyError> {
    let mode = if config.session_key_ttl.is_some() {
        "session-keys"
    } else {
        "per-record"
    };
    Ok(match &config.spec {
        SignerSpec::Local => Arc::new(LocalKeySigner::load_or_create(data_dir)?),
        SignerSpec::AwsKms(key) => Arc::new(Custodian::new(
            kms::KmsKey::open(key, config.timeout, config.kms_concurrency)?,
            config.timeout,
            mode,
        )?),
        SignerSpec::Pkcs11(uri) => {
            let pin = read_pin(config.pin_file.as_deref())?;
            Arc::new(Custodian::new(
                pkcs11::Pkcs11Key::open(uri, pin, config.timeout)?,
                config.timeout,
                mode,
            )?)
        }
    })
}

/// The outgoing custody key that may endorse a new one (see `zt_contract::key_rotation`).
pub struct Outgoing {
    /// The key.
    pub signer: Arc<dyn Signer>,
    /// Named by `--previous-signer`: it must be the key of the newest records. Otherwise the
    /// local retiring key, used only if it is.
    pub explicit: bool,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("key_id", &self.signer.key_id())
            .field("explicit", &self.explicit)
            .finish()
    }
}

/// Opens the outgoing custody key: the `previous` spec of `config` (`local`: the retiring key,
/// else the key file of `data_dir`), or the retiring local key left by `zt keys rotate`.
pub fn open_outgoing(
    config: &CustodyConfig,
    data_dir: &Path,
) -> Result<Option<Outgoing>, CustodyError> {
    let signer: Option<Arc<dyn Signer>> = match &config.previous {
        None => LocalKeySigner::load_retiring(data_dir)?.map(|k| Arc::new(k) as Arc<dyn Signer>),
        Some(SignerSpec::Local) => Some(Arc::new(
            LocalKeySigner::load_outgoing(data_dir)?.ok_or_else(|| {
                CustodyError::Spec(format!(
                    "--previous-signer local: `{}` holds no local audit key",
                    data_dir.display()
                ))
            })?,
        )),
        Some(spec) => {
            let previous = CustodyConfig {
                spec: spec.clone(),
                session_key_ttl: None,
                previous: None,
                ..config.clone()
            };
            Some(open_custody(&previous, data_dir)?)
        }
    };
    Ok(signer.map(|signer| Outgoing {
        signer,
        explicit: config.previous.is_some(),
    }))
}

/// The signer of records: `custody` itself, or in session-key mode a [`SessionSigner`]
/// whose first key `custody` certifies now for the log `origin`.
pub fn record_signer(
    config: &CustodyConfig,
    custody: Arc<dyn Signer>,
    origin: &str,
) -> Result<Arc<dyn Signer>, CustodyError> {
    Ok(match config.session_key_ttl {
        Some(ttl) => Arc::new(SessionSigner::start(custody, origin.to_string(), ttl)?),
        None => custody,
    })
}

/// The PKCS#11 PIN from `pin_file` (first line, 0600 or stricter) or `ZT_PKCS11_PIN`. Every
/// copy this makes is wiped when dropped, and the PIN it returns is shown as `[REDACTED]`
/// wherever it is debug-printed. (The environment variable itself stays in the process's
/// environment: prefer `--pin-file`.)
fn read_pin(pin_file: Option<&Path>) -> Result<AuthPin, CustodyError> {
    use std::os::unix::fs::PermissionsExt;
    let text: Zeroizing<String>;
    let pin = match pin_file {
        Some(path) => {
            let shown = path.display();
            let mode = std::fs::metadata(path)
                .map_err(|e| CustodyError::Pin(format!("`{shown}`: {e}")))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(CustodyError::Pin(format!(
                    "`{shown}` is readable by other users; run `chmod 600` on it"
                )));
            }
            text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| CustodyError::Pin(format!("`{shown}`: {e}")))?,
            );
            text.lines().next().unwrap_or_default()
        }
        None => {
            text = Zeroizing::new(std::env::var("ZT_PKCS11_PIN").map_err(|_| {
                CustodyError::Pin(
                    "give the token's user PIN with --pin-file or ZT_PKCS11_PIN".into(),
                )
            })?);
            text.as_str()
        }
    };
    if pin.is_empty() {
        return Err(CustodyError::Pin("the PIN is empty".into()));
    }
    // From `&str`: a copy of exactly its length, where converting the `String` could leave an
    // unwiped buffer behind when it shrinks.
    Ok(AuthPin::from(pin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_is_the_first_line_of_a_private_file_and_is_never_printed() {
        use secrecy::ExposeSecret;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        let restrict =
            |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::write(&path, "48213\nnot the pin\n").unwrap();
        restrict(0o640);
        let refused = read_pin(Some(&path)).unwrap_err().to_string();
        assert!(refused.contains("chmod 600"), "{refused}");

        restrict(0o600);
        let pin = read_pin(Some(&path)).unwrap();
        assert_eq!(pin.expose_secret(), "48213");
        let shown = format!("{pin:?}");
        assert!(
            !shown.contains("48213") && shown.contains("REDACTED"),
            "{shown}"
        );

        std::fs::write(&path, "\nnot the pin\n").unwrap();
        let empty = read_pin(Some(&path)).unwrap_err().to_string();
        assert!(empty.contains("empty"), "{empty}");
    }

    #[test]
    fn signer_specs_parse_strictly() {
        assert_eq!("local".parse::<SignerSpec>().unwrap(), SignerSpec::Local);
        assert_eq!(
            "aws-kms:arn:aws:kms:eu-west-1:1:key/k"
                .parse::<SignerSpec>()
                .unwrap(),
            SignerSpec::AwsKms("arn:aws:kms:eu-west-1:1:key/k".into())
        );
        let SignerSpec::Pkcs11(uri) = "pkcs11:module=/lib/p.so;token=t;key=k"
            .parse::<SignerSpec>()
            .unwrap()
        else {
            panic!("not pkcs11")
        };
        assert_eq!(uri.module, PathBuf::from("/lib/p.so"));
        for bad in [
            "kms:x",
            "aws-kms:",
            "pkcs11:module=/p.so;token=t",
            "pkcs11:module=/p.so;token=t;key=k;key=j",
            "pkcs11:module=/p.so;token=t;key=k;slot=1",
            "pkcs11:module=/p.so;token=;key=k",
        ] {
            assert!(bad.parse::<SignerSpec>().is_err(), "{bad}");
        }
    }
}
