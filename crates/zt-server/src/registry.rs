//! The agent registry: which actors exist, their attributes, and the hash of each agent's
//! credential. Kept in memory for the decision path and in the `agents` state document
//! (`DATA_DIR/agents.json`, mode 0600, or the shared PostgreSQL store) for restarts and for
//! the other replicas. Only SHA-256 hashes of tokens are stored; a token is shown once, when
//! issued.
//!
//! A change is applied to the registry as loaded and saved only if nobody changed the
//! document meanwhile; otherwise the registry is reloaded and the change applied again, so
//! concurrent changes on several replicas all survive.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zt_contract::names::ActorName;

use crate::state_docs::{
    after_conflict, off_thread, Doc, DocError, DocName, Documents, SaveTurn, SAVE_TRIES,
};

/// Attributes an agent is registered with; policies may use them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentAttributes {
    /// What kind of agent (e.g. `assistant`, `ci`).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    /// The workspace or team it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// How far it is trusted (e.g. `low`, `high`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_level: Option<String>,
    /// The groups it is a member of: policies see `principal in Group::"<name>"`. Set with
    /// `PUT /agents/{actor}/groups`, never at registration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl AgentAttributes {
    /// The attributes as a name-to-value map (absent ones left out).
    pub(crate) fn to_map(&self) -> BTreeMap<String, String> {
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
pub(crate) struct AgentEntry {
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
    /// Registered, or given a token, while authentication was off (`--auth none`): an
    /// unauthenticated caller chose it. Cleared only by accepting such state at start-up
    /// (see [`crate::unauthenticated_state`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unauthenticated: bool,
}

/// What `GET /agents` shows of an agent: never the token hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AgentView {
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
    /// The document could not be read or written.
    #[error("agent registry: {0}")]
    Documents(#[from] DocError),
    /// The document is not a registry.
    #[error("agent registry `{0}` is invalid: {1}")]
    Parse(String, serde_json::Error),
    /// Other writers kept changing the registry while this change was being saved.
    #[error("agent registry: still changed by other servers after {SAVE_TRIES} tries")]
    Contended,
}

#[derive(Default, Clone)]
struct Agents {
    by_actor: BTreeMap<String, AgentEntry>,
    by_token: HashMap<String, String>,
    /// The document version these agents were read from or saved as.
    version: Option<u64>,
}

impl Agents {
    fn parse(doc: Option<Doc>, shown: impl Fn() -> String) -> Result<Self, RegistryError> {
        let Some(doc) = doc else {
            return Ok(Self::default());
        };
        let entries: Vec<AgentEntry> =
            serde_json::from_str(&doc.body).map_err(|e| RegistryError::Parse(shown(), e))?;
        let mut agents = Self {
            version: Some(doc.version),
            ..Self::default()
        };
        for entry in entries {
            if let Err(e) = ActorName::parse(&entry.actor) {
                tracing::warn!(
                    actor = %entry.actor.escape_debug(),
                    error = %e,
                    "registered agent has a name outside the actor grammar: its token is \
                     refused until it is removed (DELETE /agents/{{actor}}) and registered \
                     under a valid name"
                );
            }
            agents.put(entry);
        }
        Ok(agents)
    }

    /// Adds `entry`. The token of an actor whose name is outside the actor grammar (registered
    /// before the grammar existed) is not indexed: it authenticates nobody, while the entry
    /// stays listed and removable.
    fn put(&mut self, entry: AgentEntry) {
        self.take(&entry.actor);
        let valid = ActorName::parse(&entry.actor).is_ok();
        if let Some(hash) = entry.token_sha256.as_ref().filter(|_| valid) {
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

/// At most one reload per this long when a bearer token is not found (a cache miss), so that
/// unknown tokens cannot make a server hammer the shared store.
const MISS_RELOAD_EVERY: Duration = Duration::from_millis(100);

/// The registry.
pub(crate) struct Registry {
    docs: Arc<Documents>,
    agents: RwLock<Arc<Agents>>,
    /// Revocations recorded in the audit log that the registry does not show yet. Read on
    /// every authentication and decision, written only by a revocation or a reload. Its read
    /// side is also held while a request's record is queued on the word of [`Self::confirm`],
    /// and a revocation takes the write side before its own record is queued: so every record
    /// queued with a credential comes before the record revoking it, or is refused.
    /// Lock order: this lock, then `agents`.
    revoked: RwLock<Revoked>,
    /// Counts every change of `revoked` and `agents` (made under `revoked`'s write side): a
    /// request that finds it unchanged since its credential was checked needs no lookup to
    /// know the credential still stands.
    generation: AtomicU64,
    last_miss_reload: Mutex<Option<Instant>>,
    saving: SaveTurn,
}

/// Tokens and agents being revoked (a rotation, a removal): refused here from the moment the
/// revocation starts, before it is saved and recorded, so no decision uses what the log is
/// about to call revoked; given back ([`Registry::unrevoke`]) if the revocation's save or
/// record fails. Each is forgotten once the registry no longer holds it.
#[derive(Default)]
struct Revoked {
    tokens: HashSet<String>,
    actors: HashSet<String>,
}

/// The agent a token belongs to, read in one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenHolder {
    /// The actor name.
    pub actor: String,
    /// An unauthenticated caller registered it or gave it its token (see
    /// [`AgentEntry::unauthenticated`]).
    pub unauthenticated: bool,
    /// The registry's [`Registry::generation`] when the token was found.
    pub generation: u64,
}

/// A credential revoked (its token rotated, its agent removed) since it was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RevokedSince;

/// What [`Registry::confirm`] found, with the read side of the revocation lock: hold it while
/// the record is queued (never across an await).
pub(crate) struct Confirmed<'r> {
    _revoked: RwLockReadGuard<'r, Revoked>,
    /// The actor is not registered now, though the registry changed since the generation
    /// confirmed against (always false when it did not): a decision made on its registration
    /// must not be recorded as made.
    pub(crate) removed: bool,
}

/// One revocation in force before its save (see [`Registry::revoke_token_now`]); given back
/// with [`Registry::unrevoke`] if its record is refused.
#[derive(Debug)]
pub(crate) struct Revocation {
    token: Option<String>,
    actor: Option<String>,
}

impl Revocation {
    /// The hash of the token it revokes, if the agent had one.
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// Loads the `agents` document (seeding a shared store from `DATA_DIR/agents.json` if it
    /// has none yet), or starts empty.
    pub(crate) fn load(docs: Arc<Documents>, data_dir: &Path) -> Result<Self, RegistryError> {
        let doc = docs.load_or_seed(DocName::Agents, data_dir)?;
        let agents = Agents::parse(doc, || docs.describe(DocName::Agents))?;
        Ok(Self {
            docs,
            agents: RwLock::new(Arc::new(agents)),
            revoked: RwLock::new(Revoked::default()),
            generation: AtomicU64::new(0),
            last_miss_reload: Mutex::new(None),
            saving: SaveTurn::default(),
        })
    }

    /// True if `actor` is registered.
    pub(crate) fn contains(&self, actor: &str) -> bool {
        self.read().by_actor.contains_key(actor)
    }

    /// `actor`'s entry, if registered (kept by a removal, to put back if it is not recorded).
    pub(crate) fn entry(&self, actor: &str) -> Option<AgentEntry> {
        self.read().by_actor.get(actor).cloned()
    }

    /// The attributes of `actor`, if registered (and its removal not already recorded).
    pub(crate) fn attributes(&self, actor: &str) -> Option<AgentAttributes> {
        if self.revoked().actors.contains(actor) {
            return None;
        }
        self.read()
            .by_actor
            .get(actor)
            .map(|a| a.attributes.clone())
    }

    /// The agent whose current token hashes to `token_sha256` (unless its revocation, or its
    /// agent's removal, is already recorded).
    pub(crate) fn agent_for_token(&self, token_sha256: &str) -> Option<TokenHolder> {
        // The registry, the revocations and the generation read as one state.
        let revoked = self.revoked();
        let agents = self.read();
        let actor = agents.by_token.get(token_sha256)?;
        if revoked.tokens.contains(token_sha256) || revoked.actors.contains(actor) {
            return None;
        }
        Some(TokenHolder {
            actor: actor.clone(),
            unauthenticated: agents
                .by_actor
                .get(actor)
                .is_some_and(|a| a.unauthenticated),
            generation: self.generation.load(Ordering::Acquire),
        })
    }

    /// Counts changes of the registry and its revocations (see [`Self::confirm`]). Read it
    /// before what it is to vouch for.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Confirms, just before a request's record is queued, what the request was decided on
    /// when the registry was at `generation`: that the agent token `token_sha256` (if it
    /// presented one) still names `actor`, and whether `actor` was removed since. Refused if
    /// the token was revoked since. The answer holds the read side of the revocation lock:
    /// queue the record before dropping it, so that it precedes the record of any revocation
    /// not yet made (a revocation takes the write side before its record is queued).
    pub(crate) fn confirm(
        &self,
        generation: u64,
        actor: &str,
        token_sha256: Option<&str>,
    ) -> Result<Confirmed<'_>, RevokedSince> {
        let revoked = self.revoked();
        // Unchanged since: what was checked then holds (no lookup on the hot path).
        if self.generation.load(Ordering::Acquire) == generation {
            return Ok(Confirmed {
                _revoked: revoked,
                removed: false,
            });
        }
        let agents = self.read();
        let removed = revoked.actors.contains(actor) || !agents.by_actor.contains_key(actor);
        if let Some(token) = token_sha256 {
            let holds = !removed
                && !revoked.tokens.contains(token)
                && agents.by_token.get(token).is_some_and(|a| a == actor);
            if !holds {
                return Err(RevokedSince);
            }
        }
        Ok(Confirmed {
            _revoked: revoked,
            removed,
        })
    }

    /// Revokes `actor`'s current token here at once (a rotation about to be recorded).
    pub(crate) fn revoke_token_now(&self, actor: &str) -> Revocation {
        self.revoke_now(actor, false)
    }

    /// Revokes `actor` and its token here at once (a removal about to be recorded).
    pub(crate) fn revoke_agent_now(&self, actor: &str) -> Revocation {
        self.revoke_now(actor, true)
    }

    /// Marks the revocation under the write side of the revocation lock, which waits for every
    /// record being queued under [`Self::confirm`]: the caller queues the revocation's record
    /// after this returns, so after them, and every later one is refused.
    fn revoke_now(&self, actor: &str, agent: bool) -> Revocation {
        let mut revoked = self.revoked_mut();
        let token = self
            .read()
            .by_actor
            .get(actor)
            .and_then(|a| a.token_sha256.clone());
        if let Some(token) = &token {
            revoked.tokens.insert(token.clone());
        }
        let actor = agent.then(|| actor.to_string());
        if let Some(actor) = &actor {
            revoked.actors.insert(actor.clone());
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        Revocation { token, actor }
    }

    /// Gives back a revocation whose record was refused (nothing was revoked).
    pub(crate) fn unrevoke(&self, revocation: Revocation) {
        let mut revoked = self.revoked_mut();
        if let Some(token) = revocation.token {
            revoked.tokens.remove(&token);
        }
        if let Some(actor) = revocation.actor {
            revoked.actors.remove(&actor);
        }
    }

    fn revoked(&self) -> RwLockReadGuard<'_, Revoked> {
        self.revoked.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn revoked_mut(&self) -> RwLockWriteGuard<'_, Revoked> {
        self.revoked.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// As [`Self::agent_for_token`]; on a miss with a shared store, first reloads the registry
    /// (at most once per 100 ms), so an agent just registered on another replica is known.
    pub(crate) async fn agent_for_token_fresh(&self, token_sha256: &str) -> Option<TokenHolder> {
        if let Some(holder) = self.agent_for_token(token_sha256) {
            return Some(holder);
        }
        if !self.docs.is_shared() || !self.miss_reload_due() {
            return None;
        }
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "agent registry reload after an unknown token failed");
        }
        self.agent_for_token(token_sha256)
    }

    /// Every registered agent, by name, without secrets.
    pub(crate) fn list(&self) -> Vec<AgentView> {
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
    pub(crate) async fn insert(&self, entry: AgentEntry) -> Result<bool, RegistryError> {
        self.change(move |agents| {
            if agents.by_actor.contains_key(&entry.actor) {
                return None;
            }
            let mut next = agents.clone();
            next.put(entry.clone());
            Some(next)
        })
        .await
    }

    /// Replaces `actor`'s token hash (`None`: no token) and saves; the old token stops working
    /// at once on this server (on the others within the followers' poll interval).
    /// `unauthenticated`: the caller was not authenticated, which marks the agent. Returns
    /// false if the actor is not registered.
    pub(crate) async fn set_token(
        &self,
        actor: &str,
        token_sha256: Option<String>,
        unauthenticated: bool,
    ) -> Result<bool, RegistryError> {
        self.change(move |agents| {
            let mut entry = agents.by_actor.get(actor).cloned()?;
            entry.token_sha256 = token_sha256.clone();
            entry.unauthenticated |= unauthenticated;
            let mut next = agents.clone();
            next.put(entry);
            Some(next)
        })
        .await
    }

    /// Replaces `actor`'s groups and saves; returns false if the actor is not registered.
    pub(crate) async fn set_groups(
        &self,
        actor: &str,
        groups: Vec<String>,
    ) -> Result<bool, RegistryError> {
        self.change(move |agents| {
            let mut entry = agents.by_actor.get(actor).cloned()?;
            entry.attributes.groups = groups.clone();
            let mut next = agents.clone();
            next.put(entry);
            Some(next)
        })
        .await
    }

    /// Removes `actor` (and its token) and saves; returns false if it was not registered.
    pub(crate) async fn remove(&self, actor: &str) -> Result<bool, RegistryError> {
        self.change(|agents| {
            let mut next = agents.clone();
            next.take(actor)?;
            Some(next)
        })
        .await
    }

    /// Whether an unauthenticated caller registered `actor` or gave it its token (see
    /// [`crate::unauthenticated_state`]).
    pub(crate) fn is_unauthenticated(&self, actor: &str) -> bool {
        self.read()
            .by_actor
            .get(actor)
            .is_some_and(|a| a.unauthenticated)
    }

    /// The agents an unauthenticated caller registered or gave a token, by name.
    pub(crate) fn unauthenticated_agents(&self) -> Vec<String> {
        self.read()
            .by_actor
            .values()
            .filter(|a| a.unauthenticated)
            .map(|a| a.actor.clone())
            .collect()
    }

    /// Clears every agent's unauthenticated mark and saves; returns false if none was marked.
    pub(crate) async fn clear_unauthenticated(&self) -> Result<bool, RegistryError> {
        self.change(|agents| {
            if !agents.by_actor.values().any(|a| a.unauthenticated) {
                return None;
            }
            let mut next = agents.clone();
            for entry in agents.by_actor.values().filter(|a| a.unauthenticated) {
                next.put(AgentEntry {
                    unauthenticated: false,
                    ..entry.clone()
                });
            }
            Some(next)
        })
        .await
    }

    /// Reloads the registry if the stored document is newer than `seen` (what the caller
    /// last saw of the document's version, e.g. from [`Documents::versions`]).
    pub(crate) async fn reload_if_newer(&self, seen: Option<u64>) -> Result<(), RegistryError> {
        if seen.is_some() && seen <= self.read().version {
            return Ok(());
        }
        let doc = off_thread(&self.docs, |d| d.load(DocName::Agents)).await?;
        let agents = Agents::parse(doc, || self.docs.describe(DocName::Agents))?;
        self.install(agents);
        Ok(())
    }

    /// Reloads the registry if the stored document changed (one cheap read when it did not).
    pub(crate) async fn refresh(&self) -> Result<(), RegistryError> {
        let stored = off_thread(&self.docs, |d| d.versions()).await?;
        self.reload_if_newer(stored.get(&DocName::Agents).copied())
            .await
    }

    /// The version of the document the registry in memory was read from or saved as.
    pub(crate) fn version(&self) -> Option<u64> {
        self.read().version
    }

    /// Applies `change` to the registry as stored and saves the result; reloads and tries
    /// again when another server saved first. `change` returns `None` when there is nothing
    /// to do (the result is then false).
    async fn change(
        &self,
        change: impl Fn(&Agents) -> Option<Agents>,
    ) -> Result<bool, RegistryError> {
        let _turn = self.saving.take().await;
        for attempt in 0..SAVE_TRIES {
            let current = self.read();
            let Some(mut next) = change(&current) else {
                return Ok(false);
            };
            let list: Vec<&AgentEntry> = next.by_actor.values().collect();
            let body = serde_json::to_string_pretty(&list)
                .map_err(|e| RegistryError::Parse(self.docs.describe(DocName::Agents), e))?;
            let expected = current.version;
            match off_thread(&self.docs, move |d| {
                d.save(DocName::Agents, &body, expected)
            })
            .await
            {
                Ok(version) => {
                    next.version = Some(version);
                    self.install(next);
                    return Ok(true);
                }
                Err(DocError::Conflict(_)) => {
                    after_conflict(attempt).await;
                    self.reload_if_newer(None).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(RegistryError::Contended)
    }

    /// Replaces the registry in memory, unless it already holds a newer version.
    fn install(&self, agents: Agents) {
        // The revocation lock first (the lock order), so no record is being queued on the
        // word of the registry being replaced.
        let mut revoked = self.revoked_mut();
        let mut current = self.agents.write().unwrap_or_else(PoisonError::into_inner);
        if agents.version >= current.version {
            *current = Arc::new(agents);
        }
        // A revocation the registry now shows (the token or the agent gone) is done.
        revoked
            .tokens
            .retain(|token| current.by_token.contains_key(token));
        revoked
            .actors
            .retain(|actor| current.by_actor.contains_key(actor));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn miss_reload_due(&self) -> bool {
        let mut last = self
            .last_miss_reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < MISS_RELOAD_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    fn read(&self) -> Arc<Agents> {
        self.agents
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
