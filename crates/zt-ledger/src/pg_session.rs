//! PostgreSQL sessions for the stores that live in one schema of a PostgreSQL database: the
//! audit store ([`crate::postgres`]) and the documents a server keeps beside it
//! ([`crate::documents`]). Private to this crate, so PostgreSQL is reached only through those
//! two stores. One session type, one way to set a session up, one way to create tables when
//! several servers may start at once, one error mapping.

use std::sync::mpsc;
use std::thread::JoinHandle;

use postgres::{Client, Config, NoTls};

use crate::postgres::PostgresLocation;
use crate::store::StoreError;

/// The advisory lock keyed by `schema`: every writer of the audit chain there takes it for
/// each batch, and tables are created under it.
pub(crate) fn chain_lock_key(schema: &str) -> String {
    format!("zt-infra audit log: {schema}")
}

/// Creates `schema` if missing and runs `ddl` (`CREATE TABLE IF NOT EXISTS …` statements)
/// in one transaction under the schema's advisory lock: servers starting together would
/// otherwise race (PostgreSQL's `IF NOT EXISTS` is not safe against concurrent creation).
/// `schema` must be checked ([`PostgresLocation`] does).
pub(crate) fn create_in_schema(
    client: &mut Client,
    schema: &str,
    ddl: &str,
) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(store_error)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&chain_lock_key(schema)],
    )
    .map_err(store_error)?;
    // Only when missing: creating a schema needs a privilege using one does not.
    let exists = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .map_err(store_error)?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {schema}"))
            .map_err(store_error)?;
    }
    tx.batch_execute(ddl).map_err(store_error)?;
    tx.commit().map_err(store_error)
}

/// How long a statement waits for a lock, and how long a transaction may sit idle holding
/// one (a hung server must not stall the others): the statement fails instead.
const LOCK_TIMEOUT_S: u32 = 10;

/// Sets the session up for `schema`: search path, durable commits, lock timeouts.
pub(crate) fn use_schema(client: &mut Client, schema: &str) -> Result<(), StoreError> {
    // `schema` is checked to be a plain lowercase identifier, so it needs no quoting.
    client
        .batch_execute(&format!(
            "SET search_path TO {schema}; SET synchronous_commit TO on; \
             SET lock_timeout TO '{LOCK_TIMEOUT_S}s'; \
             SET idle_in_transaction_session_timeout TO '{LOCK_TIMEOUT_S}s';"
        ))
        .map_err(store_error)
}

/// A client error as a store error, with its cause (the client's own message names only the
/// kind; connection settings never appear).
pub(crate) fn store_error(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        return StoreError::Backend(format!("postgres: {}: {}", db.code().code(), db.message()));
    }
    match std::error::Error::source(&e) {
        Some(cause) => StoreError::Backend(format!("postgres: {e}: {cause}")),
        None => StoreError::Backend(format!("postgres: {e}")),
    }
}

type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// Prepares a new session (run again on every reconnection).
type Setup = Box<dyn Fn(&mut Client) -> Result<(), StoreError> + Send>;

/// Connects and prepares a session.
fn connect(config: &Config, setup: &Setup) -> Result<Client, StoreError> {
    let mut client = config.connect(NoTls).map_err(store_error)?;
    setup(&mut client)?;
    Ok(client)
}

/// A PostgreSQL session on its own thread. The synchronous `postgres` client drives a small
/// async runtime of its own, which must neither block nor be dropped on an async worker
/// thread; keeping it on a dedicated thread lets a session be used (blocking) and dropped
/// from anywhere. A lost connection is reopened, with the same setup, for the next job; the
/// job that met it fails.
pub(crate) struct PgSession {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PgSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSession").finish_non_exhaustive()
    }
}

impl PgSession {
    /// Connects to `location` on a new thread and runs `setup` there before anything else,
    /// and again after each reconnection.
    pub(crate) fn open(
        location: &PostgresLocation,
        setup: impl Fn(&mut Client) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<Self, StoreError> {
        let config = location.config().clone();
        let setup: Setup = Box::new(setup);
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, is_ready) = mpsc::sync_channel::<Result<(), StoreError>>(1);
        let thread = std::thread::Builder::new()
            .name("zt-pg".into())
            .spawn(move || {
                let mut client = match connect(&config, &setup) {
                    Ok(client) => client,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                while let Ok(job) = queue.recv() {
                    if client.is_closed() {
                        // A job on a closed client fails with a clear error; try a new one.
                        match connect(&config, &setup) {
                            Ok(fresh) => client = fresh,
                            Err(e) => tracing::warn!(error = %e, "postgres: reconnecting failed"),
                        }
                    }
                    job(&mut client);
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start postgres thread: {e}")))?;
        let mut worker = Self {
            jobs: Some(jobs),
            thread: Some(thread),
        };
        match is_ready.recv() {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(e)) => {
                worker.stop();
                Err(e)
            }
            Err(_) => {
                worker.stop();
                Err(StoreError::Backend("postgres thread stopped".into()))
            }
        }
    }

    /// Runs `f` with the client and waits for its answer.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let stopped = || StoreError::Backend("postgres thread stopped".into());
        let (answer, answered) = mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(Box::new(move |client| {
                let _ = answer.send(f(client));
            }))
            .map_err(|_| stopped())?;
        answered.recv().map_err(|_| stopped())?
    }

    /// Closes the connection (releasing its session locks) and waits for the thread.
    fn stop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("postgres session thread panicked");
            }
        }
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        self.stop();
    }
}
