//! Shared state documents: the agent registry, the active policy and the pending policy
//! proposals, each kept as one named, versioned text document. With the embedded audit store
//! they are files in the data directory (`agents.json`, `policy.cedar`, `proposals.json`);
//! with a PostgreSQL audit store they live in that store's schema, so every replica on it
//! shares one registry, one policy and one set of proposals.
//!
//! Writes are optimistic: [`Documents::save`] names the version it replaces and fails with
//! [`DocError::Conflict`] if another writer got there first; the writer then reloads,
//! re-applies its change and saves again. [`Documents::versions`] is cheap, so replicas poll
//! it (see [`follow`]) to pick up what other replicas changed.
//!
//! The PostgreSQL table is the storage crate's ([`zt_ledger::documents`]), beside the audit
//! tables; this module gives the documents their names and files and puts the two backends
//! behind one interface.
//!
//! The methods block (file I/O, or a round trip to PostgreSQL on the client's own thread);
//! async code calls them through [`off_thread`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use zt_ledger::documents::PostgresDocuments;

pub(crate) mod file;
pub(crate) mod follow;

pub(crate) use self::file::FileDocs;
pub(crate) use zt_ledger::documents::Doc;

/// A document's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum DocName {
    /// The agent registry (JSON).
    Agents,
    /// The active policy (Cedar).
    Policy,
    /// Marks of state an unauthenticated caller chose (JSON, see
    /// [`crate::unauthenticated_state`]).
    Unauthenticated,
    /// Policy proposals kept for review (JSON).
    Proposals,
}

impl DocName {
    /// Every document.
    pub(crate) const ALL: [DocName; 4] = [
        DocName::Agents,
        DocName::Policy,
        DocName::Unauthenticated,
        DocName::Proposals,
    ];

    /// The name as stored.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DocName::Agents => "agents",
            DocName::Policy => "policy",
            DocName::Unauthenticated => "unauthenticated",
            DocName::Proposals => "proposals",
        }
    }

    /// The document's file in the data directory.
    pub(crate) fn file_name(self) -> &'static str {
        match self {
            DocName::Agents => "agents.json",
            DocName::Policy => "policy.cedar",
            DocName::Unauthenticated => "unauthenticated.json",
            DocName::Proposals => "proposals.json",
        }
    }
}

/// Why a document could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// Another writer changed the document since the expected version.
    #[error("document `{0}` was changed by another writer")]
    Conflict(&'static str),
    /// A file could not be read or written.
    #[error("state file `{0}`: {1}")]
    Io(String, std::io::Error),
    /// A file is not UTF-8 text.
    #[error("state file `{0}` is not text")]
    NotText(String),
    /// The PostgreSQL store failed.
    #[error(transparent)]
    Backend(#[from] zt_ledger::StoreError),
    /// The blocking task or the database thread stopped.
    #[error("the state documents task stopped")]
    Stopped,
}

/// Where the documents live.
pub(crate) enum Documents {
    /// Files in the data directory (embedded audit store).
    Files(FileDocs),
    /// A table in the PostgreSQL audit store's schema, shared by every replica.
    Postgres(PostgresDocuments),
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Documents::Files(_) => "Documents::Files",
            Documents::Postgres(_) => "Documents::Postgres",
        })
    }
}

impl Documents {
    /// The documents beside the audit store `store_url` names: files in `data_dir` when it
    /// is `None`, else the PostgreSQL store's schema.
    pub(crate) fn open(store_url: Option<&str>, data_dir: &Path) -> Result<Self, DocError> {
        match store_url {
            None => Ok(Documents::Files(FileDocs::new(data_dir))),
            Some(url) => {
                let location = zt_ledger::PostgresLocation::parse(url)?;
                Ok(Documents::Postgres(PostgresDocuments::open(&location)?))
            }
        }
    }

    /// True if other servers share these documents (so this one must follow their changes).
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Documents::Postgres(_))
    }

    /// The document `name` and its version, if it exists.
    pub(crate) fn load(&self, name: DocName) -> Result<Option<Doc>, DocError> {
        match self {
            Documents::Files(f) => f.load(name),
            Documents::Postgres(p) => Ok(p.load(name.as_str())?),
        }
    }

    /// Replaces `name` with `body` if its version is still `expected` (`None`: the document
    /// must not exist yet); returns the new version, or [`DocError::Conflict`].
    pub(crate) fn save(
        &self,
        name: DocName,
        body: &str,
        expected: Option<u64>,
    ) -> Result<u64, DocError> {
        match self {
            Documents::Files(f) => f.save(name, body, expected),
            Documents::Postgres(p) => p
                .save(name.as_str(), body, expected)?
                .ok_or(DocError::Conflict(name.as_str())),
        }
    }

    /// The version of every existing document.
    pub(crate) fn versions(&self) -> Result<BTreeMap<DocName, u64>, DocError> {
        match self {
            Documents::Files(f) => f.versions(),
            Documents::Postgres(p) => Ok(p
                .versions()?
                .into_iter()
                // Documents of other server versions are not this one's business.
                .filter_map(|(stored, version)| {
                    let name = DocName::ALL.into_iter().find(|d| d.as_str() == stored)?;
                    Some((name, version))
                })
                .collect()),
        }
    }

    /// Loads `name`; on a shared store where it does not exist yet, first seeds it from the
    /// data directory's file, if there is one (the first server to do so wins; the others
    /// load what it stored).
    pub(crate) fn load_or_seed(
        &self,
        name: DocName,
        data_dir: &Path,
    ) -> Result<Option<Doc>, DocError> {
        if let Some(doc) = self.load(name)? {
            return Ok(Some(doc));
        }
        if !self.is_shared() {
            return Ok(None);
        }
        let path = data_dir.join(name.file_name());
        let body = match std::fs::read_to_string(&path) {
            Ok(body) => body,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DocError::Io(path.display().to_string(), e)),
        };
        match self.save(name, &body, None) {
            Ok(version) => {
                tracing::info!(
                    document = name.as_str(),
                    from = %path.display(),
                    "shared state document seeded from the data directory"
                );
                Ok(Some(Doc { body, version }))
            }
            Err(DocError::Conflict(_)) => self.load(name),
            Err(e) => Err(e),
        }
    }

    /// Where `name` lives, for messages (never a URL).
    pub(crate) fn describe(&self, name: DocName) -> String {
        match self {
            Documents::Files(f) => f.path(name).display().to_string(),
            Documents::Postgres(p) => format!("postgres {}.{}", p.schema(), name.as_str()),
        }
    }
}

/// Runs blocking document work on the blocking pool and awaits it.
pub(crate) async fn off_thread<T: Send + 'static>(
    docs: &Arc<Documents>,
    work: impl FnOnce(&Documents) -> Result<T, DocError> + Send + 'static,
) -> Result<T, DocError> {
    let docs = docs.clone();
    tokio::task::spawn_blocking(move || work(&docs))
        .await
        .map_err(|_| DocError::Stopped)?
}

/// How many times a change is re-applied after conflicts before it gives up. The registry
/// and the proposals, changed by many requests at once, make a server's own changes one at a
/// time ([`SaveTurn`]), so conflicts come only from other replicas, and after each
/// [`after_conflict`] waits a random while so the same replica does not win every time (each
/// try then loses about half the time: 2^-16 to lose them all). The policy and the
/// unauthenticated-state marks, changed by rare admin acts, retry at once.
pub(crate) const SAVE_TRIES: usize = 16;

/// Longest wait after a conflict, in microseconds.
const MAX_CONFLICT_WAIT_MICROS: u64 = 20_000;

/// One document's changes by this server, one at a time: a read-modify-save held across its
/// conflicts, so concurrent requests on one replica queue instead of spending each other's
/// tries (24 registrations at once on two replicas ran out of 8 tries).
#[derive(Debug, Default)]
pub(crate) struct SaveTurn(tokio::sync::Mutex<()>);

impl SaveTurn {
    /// Waits for this server's turn to change the document.
    pub(crate) async fn take(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.lock().await
    }
}

/// After the `attempt`-th conflict (from 0), waits a random time below 1 ms doubled per
/// attempt (at most 20 ms), so two replicas retrying do not meet again in step.
pub(crate) async fn after_conflict(attempt: usize) {
    // From the sixth conflict on, 1 ms doubled is past the longest wait.
    let ceiling = (1_000u64 << attempt.min(5)).min(MAX_CONFLICT_WAIT_MICROS);
    let mut bytes = [0u8; 8];
    let wait = match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes) % ceiling,
        // Without randomness: half the ceiling, still a wait.
        Err(_) => ceiling / 2,
    };
    tokio::time::sleep(Duration::from_micros(wait)).await;
}

#[cfg(test)]
mod tests;
