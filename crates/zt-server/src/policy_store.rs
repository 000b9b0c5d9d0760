//! The active policy: an engine the decision path reads without waiting, and
//! `DATA_DIR/policy.cedar` for restarts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use zt_policy::{ActionPolicy, PolicyEngine, PolicyError};

use crate::persist::write_atomically;

/// Why a policy could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    /// File I/O failed.
    #[error("policy file `{0}`: {1}")]
    Io(String, std::io::Error),
    /// The policy is not valid.
    #[error(transparent)]
    Invalid(#[from] PolicyError),
}

/// Where the active policy lives.
pub struct PolicyStore {
    path: PathBuf,
    source_file: Option<PathBuf>,
    active: RwLock<Arc<PolicyEngine>>,
}

impl PolicyStore {
    /// Loads the active policy. `startup_file` (`.cedar` or reference `.json`), when given,
    /// replaces whatever was active (the operator asked for it); otherwise
    /// `DATA_DIR/policy.cedar`, else a reference-format `DATA_DIR/policy.json` left by an
    /// earlier version, else the shipped default.
    pub fn load(data_dir: &Path, startup_file: Option<&Path>) -> Result<Self, PolicyStoreError> {
        let path = data_dir.join("policy.cedar");
        let legacy = data_dir.join("policy.json");
        let engine = match startup_file {
            Some(file) => PolicyEngine::from_file(file)?,
            None if path.exists() => PolicyEngine::from_file(&path)?,
            None if legacy.exists() => {
                let text = std::fs::read_to_string(&legacy)
                    .map_err(|e| PolicyStoreError::Io(legacy.display().to_string(), e))?;
                PolicyEngine::from_action_policy(&ActionPolicy::from_json(&text)?)?
            }
            None => PolicyEngine::default_policy(),
        };
        let store = Self {
            path,
            source_file: startup_file.map(Path::to_path_buf),
            active: RwLock::new(Arc::new(engine)),
        };
        store.save(&store.current())?;
        Ok(store)
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<PolicyEngine> {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The file given with `--policy`, reloaded on SIGHUP or change.
    pub fn source_file(&self) -> Option<&Path> {
        self.source_file.as_deref()
    }

    /// Saves `engine` and makes it the policy in force.
    pub fn activate(&self, engine: Arc<PolicyEngine>) -> Result<(), PolicyStoreError> {
        let mut active = self.active.write().unwrap_or_else(PoisonError::into_inner);
        self.save(&engine)?;
        *active = engine;
        Ok(())
    }

    fn save(&self, engine: &PolicyEngine) -> Result<(), PolicyStoreError> {
        write_atomically(&self.path, engine.source().as_bytes())
            .map_err(|e| PolicyStoreError::Io(self.path.display().to_string(), e))
    }
}
