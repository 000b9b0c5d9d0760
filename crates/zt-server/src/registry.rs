//! The agent registry: which actors exist. Kept in memory for the decision path and in
//! `DATA_DIR/agents.json` for restarts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::persist::write_atomically;

/// One registered agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    /// The actor name.
    pub actor: String,
    /// When it was registered (wire timestamp).
    pub registered_at: String,
}

/// Why the registry could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// File I/O failed.
    #[error("agent registry `{0}`: {1}")]
    Io(String, std::io::Error),
    /// The file is not a registry.
    #[error("agent registry `{0}` is invalid: {1}")]
    Parse(String, serde_json::Error),
}

/// The registry.
pub struct Registry {
    path: PathBuf,
    agents: RwLock<BTreeMap<String, AgentEntry>>,
}

impl Registry {
    /// Loads `DATA_DIR/agents.json`, or starts empty.
    pub fn load(data_dir: &Path) -> Result<Self, RegistryError> {
        let path = data_dir.join("agents.json");
        let shown = path.display().to_string();
        let agents = match std::fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<AgentEntry> =
                    serde_json::from_slice(&bytes).map_err(|e| RegistryError::Parse(shown, e))?;
                list.into_iter().map(|a| (a.actor.clone(), a)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(RegistryError::Io(shown, e)),
        };
        Ok(Self {
            path,
            agents: RwLock::new(agents),
        })
    }

    /// True if `actor` is registered.
    pub fn contains(&self, actor: &str) -> bool {
        self.agents
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(actor)
    }

    /// Every registered agent, by name.
    pub fn list(&self) -> Vec<AgentEntry> {
        self.agents
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Registers `actor` and saves; returns false if it already was.
    pub fn insert(&self, actor: &str, registered_at: String) -> Result<bool, RegistryError> {
        let mut agents = self.agents.write().unwrap_or_else(PoisonError::into_inner);
        if agents.contains_key(actor) {
            return Ok(false);
        }
        let mut next = agents.clone();
        next.insert(
            actor.to_string(),
            AgentEntry {
                actor: actor.to_string(),
                registered_at,
            },
        );
        self.save(&next)?;
        *agents = next;
        Ok(true)
    }

    /// Removes `actor` and saves; returns false if it was not registered.
    pub fn remove(&self, actor: &str) -> Result<bool, RegistryError> {
        let mut agents = self.agents.write().unwrap_or_else(PoisonError::into_inner);
        if !agents.contains_key(actor) {
            return Ok(false);
        }
        let mut next = agents.clone();
        next.remove(actor);
        self.save(&next)?;
        *agents = next;
        Ok(true)
    }

    fn save(&self, agents: &BTreeMap<String, AgentEntry>) -> Result<(), RegistryError> {
        let list: Vec<&AgentEntry> = agents.values().collect();
        let bytes =
            serde_json::to_vec_pretty(&list).map_err(|e| RegistryError::Parse(self.shown(), e))?;
        write_atomically(&self.path, &bytes).map_err(|e| RegistryError::Io(self.shown(), e))
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }
}
