//! The active policy: an engine the decision path reads without waiting, and the `policy`
//! state document (`DATA_DIR/policy.cedar`, or the shared PostgreSQL store) for restarts and
//! for the other replicas. A policy read from the store is validated like any other; an
//! invalid one is never activated.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use zt_policy::{ActionPolicy, PolicyEngine, PolicyError};

use crate::state_docs::{off_thread, DocError, DocName, Documents, SAVE_TRIES};

/// Why a policy could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    /// File I/O failed.
    #[error("policy file `{0}`: {1}")]
    Io(String, std::io::Error),
    /// The policy is not valid.
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    /// The document could not be read or written.
    #[error("active policy: {0}")]
    Documents(#[from] DocError),
    /// Other writers kept changing the policy while this one was being saved.
    #[error("active policy: still changed by other servers after {SAVE_TRIES} tries")]
    Contended,
    /// The marks of state chosen without authentication could not be read.
    #[error("active policy: {0}")]
    Marks(String),
    /// Another server activated a different policy after this change was reviewed against
    /// the one before it.
    #[error("active policy: another server activated policy `{current}` meanwhile; the change was reviewed against `{base}`")]
    Superseded {
        /// The policy the change was reviewed against.
        base: String,
        /// The policy now in force.
        current: String,
    },
}

/// A `--policy` file, read and validated (before anything is created on disk).
pub(crate) struct PolicyFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its policy set.
    pub engine: PolicyEngine,
}

impl std::fmt::Debug for PolicyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PolicyFile {
    /// Reads and validates `path` (`.cedar`, or reference `.json`).
    pub(crate) fn read(path: &Path) -> Result<Self, PolicyStoreError> {
        Ok(Self {
            path: path.to_path_buf(),
            engine: PolicyEngine::from_file(path)?,
        })
    }
}

/// A `--policy` file that replaces, at start, a different policy stored before: the log
/// records the replacement before the file is stored (a restart with another file is a
/// policy change like any other).
#[derive(Debug)]
pub(crate) struct FileAtStart {
    /// The file.
    pub path: PathBuf,
    /// The version of the stored policy it replaces.
    pub replaced: String,
}

/// The engine in force and the document version it came from.
struct Active {
    engine: Arc<PolicyEngine>,
    /// The latest document version seen, even if that document was refused as invalid.
    version: Option<u64>,
}

/// Where the active policy lives.
pub(crate) struct PolicyStore {
    docs: Arc<Documents>,
    source_file: Option<PathBuf>,
    active: RwLock<Active>,
    /// Why the last reload of the `--policy` file was refused, until one succeeds.
    file_error: Mutex<Option<String>>,
    /// Refuse a stored policy an unauthenticated admin activated (a server with credentials;
    /// see [`crate::unauthenticated_state`]).
    refuse_unauthenticated: AtomicBool,
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore")
            .field("source_file", &self.source_file)
            .finish_non_exhaustive()
    }
}

impl PolicyStore {
    /// Loads the active policy. `startup_file` (read with [`PolicyFile::read`]), when given,
    /// replaces whatever was active (the operator asked for it; on a shared store, for every
    /// replica): where it differs from a stored policy, it is in force here at once but
    /// stored only by [`PolicyStore::store_file_at_start`], after the audit record the
    /// returned [`FileAtStart`] asks for. Otherwise the `policy` document (a shared store
    /// without one is seeded from `DATA_DIR/policy.cedar`), else a reference-format
    /// `DATA_DIR/policy.json` left by an earlier version, else the shipped default.
    pub(crate) fn load(
        docs: Arc<Documents>,
        data_dir: &Path,
        startup_file: Option<PolicyFile>,
    ) -> Result<(Self, Option<FileAtStart>), PolicyStoreError> {
        let source_file = startup_file.as_ref().map(|f| f.path.clone());
        let mut at_start = None;
        let (engine, version) = match startup_file {
            Some(file) => match docs.load(DocName::Policy)? {
                Some(doc) if doc.body == file.engine.source() => (file.engine, doc.version),
                Some(doc) => {
                    let replaced = PolicyEngine::from_cedar(&doc.body).map_or_else(
                        |_| "an invalid stored policy".into(),
                        |e| e.version().into(),
                    );
                    at_start = Some(FileAtStart {
                        path: file.path,
                        replaced,
                    });
                    (file.engine, doc.version)
                }
                None => {
                    let version = overwrite(&docs, file.engine.source())?;
                    (file.engine, version)
                }
            },
            None => match docs.load_or_seed(DocName::Policy, data_dir)? {
                Some(doc) => (PolicyEngine::from_cedar(&doc.body)?, doc.version),
                None => {
                    let engine = fallback(data_dir)?;
                    match docs.save(DocName::Policy, engine.source(), None) {
                        Ok(version) => (engine, version),
                        // Another server stored one first: use it.
                        Err(DocError::Conflict(_)) => match docs.load(DocName::Policy)? {
                            Some(doc) => (PolicyEngine::from_cedar(&doc.body)?, doc.version),
                            None => return Err(DocError::Conflict("policy").into()),
                        },
                        Err(e) => return Err(e.into()),
                    }
                }
            },
        };
        let store = Self {
            docs,
            source_file,
            active: RwLock::new(Active {
                engine: Arc::new(engine),
                version: Some(version),
            }),
            file_error: Mutex::new(None),
            refuse_unauthenticated: AtomicBool::new(false),
        };
        Ok((store, at_start))
    }

    /// Stores the `--policy` file in force over the policy stored before this start, once
    /// [`FileAtStart`]'s record is in the log.
    pub(crate) async fn store_file_at_start(&self) -> Result<(), PolicyStoreError> {
        self.activate(self.current()).await
    }

    /// From now on, a policy another server activated without authentication (a replica of the
    /// same store under `--auth none`) is refused when it is read from the store.
    pub(crate) fn refuse_unauthenticated(&self) {
        self.refuse_unauthenticated.store(true, Ordering::Relaxed);
    }

    /// The policy in force now.
    pub(crate) fn current(&self) -> Arc<PolicyEngine> {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .engine
            .clone()
    }

    /// The latest version of the `policy` document this server has seen.
    pub(crate) fn version(&self) -> Option<u64> {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .version
    }

    /// The file given with `--policy`, reloaded on SIGHUP or change. When there is one, it
    /// owns the policy: the API's policy changes are refused.
    pub(crate) fn source_file(&self) -> Option<&Path> {
        self.source_file.as_deref()
    }

    /// Why the last reload of the `--policy` file was refused, if the last attempt failed.
    pub(crate) fn file_error(&self) -> Option<String> {
        self.file_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records the outcome of a reload of the `--policy` file (`None`: it succeeded).
    pub(crate) fn set_file_error(&self, error: Option<String>) {
        *self
            .file_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }

    /// Saves `engine` and makes it the policy in force (here at once; on other replicas
    /// when they next poll). A policy another server saved meanwhile is replaced: the last
    /// activation wins (the `--policy` file's reloads, which own the policy).
    pub(crate) async fn activate(&self, engine: Arc<PolicyEngine>) -> Result<(), PolicyStoreError> {
        self.save_active(engine, None).await
    }

    /// As [`PolicyStore::activate`], in place of policy `base`, the one the change was
    /// reviewed against: refused as [`PolicyStoreError::Superseded`] if another server
    /// activated a different policy meanwhile, so that a reviewed change never silently
    /// replaces one it was not reviewed against.
    pub(crate) async fn activate_over(
        &self,
        engine: Arc<PolicyEngine>,
        base: &str,
    ) -> Result<(), PolicyStoreError> {
        self.save_active(engine, Some(base)).await
    }

    async fn save_active(
        &self,
        engine: Arc<PolicyEngine>,
        base: Option<&str>,
    ) -> Result<(), PolicyStoreError> {
        for _ in 0..SAVE_TRIES {
            let (current, expected) = {
                let active = self.active.read().unwrap_or_else(PoisonError::into_inner);
                (active.engine.version().to_string(), active.version)
            };
            if let Some(base) = base.filter(|base| *base != current) {
                return Err(PolicyStoreError::Superseded {
                    base: base.to_string(),
                    current,
                });
            }
            let body = engine.source().to_string();
            match off_thread(&self.docs, move |d| {
                d.save(DocName::Policy, &body, expected)
            })
            .await
            {
                Ok(version) => {
                    self.install(engine, version);
                    return Ok(());
                }
                Err(DocError::Conflict(_)) => self.reload_if_newer(None).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(PolicyStoreError::Contended)
    }

    /// Reloads the policy if the stored document is newer than `seen` (`None`: whatever is
    /// stored). The stored text is validated first: an invalid policy is logged and refused,
    /// and the active one stays.
    pub(crate) async fn reload_if_newer(&self, seen: Option<u64>) -> Result<(), PolicyStoreError> {
        if seen.is_some() && seen <= self.version() {
            return Ok(());
        }
        let Some(doc) = off_thread(&self.docs, |d| d.load(DocName::Policy)).await? else {
            return Ok(());
        };
        if Some(doc.version) <= self.version() {
            return Ok(());
        }
        let body = doc.body.clone();
        let loaded = crate::evaluation::load(move || PolicyEngine::from_cedar(&body)).await;
        let loaded = match loaded {
            Ok(engine) if self.refuse_unauthenticated.load(Ordering::Relaxed) => {
                let marked = crate::unauthenticated_state::marked_policy(&self.docs)
                    .await
                    .map_err(|e| PolicyStoreError::Marks(e.to_string()))?;
                match marked {
                    Some(version) if version == engine.version() => Err(format!(
                        "policy `{version}` was activated without authentication (by a server under --auth none on the same store)"
                    )),
                    _ => Ok(engine),
                }
            }
            Ok(engine) => Ok(engine),
            Err(e) => Err(e.to_string()),
        };
        match loaded {
            Ok(engine) => {
                let before = self.current().version().to_string();
                self.install(Arc::new(engine), doc.version);
                let now = self.current();
                if now.version() != before {
                    tracing::info!(version = %now.version(), replaced = %before, "policy changed by another server");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, document_version = doc.version, kept = %self.current().version(), "stored policy refused; the active policy stays");
                let mut active = self.active.write().unwrap_or_else(PoisonError::into_inner);
                active.version = active.version.max(Some(doc.version));
            }
        }
        Ok(())
    }

    /// Makes `engine` the policy in force, unless a newer document is already in force.
    fn install(&self, engine: Arc<PolicyEngine>, version: u64) {
        let mut active = self.active.write().unwrap_or_else(PoisonError::into_inner);
        if Some(version) >= active.version {
            *active = Active {
                engine,
                version: Some(version),
            };
        }
    }
}

/// With no stored policy: a reference-format `DATA_DIR/policy.json` left by an earlier
/// version, else the shipped default.
fn fallback(data_dir: &Path) -> Result<PolicyEngine, PolicyStoreError> {
    let legacy = data_dir.join("policy.json");
    if !legacy.exists() {
        return Ok(PolicyEngine::default_policy());
    }
    let text = std::fs::read_to_string(&legacy)
        .map_err(|e| PolicyStoreError::Io(legacy.display().to_string(), e))?;
    Ok(PolicyEngine::from_action_policy(&ActionPolicy::from_json(
        &text,
    )?)?)
}

/// Saves `body` over whatever policy is stored; returns its version.
fn overwrite(docs: &Documents, body: &str) -> Result<u64, PolicyStoreError> {
    for _ in 0..SAVE_TRIES {
        let current = docs.versions()?.get(&DocName::Policy).copied();
        match docs.save(DocName::Policy, body, current) {
            Ok(version) => return Ok(version),
            Err(DocError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PolicyStoreError::Contended)
}
