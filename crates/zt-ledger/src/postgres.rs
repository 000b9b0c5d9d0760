//! The PostgreSQL store: the same two tables as the embedded store, in one schema of a
//! PostgreSQL database.
//!
//! Each [`AuditStore::append`] is one transaction of one multi-row `INSERT`, committed with
//! `synchronous_commit = on` (set on the session, whatever the server default), so a batch is
//! durable on the primary when `append` returns, and all-or-nothing.
//!
//! Several servers may write one chain (replicas): each batch is sealed inside its own
//! transaction, under a transaction-scoped advisory lock keyed by the schema, onto the head read
//! under that lock (see [`AuditStore::append_at_head`]). Writers therefore take turns one
//! batch at a time, and the `seq` primary key refuses a fork even if the lock were bypassed.
//! A lost connection is reopened for the next job; the job that met it fails.
//!
//! The synchronous `postgres` client drives its own small async runtime, which must neither
//! block nor be dropped on an async worker thread. Each store therefore keeps its client on a
//! dedicated thread and sends it work, so a store may be used and dropped from anywhere.

use std::collections::HashSet;
use std::time::Duration;

use postgres::{Client, Config, SimpleQueryMessage};
use zt_contract::{Digest32, Jwk};

use crate::pg_request_ids;
use crate::pg_session::{
    chain_lock_key, create_in_schema, store_error as backend, use_schema, PgSession,
};
use crate::store::{
    one_record_per_draft, AppendedAtHead, AuditStore, BatchAtHead, Head, SealedRecord, StoreError,
};

/// The schema used when the URL names none.
pub const DEFAULT_SCHEMA: &str = "zt_audit";

/// How long connecting may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a PostgreSQL store lives: a connection URL and the schema holding its tables.
#[derive(Clone)]
pub struct PostgresLocation {
    config: Config,
    schema: String,
}

impl std::fmt::Debug for PostgresLocation {
    // The URL may carry a password: show only where it points.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLocation")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("schema", &self.schema)
            .finish()
    }
}

impl PostgresLocation {
    /// Parses `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?PARAMS]`. Besides libpq's parameters,
    /// `schema=NAME` (lowercase letters, digits and `_`) picks the schema holding the tables;
    /// it defaults to [`DEFAULT_SCHEMA`] and is created if missing.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Backend(
                "a postgres store url starts with `postgres://`".into(),
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut schema = DEFAULT_SCHEMA.to_string();
        let mut rest = Vec::new();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            match param.strip_prefix("schema=") {
                Some(name) => schema = name.to_string(),
                None => rest.push(param),
            }
        }
        Self::with_schema(&rebuild(base, &rest), &schema)
    }

    /// A location from a libpq URL (or `key=value` string) and an explicit schema.
    pub fn with_schema(conninfo: &str, schema: &str) -> Result<Self, StoreError> {
        check_schema_name(schema)?;
        let mut config: Config = conninfo
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid postgres store url: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // Names the store in `pg_stat_activity`, for operators (PostgreSQL truncates at 63).
        config.application_name(&format!("zt-infra/{schema}"));
        Ok(Self {
            config,
            schema: schema.to_string(),
        })
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection settings (they may hold a password: never log them).
    pub fn config(&self) -> &Config {
        &self.config
    }
}

fn rebuild(base: &str, params: &[&str]) -> String {
    if params.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", params.join("&"))
    }
}

fn check_schema_name(name: &str) -> Result<(), StoreError> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "schema `{name}` must be 1 to 63 lowercase letters, digits or `_`, not starting with a digit"
        )))
    }
}

/// A PostgreSQL-backed audit store.
pub struct PostgresStore {
    worker: PgSession,
    /// The advisory lock serializing the writers of this chain.
    lock_key: String,
    /// Deletes the expired request ids (a writer's store only).
    _pruner: Option<pg_request_ids::Pruner>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Opens the store for writing, creating the schema and tables if missing. Other servers
    /// may write the same store at the same time.
    pub fn open(location: &PostgresLocation) -> Result<Self, StoreError> {
        let schema = location.schema.clone();
        let worker = PgSession::open(location, move |client| {
            create_in_schema(
                client,
                &schema,
                &format!(
                    "CREATE TABLE IF NOT EXISTS {schema}.records (
                         seq BIGINT PRIMARY KEY,
                         current_hash TEXT NOT NULL,
                         line TEXT NOT NULL
                     );
                     CREATE TABLE IF NOT EXISTS {schema}.signing_keys (
                         key_id TEXT PRIMARY KEY,
                         jwk TEXT NOT NULL,
                         published_order BIGSERIAL
                     );
                     {}",
                    pg_request_ids::create_table_sql(&schema)
                ),
            )?;
            use_schema(client, &schema)
        })?;
        Ok(Self {
            worker,
            lock_key: chain_lock_key(location.schema()),
            _pruner: Some(pg_request_ids::Pruner::start(location)?),
        })
    }

    /// Opens an existing store for reading only (beside a running writer; takes no lock).
    pub fn open_read_only(location: &PostgresLocation) -> Result<Self, StoreError> {
        let schema = location.schema.clone();
        let worker = PgSession::open(location, move |client| {
            let tables: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_tables WHERE schemaname = $1
                     AND tablename IN ('records', 'signing_keys')",
                    &[&schema],
                )
                .and_then(|row| row.try_get(0))
                .map_err(backend)?;
            if tables != 2 {
                return Err(StoreError::Backend(format!(
                    "no audit log in postgres schema `{schema}`"
                )));
            }
            use_schema(client, &schema)?;
            client
                .batch_execute("SET default_transaction_read_only TO on")
                .map_err(backend)
        })?;
        Ok(Self {
            worker,
            lock_key: chain_lock_key(location.schema()),
            _pruner: None,
        })
    }
}

/// The head as stored, read inside `client`'s current transaction or session.
fn read_head(client: &mut impl postgres::GenericClient) -> Result<Option<Head>, StoreError> {
    let row = client
        .query_opt(
            "SELECT seq, current_hash FROM records ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .map_err(backend)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let seq: i64 = row.try_get(0).map_err(backend)?;
    let hash: String = row.try_get(1).map_err(backend)?;
    Ok(Some(Head {
        current_hash: parse_hash(seq, &hash)?,
        seq: to_seq(seq)?,
    }))
}

/// Runs `open` (begin, spend the batch's request ids as `plan` says, lock, read the head),
/// seals the drafts whose ids were not spent before onto the head, inserts and commits.
fn seal_in_transaction(
    client: &mut Client,
    open: &str,
    plan: pg_request_ids::Plan,
    batch: BatchAtHead,
) -> Result<AppendedAtHead, StoreError> {
    let mut head = None;
    let mut spent = HashSet::new();
    for message in client.simple_query(open).map_err(backend)? {
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        // Rows are told apart by their columns (`get` would panic on a missing one).
        if let Some(key) = pg_request_ids::spent_key(&row) {
            spent.insert(key?);
        } else if let (Ok(Some(seq)), Ok(Some(hash))) =
            (row.try_get("head_seq"), row.try_get("current_hash"))
        {
            let seq: i64 = seq
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("head seq `{seq}`")))?;
            head = Some(Head {
                current_hash: parse_hash(seq, hash)?,
                seq: to_seq(seq)?,
            });
        }
    }
    let spent = plan.settle(batch.drafts, &spent);
    let to_seal = spent.to_seal.len();
    let records = (batch.seal)(head, spent.to_seal)?;
    // Each caller is answered with the record at its place: a short or long answer from the
    // seal is not committed, and its ids are not spent.
    if records.len() != to_seal {
        return Err(one_record_per_draft(records.len(), to_seal));
    }
    if !records.is_empty() {
        insert(client, &records)?;
    }
    client.batch_execute("COMMIT").map_err(backend)?;
    Ok(AppendedAtHead {
        records,
        spent_before: spent.spent_before,
    })
}

/// Inserts records in one statement, inside `client`'s current transaction.
fn insert(
    client: &mut impl postgres::GenericClient,
    records: &[SealedRecord],
) -> Result<(), StoreError> {
    let mut seqs = Vec::with_capacity(records.len());
    let mut hashes = Vec::with_capacity(records.len());
    let mut lines = Vec::with_capacity(records.len());
    for r in records {
        seqs.push(to_i64(r.body.seq)?);
        hashes.push(r.current_hash.to_hex());
        lines.push(r.line.as_str());
    }
    client
        .execute(
            "INSERT INTO records (seq, current_hash, line)
             SELECT * FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[])",
            &[&seqs, &hashes, &lines],
        )
        .map(|_| ())
        .map_err(backend)
}

fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Backend(format!("sequence number {n} out of range")))
}

fn to_seq(seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("negative seq {seq}")))
}

fn parse_hash(seq: i64, text: &str) -> Result<Digest32, StoreError> {
    Digest32::from_hex(text)
        .ok_or_else(|| StoreError::Corrupt(format!("record {seq} has hash `{text}`")))
}

impl AuditStore for PostgresStore {
    fn head(&mut self) -> Result<Option<Head>, StoreError> {
        self.worker.run(read_head)
    }

    fn append(&mut self, records: &[SealedRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let records = records.to_vec();
        self.worker.run(move |client| {
            let mut tx = client.transaction().map_err(backend)?;
            insert(&mut tx, &records)?;
            tx.commit().map_err(backend)
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn append_at_head(&mut self, batch: BatchAtHead) -> Result<AppendedAtHead, StoreError> {
        // The lock is held until commit, so each round trip inside it delays every other
        // writer: one simple query opens the transaction, spends the request ids (before the
        // lock, see `Plan::statement`), takes the lock and reads the head. The key is ours and
        // holds no quote (schema names are checked). The head is ordered by the number, not by
        // its text.
        let plan = pg_request_ids::Plan::of(&batch.drafts);
        let open = format!(
            "BEGIN; {} SELECT pg_advisory_xact_lock(hashtextextended('{}', 0))::text; \
             SELECT seq::text AS head_seq, current_hash FROM records ORDER BY records.seq DESC LIMIT 1",
            plan.statement(batch.request_id_window).unwrap_or_default(),
            self.lock_key
        );
        self.worker.run(move |client| {
            let outcome = seal_in_transaction(client, &open, plan, batch);
            if outcome.is_err() && !client.is_closed() {
                // Releases the lock; a transaction that never began makes this a no-op.
                let _ = client.batch_execute("ROLLBACK");
            }
            outcome
        })
    }

    fn read(&mut self, from: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        let from = to_i64(from)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.worker.run(move |client| {
            client
                .query(
                    "SELECT line FROM records WHERE seq >= $1 ORDER BY seq LIMIT $2",
                    &[&from, &limit],
                )
                .map_err(backend)?
                .iter()
                .map(|r| r.try_get::<_, String>(0).map_err(backend))
                .collect()
        })
    }

    fn hashes(&mut self, from: u64, limit: usize) -> Result<Vec<Digest32>, StoreError> {
        let first = to_i64(from)?;
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.worker.run(move |client| {
            client
                .query(
                    "SELECT seq, current_hash FROM records WHERE seq >= $1 ORDER BY seq LIMIT $2",
                    &[&first, &limit_sql],
                )
                .map_err(backend)?
                .iter()
                .map(|r| Ok((r.try_get::<_, i64>(0)?, r.try_get::<_, String>(1)?)))
                .collect::<Result<Vec<_>, postgres::Error>>()
                .map_err(backend)
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for (expected, (seq, text)) in (from..).zip(rows) {
            if u64::try_from(seq).ok() != Some(expected) {
                return Err(StoreError::Corrupt(format!(
                    "record {expected} is missing (found seq {seq})"
                )));
            }
            out.push(parse_hash(seq, &text)?);
        }
        Ok(out)
    }

    fn publish_key(&mut self, jwk: &Jwk) -> Result<(), StoreError> {
        let text = serde_json::to_string(jwk).map_err(|e| StoreError::Backend(e.to_string()))?;
        let kid = jwk.kid.clone();
        let stored = self.worker.run(move |client| {
            client
                .execute(
                    "INSERT INTO signing_keys (key_id, jwk) VALUES ($1, $2)
                     ON CONFLICT (key_id) DO NOTHING",
                    &[&kid, &text],
                )
                .map_err(backend)?;
            client
                .query_one("SELECT jwk FROM signing_keys WHERE key_id = $1", &[&kid])
                .and_then(|row| row.try_get::<_, String>(0))
                .map_err(backend)
        })?;
        crate::store::confirm_published(&stored, jwk)
    }

    fn keys(&mut self) -> Result<Vec<Jwk>, StoreError> {
        let texts = self.worker.run(|client| {
            client
                .query("SELECT jwk FROM signing_keys ORDER BY published_order", &[])
                .map_err(backend)?
                .iter()
                .map(|r| r.try_get::<_, String>(0).map_err(backend))
                .collect::<Result<Vec<_>, _>>()
        })?;
        texts
            .iter()
            .map(|text| {
                serde_json::from_str(text)
                    .map_err(|e| StoreError::Corrupt(format!("published key: {e}")))
            })
            .collect()
    }
}
