//! The active policy: a snapshot the decision path reads without waiting, and
//! `DATA_DIR/policy.json` for restarts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use zt_policy::{ActionPolicy, PolicyError};

use crate::persist::write_atomically;

/// A policy with its version, immutable once published.
pub struct PolicySnapshot {
    /// The rules.
    pub policy: ActionPolicy,
    /// `sha256:<hex>` of the rules.
    pub version: String,
}

impl PolicySnapshot {
    fn new(policy: ActionPolicy) -> Arc<Self> {
        let version = policy.version();
        Arc::new(Self { policy, version })
    }
}

/// Why a policy could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    /// File I/O failed.
    #[error("policy file `{0}`: {1}")]
    Io(String, std::io::Error),
    /// The file is not a valid policy.
    #[error("policy file `{0}`: {1}")]
    Invalid(String, PolicyError),
}

/// Where the active policy lives.
pub struct PolicyStore {
    path: PathBuf,
    active: RwLock<Arc<PolicySnapshot>>,
}

fn read_policy(path: &Path) -> Result<Option<ActionPolicy>, PolicyStoreError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => ActionPolicy::from_json(&text)
            .map(Some)
            .map_err(|e| PolicyStoreError::Invalid(shown, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PolicyStoreError::Io(shown, e)),
    }
}

impl PolicyStore {
    /// Loads the active policy. `startup_file`, when given, replaces whatever was active (the
    /// operator asked for it); otherwise `DATA_DIR/policy.json`, else the shipped default.
    pub fn load(data_dir: &Path, startup_file: Option<&Path>) -> Result<Self, PolicyStoreError> {
        let path = data_dir.join("policy.json");
        let store = |policy| Self {
            path: path.clone(),
            active: RwLock::new(PolicySnapshot::new(policy)),
        };
        if let Some(file) = startup_file {
            let policy = read_policy(file)?.ok_or_else(|| {
                PolicyStoreError::Io(
                    file.display().to_string(),
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                )
            })?;
            let s = store(policy.clone());
            s.save(&policy)?;
            return Ok(s);
        }
        Ok(store(read_policy(&path)?.unwrap_or_default()))
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<PolicySnapshot> {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What the policy would be after `change`; nothing changes until [`Self::activate`].
    pub fn preview(&self, change: impl FnOnce(&mut ActionPolicy)) -> Arc<PolicySnapshot> {
        let mut next = self.current().policy.clone();
        change(&mut next);
        PolicySnapshot::new(next)
    }

    /// Saves `snapshot` and makes it the policy in force.
    pub fn activate(&self, snapshot: Arc<PolicySnapshot>) -> Result<(), PolicyStoreError> {
        let mut active = self.active.write().unwrap_or_else(PoisonError::into_inner);
        self.save(&snapshot.policy)?;
        *active = snapshot;
        Ok(())
    }

    fn save(&self, policy: &ActionPolicy) -> Result<(), PolicyStoreError> {
        write_atomically(&self.path, policy.to_json_pretty().as_bytes())
            .map_err(|e| PolicyStoreError::Io(self.path.display().to_string(), e))
    }
}
