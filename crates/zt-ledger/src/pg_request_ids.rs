//! Request ids spent across the servers sharing a PostgreSQL audit store. Each server's own
//! replay guard sees only the ids it decided; this table, written in the same transaction as
//! the records that spend the ids and under the chain's lock (see
//! [`crate::AuditStore::append_at_head`]), makes an id spent by exactly one committed record
//! per window whichever server is asked, and never spent without its record.
//!
//! A row is keyed by the SHA-256 of the actor and the id, so whatever bytes an agent puts in
//! its id (PostgreSQL `text` refuses a NUL) the key is 32 bytes. It holds when the id stops
//! being spent, by the database's clock (the servers' clocks need not agree) and the window of
//! the server that spent it, so the longest window of the servers sharing the store holds.
//! Expired rows are deleted after the commit, outside the lock, a bounded number at a time,
//! passing over rows a batch holds ([`prune`]).

use std::collections::HashSet;
use std::time::Duration;

use postgres::GenericClient;
use zt_contract::{Digest32, RecordDraft};

use crate::pg_session::store_error as backend;
use crate::store::StoreError;

/// How often expired ids are deleted while fewer than [`PRUNE_CHUNK`] are found each time.
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The most rows one prune deletes; a full chunk has the next prune come after the next batch.
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

/// Spends the ids `drafts` carry for `window`, inside `client`'s transaction (which must hold
/// the chain's lock and commit only with the records sealed from [`Spent::to_seal`]).
pub(crate) fn spend(
    client: &mut impl GenericClient,
    drafts: Vec<RecordDraft>,
    window: Duration,
) -> Result<Spent, StoreError> {
    // Per draft, its key if it spends one that no earlier draft of the batch spends.
    let mut in_batch = HashSet::new();
    let keys: Vec<Option<Digest32>> = drafts
        .iter()
        .map(|draft| {
            let id = draft.spent_request_id()?;
            let key = key(&draft.actor, id);
            in_batch.insert(key).then_some(key)
        })
        .collect();
    let wanted: Vec<&[u8]> = keys.iter().flatten().map(|key| &key.0[..]).collect();
    let mut spent_now = HashSet::new();
    if !wanted.is_empty() {
        // A key is spent now when it is new, or when its row has expired (then taken over);
        // the rows returned are those this batch spends.
        let rows = client
            .query(
                "INSERT INTO request_ids (key, expires_at)
                 SELECT key, clock_timestamp() + make_interval(secs => $2)
                 FROM unnest($1::BYTEA[]) AS wanted(key)
                 ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at
                     WHERE request_ids.expires_at <= clock_timestamp()
                 RETURNING key",
                &[&wanted, &window.as_secs_f64()],
            )
            .map_err(backend)?;
        for row in &rows {
            let key: Vec<u8> = row.try_get(0).map_err(backend)?;
            spent_now.insert(key);
        }
    }
    let mut to_seal = Vec::with_capacity(drafts.len());
    let mut spent_before = Vec::new();
    for (place, (draft, key)) in drafts.into_iter().zip(keys).enumerate() {
        let spends = draft.spent_request_id().is_some();
        let spent_here = key.is_some_and(|key| spent_now.contains(&key.0[..]));
        if spends && !spent_here {
            spent_before.push((place, draft));
        } else {
            to_seal.push(draft);
        }
    }
    Ok(Spent {
        to_seal,
        spent_before,
    })
}

/// Deletes at most [`PRUNE_CHUNK`] expired ids, passing over any a batch holds (so the prune
/// never waits for the chain's lock, nor a batch for the prune); how many it deleted.
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
                "CREATE SCHEMA {0}; {1} SET search_path TO {0};",
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
    }
}
