//! Documents in the PostgreSQL audit store's schema: one table,
//! `server_documents(name TEXT PRIMARY KEY, body TEXT NOT NULL, version BIGINT NOT NULL)`,
//! created if missing under the same advisory lock the audit store creates its tables under,
//! so replicas starting together cannot race.
//!
//! A save is one statement: `INSERT ... ON CONFLICT DO NOTHING` for a new document, else
//! `UPDATE ... WHERE version = expected`; no row returned means another writer won.
//!
//! The synchronous `postgres` client must not block or be dropped on an async worker thread:
//! it lives on its own thread, which runs the jobs it is sent. A lost connection is reopened
//! for the next job; the job that met it fails.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread::JoinHandle;

use postgres::{Client, Config, NoTls};
use zt_ledger::{PostgresLocation, StoreError};

use super::{Doc, DocError, DocName};

type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// Documents in one PostgreSQL schema.
pub struct PostgresDocs {
    schema: String,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PostgresDocs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDocs")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// How long a statement waits for a lock before it fails.
const LOCK_TIMEOUT_S: u32 = 10;

impl PostgresDocs {
    /// Connects, creating the schema and table if missing.
    pub fn open(location: &PostgresLocation) -> Result<Self, DocError> {
        let schema = location.schema().to_string();
        let config = location.config().clone();
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, is_ready) = mpsc::sync_channel::<Result<(), StoreError>>(1);
        let session_schema = schema.clone();
        let thread = std::thread::Builder::new()
            .name("zt-docs-pg".into())
            .spawn(move || run(&config, &session_schema, &queue, &ready))
            .map_err(|e| StoreError::Backend(format!("cannot start postgres thread: {e}")))?;
        let mut docs = Self {
            schema,
            jobs: Some(jobs),
            thread: Some(thread),
        };
        match is_ready.recv() {
            Ok(Ok(())) => Ok(docs),
            Ok(Err(e)) => {
                docs.stop();
                Err(e.into())
            }
            Err(_) => {
                docs.stop();
                Err(DocError::Stopped)
            }
        }
    }

    /// The schema holding the table.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// See [`super::Documents::load`].
    pub fn load(&self, name: DocName) -> Result<Option<Doc>, DocError> {
        self.run(move |client| {
            let row = client
                .query_opt(
                    "SELECT body, version FROM server_documents WHERE name = $1",
                    &[&name.as_str()],
                )
                .map_err(backend)?;
            row.map(|row| {
                let body: String = row.try_get(0).map_err(backend)?;
                let version: i64 = row.try_get(1).map_err(backend)?;
                Ok(Doc {
                    body,
                    version: to_version(version)?,
                })
            })
            .transpose()
        })
    }

    /// See [`super::Documents::save`].
    pub fn save(&self, name: DocName, body: &str, expected: Option<u64>) -> Result<u64, DocError> {
        let body = body.to_string();
        let expected = expected.map(to_i64).transpose()?;
        let row = self.run(move |client| {
            let key = name.as_str();
            let row = match expected {
                None => client.query_opt(
                    "INSERT INTO server_documents (name, body, version) VALUES ($1, $2, 1)
                     ON CONFLICT (name) DO NOTHING RETURNING version",
                    &[&key, &body],
                ),
                Some(v) => client.query_opt(
                    "UPDATE server_documents SET body = $2, version = version + 1
                     WHERE name = $1 AND version = $3 RETURNING version",
                    &[&key, &body, &v],
                ),
            }
            .map_err(backend)?;
            row.map(|r| r.try_get::<_, i64>(0).map_err(backend))
                .transpose()
        })?;
        match row {
            Some(version) => Ok(to_version(version)?),
            None => Err(DocError::Conflict(name.as_str())),
        }
    }

    /// See [`super::Documents::versions`].
    pub fn versions(&self) -> Result<BTreeMap<DocName, u64>, DocError> {
        let rows = self.run(|client| {
            let rows = client
                .query("SELECT name, version FROM server_documents", &[])
                .map_err(backend)?;
            rows.iter()
                .map(|row| {
                    let name: String = row.try_get(0).map_err(backend)?;
                    let version: i64 = row.try_get(1).map_err(backend)?;
                    Ok((name, version))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        let mut out = BTreeMap::new();
        for (name, version) in rows {
            // Documents of other server versions are not this one's business.
            if let Some(doc) = DocName::ALL.into_iter().find(|d| d.as_str() == name) {
                out.insert(doc, to_version(version)?);
            }
        }
        Ok(out)
    }

    /// Runs `f` with the client on its thread and waits for the answer.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, DocError> {
        let (answer, answered) = mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .ok_or(DocError::Stopped)?
            .send(Box::new(move |client| {
                let _ = answer.send(f(client));
            }))
            .map_err(|_| DocError::Stopped)?;
        Ok(answered.recv().map_err(|_| DocError::Stopped)??)
    }

    fn stop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("postgres state documents thread panicked");
            }
        }
    }
}

impl Drop for PostgresDocs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The client's thread: connects, reports, then runs jobs until the sender is dropped.
fn run(
    config: &Config,
    schema: &str,
    queue: &mpsc::Receiver<Job>,
    ready: &mpsc::SyncSender<Result<(), StoreError>>,
) {
    let mut client = match connect(config, schema, true) {
        Ok(client) => client,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Ok(job) = queue.recv() {
        if client.is_closed() {
            match connect(config, schema, false) {
                Ok(fresh) => client = fresh,
                Err(e) => {
                    tracing::warn!(error = %e, "postgres state documents: reconnecting failed")
                }
            }
        }
        job(&mut client);
    }
}

/// Connects and prepares the session; on the first connection, creates the table.
fn connect(config: &Config, schema: &str, create: bool) -> Result<Client, StoreError> {
    let mut client = config.connect(NoTls).map_err(backend)?;
    if create {
        create_table(&mut client, schema)?;
    }
    // `schema` is checked by `PostgresLocation` to be a plain lowercase identifier.
    client
        .batch_execute(&format!(
            "SET search_path TO {schema}; SET synchronous_commit TO on; \
             SET lock_timeout TO '{LOCK_TIMEOUT_S}s'; \
             SET idle_in_transaction_session_timeout TO '{LOCK_TIMEOUT_S}s';"
        ))
        .map_err(backend)?;
    Ok(client)
}

/// Creates the schema (if missing) and the table under the audit store's creation lock.
fn create_table(client: &mut Client, schema: &str) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(backend)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("zt-infra audit log: {schema}")],
    )
    .map_err(backend)?;
    let exists = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .map_err(backend)?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {schema}"))
            .map_err(backend)?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {schema}.server_documents (
             name TEXT PRIMARY KEY,
             body TEXT NOT NULL,
             version BIGINT NOT NULL
         );"
    ))
    .map_err(backend)?;
    tx.commit().map_err(backend)
}

/// Formats a client error with its cause (never the connection settings).
fn backend(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        return StoreError::Backend(format!("postgres: {}: {}", db.code().code(), db.message()));
    }
    match std::error::Error::source(&e) {
        Some(cause) => StoreError::Backend(format!("postgres: {e}: {cause}")),
        None => StoreError::Backend(format!("postgres: {e}")),
    }
}

fn to_version(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative document version {v}")))
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("document version {v} out of range")))
}
