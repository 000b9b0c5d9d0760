//! Request ids spent across the servers sharing a PostgreSQL audit store. Each server's own
//! replay guard sees only the ids it decided; this table, written in the same transaction as
//! the records that spend the ids (see [`crate::AuditStore::append_at_head`] and
//! [`Plan::statement`]), makes an id spent by exactly one committed record per window
//! whichever server is asked, and never spent without its record.
//!
//! A row is keyed by the SHA-256 of the actor and the id, so whatever bytes an agent puts in
//! its id (PostgreSQL `text` refuses a NUL) the key is 32 bytes. It holds when the id stops
//! being spent, by the database's clock (the servers' clocks need not agree) and the window of
//! the server that spent it (the servers sharing a store should share one window).
//! Expired rows are deleted by a thread of their own on a connection of its own ([`Pruner`]),
//! off every batch's path, a bounded number at a time, passing over rows a batch holds
//! ([`prune`]).

use std::collections::HashSet;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::{GenericClient, SimpleQueryRow};
use zt_contract::{Digest32, RecordDraft};

use crate::pg_session::{store_error as backend, use_schema, PgSession};
use crate::postgres::PostgresLocation;
use crate::store::StoreError;

/// How often expired ids are deleted.
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The most rows one statement deletes (and one transaction holds locked).
pub(crate) const PRUNE_CHUNK: i64 = 10_000;

/// The table of spent ids (and its index for pruning), in `schema`.
pub(crate) fn create_table_sql(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.request_ids (
             key BYTEA PRIMARY KEY,
             expires_at TIMESTAMPTZ NOT NULL
         );
         CREATE INDEX IF NOT EXISTS request_ids_expires_at ON {schema}.request_ids (expires_at);"
    )
}

/// The row key of `id` spent by `actor` (actor names hold no NUL, so the two cannot run into
/// each other).
fn key(actor: &str, id: &str) -> Digest32 {
    Digest32::sha256(format!("{actor}\0{id}").as_bytes())
}

/// The batch once its ids are spent: the drafts to seal, in order, and those left out (with
/// their place) because a committed record, or an earlier draft of the batch, spent their id
/// within the window.
pub(crate) struct Spent {
    pub(crate) to_seal: Vec<RecordDraft>,
    pub(crate) spent_before: Vec<(usize, RecordDraft)>,
}

/// The column naming a key the batch spent, in the rows [`Plan::statement`] returns.
const SPENT_KEY_COLUMN: &str = "spent_key";

/// Which of a batch's drafts spend an id, and the statement that spends them.
pub(crate) struct Plan {
    /// Per draft, its key if it spends one that no earlier draft of the batch spends.
    keys: Vec<Option<Digest32>>,
}

impl Plan {
    pub(crate) fn of(drafts: &[RecordDraft]) -> Self {
        let mut in_batch = HashSet::new();
        let keys = drafts
            .iter()
            .map(|draft| {
                let key = key(&draft.actor, draft.spent_request_id()?);
                in_batch.insert(key).then_some(key)
            })
            .collect();
        Self { keys }
    }

    /// The statement spending the batch's keys for `window` (ended by `;`), for the simple
    /// query that opens the batch's transaction, before it takes the chain's lock: the keys'
    /// row locks, taken in key order by every server so no two batches deadlock, make a
    /// concurrent spend of the same key wait for this transaction's end, and the chain's lock
    /// holder never waits for them. A key is spent when it is new, or when its row expired
    /// (then taken over); the rows returned are those this batch spends. `None` when no draft
    /// spends an id. The keys are hex (written through `decode` and read through `encode`,
    /// whatever the session's `bytea_output` and string settings) and the window a number:
    /// nothing needs quoting.
    pub(crate) fn statement(&self, window: Duration) -> Option<String> {
        let mut keys: Vec<&Digest32> = self.keys.iter().flatten().collect();
        if keys.is_empty() {
            return None;
        }
        keys.sort_unstable_by_key(|key| key.0);
        let literals: Vec<String> = keys
            .iter()
            .map(|key| format!("decode('{}', 'hex')", key.to_hex()))
            .collect();
        Some(format!(
            "INSERT INTO request_ids (key, expires_at) \
             SELECT key, clock_timestamp() + make_interval(secs => {secs}) \
             FROM unnest(ARRAY[{keys}]::BYTEA[]) AS wanted(key) ORDER BY key \
             ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at \
             WHERE request_ids.expires_at <= clock_timestamp() \
             RETURNING encode(key, 'hex') AS {SPENT_KEY_COLUMN};",
            secs = window.as_secs_f64(),
            keys = literals.join(","),
        ))
    }

    /// Splits `drafts` (those the plan was made of) by whether the statement spent their key
    /// (`spent`), leaving out those that spend an id and did not.
    pub(crate) fn settle(self, drafts: Vec<RecordDraft>, spent: &HashSet<Digest32>) -> Spent {
        let mut to_seal = Vec::with_capacity(drafts.len());
        let mut spent_before = Vec::new();
        for (place, (draft, key)) in drafts.into_iter().zip(self.keys).enumerate() {
            let spends = draft.spent_request_id().is_some();
            if spends && !key.is_some_and(|key| spent.contains(&key)) {
                spent_before.push((place, draft));
            } else {
                to_seal.push(draft);
            }
        }
        Spent {
            to_seal,
            spent_before,
        }
    }
}

/// The key a row of the statement's answer names; `None` for a row of another statement
/// (rows are told apart by their columns: `get` would panic on a missing one).
pub(crate) fn spent_key(row: &SimpleQueryRow) -> Option<Result<Digest32, StoreError>> {
    let Ok(Some(text)) = row.try_get(SPENT_KEY_COLUMN) else {
        return None;
    };
    Some(
        Digest32::from_hex(text)
            .ok_or_else(|| StoreError::Corrupt(format!("a spent request id key reads `{text}`"))),
    )
}

/// Spends the ids `drafts` carry for `window`, inside `client`'s transaction, as a batch does
/// (its own round trip here).
#[cfg(test)]
fn spend(
    client: &mut impl GenericClient,
    drafts: Vec<RecordDraft>,
    window: Duration,
) -> Result<Spent, StoreError> {
    let plan = Plan::of(&drafts);
    let mut spent = HashSet::new();
    if let Some(statement) = plan.statement(window) {
        for message in client.simple_query(&statement).map_err(backend)? {
            if let postgres::SimpleQueryMessage::Row(row) = message {
                if let Some(key) = spent_key(&row) {
                    spent.insert(key?);
                }
            }
        }
    }
    Ok(plan.settle(drafts, &spent))
}

/// Deletes at most [`PRUNE_CHUNK`] expired ids, passing over any a batch holds (so the prune
/// never waits for a batch; a batch re-spending an expired id this statement holds waits for
/// it, one statement at most); how many it deleted.
pub(crate) fn prune(client: &mut impl GenericClient) -> Result<u64, StoreError> {
    client
        .execute(
            "DELETE FROM request_ids WHERE key = ANY(ARRAY(
                 SELECT key FROM request_ids WHERE expires_at <= statement_timestamp()
                 ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))",
            &[&PRUNE_CHUNK],
        )
        .map_err(backend)
}

/// The thread that deletes expired ids every [`PRUNE_EVERY`], in chunks until none is left,
/// on a connection it opens at its first round (most stores never live that long in tests).
/// Dropped, it stops once the connection attempt or statement in progress ends (statements
/// are bounded by [`PRUNE_STATEMENT_TIMEOUT`]).
pub(crate) struct Pruner {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Pruner {
    pub(crate) fn start(location: &PostgresLocation) -> Result<Self, StoreError> {
        Self::start_every(location, PRUNE_EVERY)
    }

    fn start_every(location: &PostgresLocation, every: Duration) -> Result<Self, StoreError> {
        let location = location.clone();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("zt-pg-prune".into())
            .spawn(move || {
                let mut session = None;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    if session.is_none() {
                        match open_session(&location) {
                            Ok(opened) => session = Some(opened),
                            Err(e) => {
                                tracing::warn!(error = %e, "request id pruner cannot connect");
                                continue;
                            }
                        }
                    }
                    if let Some(session) = &session {
                        prune_all(session, &stopped);
                    }
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the request id pruner: {e}")))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// How long one prune statement may run.
const PRUNE_STATEMENT_TIMEOUT: &str = "10s";

/// The pruner's session: the store's schema and settings, and a bound on each statement.
fn open_session(location: &PostgresLocation) -> Result<PgSession, StoreError> {
    let schema = location.schema().to_string();
    PgSession::open(location, move |client| {
        use_schema(client, &schema)?;
        client
            .batch_execute(&format!(
                "SET statement_timeout TO '{PRUNE_STATEMENT_TIMEOUT}'"
            ))
            .map_err(backend)
    })
}

/// Deletes chunks until one is not full, the store stops, or a statement fails.
fn prune_all(session: &PgSession, stopped: &mpsc::Receiver<()>) {
    loop {
        if !matches!(stopped.try_recv(), Err(TryRecvError::Empty)) {
            return;
        }
        match session.run(prune) {
            Ok(deleted) if deleted >= PRUNE_CHUNK.unsigned_abs() => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "deleting expired request ids failed; retrying later");
                return;
            }
        }
    }
}

impl Drop for Pruner {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the request id pruner panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zt_test_support::pg_schema::{server_url, TestSchema};

    fn count(client: &mut postgres::Client) -> i64 {
        client
            .query_one("SELECT count(*) FROM request_ids", &[])
            .unwrap()
            .get(0)
    }

    #[test]
    fn a_prune_deletes_only_expired_ids_and_passes_over_those_a_batch_holds() {
        let Some(schema) = TestSchema::new() else {
            return;
        };
        let mut client = postgres::Client::connect(&server_url(), postgres::NoTls).unwrap();
        client
            .batch_execute(&format!(
                "SET lock_timeout TO '5s'; CREATE SCHEMA {0}; {1} SET search_path TO {0};",
                schema.name,
                create_table_sql(&schema.name)
            ))
            .unwrap();
        let spending = |actor: &str, id: &str| RecordDraft {
            actor: actor.into(),
            request_id: Some(id.into()),
            ..RecordDraft::default()
        };
        let drafts = vec![
            spending("a", "old"),
            spending("a", "held"),
            spending("a", "new"),
        ];
        let spent = spend(&mut client, drafts, Duration::from_secs(300)).unwrap();
        assert_eq!((spent.to_seal.len(), spent.spent_before.len()), (3, 0));
        client
            .execute(
                "UPDATE request_ids SET expires_at = now() - interval '1 second' WHERE key = ANY($1)",
                &[&vec![&key("a", "old").0[..], &key("a", "held").0[..]]],
            )
            .unwrap();

        // A batch (another session) holds the expired row it is taking over.
        let mut batch = postgres::Client::connect(&server_url(), postgres::NoTls).unwrap();
        let mut transaction = batch.transaction().unwrap();
        transaction
            .batch_execute(&format!("SET LOCAL search_path TO {}", schema.name))
            .unwrap();
        let taken = spend(
            &mut transaction,
            vec![spending("a", "held")],
            Duration::from_secs(300),
        )
        .unwrap();
        assert_eq!(taken.to_seal.len(), 1, "an expired id is spent again");

        assert_eq!(prune(&mut client).unwrap(), 1, "only `old`: `held` is held");
        assert_eq!(count(&mut client), 2);
        transaction.commit().unwrap();
        // Taken over, `held` expires with its new window: nothing more to delete.
        assert_eq!(prune(&mut client).unwrap(), 0);
        assert_eq!(count(&mut client), 2);

        // More than a chunk expired.
        client
            .execute(
                "INSERT INTO request_ids (key, expires_at)
                 SELECT sha256(i::text::bytea), now() - interval '1 second'
                 FROM generate_series(1, $1::BIGINT + 5) AS i",
                &[&PRUNE_CHUNK],
            )
            .unwrap();
        let location = PostgresLocation::parse(&schema.url()).unwrap();
        // One round deletes chunk after chunk until none is full.
        let (_running, never_stopped) = mpsc::channel();
        prune_all(&open_session(&location).unwrap(), &never_stopped);
        assert_eq!(count(&mut client), 2);
        client
            .execute(
                "INSERT INTO request_ids (key, expires_at)
                 SELECT sha256(i::text::bytea), now() - interval '1 second'
                 FROM generate_series(1, 10) AS i",
                &[],
            )
            .unwrap();
        // The thread does it on its own.
        let pruner = Pruner::start_every(&location, Duration::from_millis(20)).unwrap();
        let emptied = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            count(&mut client) == 2
        });
        drop(pruner);
        assert!(emptied, "{} rows left", count(&mut client));
    }
}
