//! The agent registry: which actors exist, their attributes, and the hash of each agent's
//! credential. Kept in memory for the decision path and in `DATA_DIR/agents.json` (mode 0600)
//! for restarts. Only SHA-256 hashes of tokens are stored; a token is shown once, when issued.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::persist::write_atomically;

/// Attributes an agent is registered with; policies may use them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentAttributes {
    /// What kind of agent (e.g. `assistant`, `ci`).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    /// The workspace or team it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// How far it is trusted (e.g. `low`, `high`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_level: Option<String>,
}

impl AgentAttributes {
    /// The attributes as a name-to-value map (absent ones left out).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        [
            ("type", &self.agent_type),
            ("workspace", &self.workspace),
            ("trust_level", &self.trust_level),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
        .collect()
    }
}

/// One registered agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    /// The actor name.
    pub actor: String,
    /// When it was registered (wire timestamp).
    pub registered_at: String,
    /// Attributes for policy.
    #[serde(default)]
    pub attributes: AgentAttributes,
    /// SHA-256 (hex) of the agent's current bearer token, if one was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

/// What `GET /agents` shows of an agent: never the token hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentView {
    /// The actor name.
    pub actor: String,
    /// When it was registered.
    pub registered_at: String,
    /// Attributes for policy.
    pub attributes: AgentAttributes,
    /// Whether a bearer token is issued.
    pub has_token: bool,
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

#[derive(Default, Clone)]
struct Agents {
    by_actor: BTreeMap<String, AgentEntry>,
    by_token: HashMap<String, String>,
}

impl Agents {
    fn from_entries(entries: Vec<AgentEntry>) -> Self {
        let mut agents = Self::default();
        for entry in entries {
            agents.put(entry);
        }
        agents
    }

    fn put(&mut self, entry: AgentEntry) {
        self.take(&entry.actor);
        if let Some(hash) = &entry.token_sha256 {
            self.by_token.insert(hash.clone(), entry.actor.clone());
        }
        self.by_actor.insert(entry.actor.clone(), entry);
    }

    fn take(&mut self, actor: &str) -> Option<AgentEntry> {
        let old = self.by_actor.remove(actor)?;
        if let Some(hash) = &old.token_sha256 {
            self.by_token.remove(hash);
        }
        Some(old)
    }
}

/// The registry.
pub struct Registry {
    path: PathBuf,
    agents: RwLock<Agents>,
}

impl Registry {
    /// Loads `DATA_DIR/agents.json`, or starts empty.
    pub fn load(data_dir: &Path) -> Result<Self, RegistryError> {
        let path = data_dir.join("agents.json");
        let shown = path.display().to_string();
        let entries = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| RegistryError::Parse(shown, e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(RegistryError::Io(shown, e)),
        };
        Ok(Self {
            path,
            agents: RwLock::new(Agents::from_entries(entries)),
        })
    }

    /// True if `actor` is registered.
    pub fn contains(&self, actor: &str) -> bool {
        self.read().by_actor.contains_key(actor)
    }

    /// The attributes of `actor`, if registered.
    pub fn attributes(&self, actor: &str) -> Option<AgentAttributes> {
        self.read()
            .by_actor
            .get(actor)
            .map(|a| a.attributes.clone())
    }

    /// The actor whose current token hashes to `token_sha256`.
    pub fn actor_for_token(&self, token_sha256: &str) -> Option<String> {
        self.read().by_token.get(token_sha256).cloned()
    }

    /// Every registered agent, by name, without secrets.
    pub fn list(&self) -> Vec<AgentView> {
        self.read()
            .by_actor
            .values()
            .map(|a| AgentView {
                actor: a.actor.clone(),
                registered_at: a.registered_at.clone(),
                attributes: a.attributes.clone(),
                has_token: a.token_sha256.is_some(),
            })
            .collect()
    }

    /// Registers an agent and saves; returns false (and changes nothing) if it already was.
    pub fn insert(&self, entry: AgentEntry) -> Result<bool, RegistryError> {
        let mut agents = self.write();
        if agents.by_actor.contains_key(&entry.actor) {
            return Ok(false);
        }
        let mut next = agents.clone();
        next.put(entry);
        self.save(&next)?;
        *agents = next;
        Ok(true)
    }

    /// Replaces `actor`'s token hash and saves; the old token stops working at once. Returns
    /// false if the actor is not registered.
    pub fn set_token(&self, actor: &str, token_sha256: String) -> Result<bool, RegistryError> {
        let mut agents = self.write();
        let Some(mut entry) = agents.by_actor.get(actor).cloned() else {
            return Ok(false);
        };
        entry.token_sha256 = Some(token_sha256);
        let mut next = agents.clone();
        next.put(entry);
        self.save(&next)?;
        *agents = next;
        Ok(true)
    }

    /// Removes `actor` (and its token) and saves; returns false if it was not registered.
    pub fn remove(&self, actor: &str) -> Result<bool, RegistryError> {
        let mut agents = self.write();
        if !agents.by_actor.contains_key(actor) {
            return Ok(false);
        }
        let mut next = agents.clone();
        next.take(actor);
        self.save(&next)?;
        *agents = next;
        Ok(true)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Agents> {
        self.agents.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Agents> {
        self.agents.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn save(&self, agents: &Agents) -> Result<(), RegistryError> {
        let list: Vec<&AgentEntry> = agents.by_actor.values().collect();
        let shown = || self.path.display().to_string();
        let bytes =
            serde_json::to_vec_pretty(&list).map_err(|e| RegistryError::Parse(shown(), e))?;
        write_atomically(&self.path, &bytes).map_err(|e| RegistryError::Io(shown(), e))
    }
}
