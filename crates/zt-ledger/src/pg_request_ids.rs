//! Request ids spent across the servers sharing a PostgreSQL audit store. Each server's own
//! replay guard sees only the ids it decided; this table, written in the same transaction as
//! the records that spend the ids and under the chain's lock (see
//! [`crate::AuditStore::append_at_head`]), makes an id spent by exactly one committed record
//! per window whichever server is asked, and never spent without its record.
//!
//! Times are the database's clock, so the servers' clocks need not agree. Rows older than the
//! window are deleted at most every [`PRUNE_EVERY`]; a server with a shorter window than
//! another prunes their shared ids sooner, so the servers sharing a store should share one.

use std::collections::HashSet;
use std::time::Duration;

use postgres::GenericClient;
use zt_contract::RecordDraft;

use crate::pg_session::store_error as backend;
use crate::store::StoreError;

/// How often expired ids are deleted.
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The table of spent ids (and its index for pruning), in `schema`.
pub(crate) fn create_table_sql(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.request_ids (
             actor TEXT NOT NULL,
             request_id TEXT NOT NULL,
             spent_at TIMESTAMPTZ NOT NULL,
             PRIMARY KEY (actor, request_id)
         );
         CREATE INDEX IF NOT EXISTS request_ids_spent_at ON {schema}.request_ids (spent_at);"
    )
}

/// The batch once its ids are spent: the drafts to seal, in order, and those left out (with
/// their place) because a committed record, or an earlier draft of the batch, spent their id
/// within the window.
pub(crate) struct Spent {
    pub(crate) to_seal: Vec<RecordDraft>,
    pub(crate) spent_before: Vec<(usize, RecordDraft)>,
}

/// Spends the ids `drafts` carry, inside `client`'s transaction (which must hold the chain's
/// lock and commit only with the records sealed from [`Spent::to_seal`]).
pub(crate) fn spend(
    client: &mut impl GenericClient,
    drafts: Vec<RecordDraft>,
    window: Duration,
) -> Result<Spent, StoreError> {
    let mut actors = Vec::new();
    let mut ids = Vec::new();
    let mut repeated = vec![false; drafts.len()];
    let mut in_batch = HashSet::new();
    for (place, draft) in drafts.iter().enumerate() {
        let Some(id) = draft.spent_request_id() else {
            continue;
        };
        if in_batch.insert((draft.actor.as_str(), id)) {
            actors.push(draft.actor.as_str());
            ids.push(id);
        } else if let Some(repeat) = repeated.get_mut(place) {
            *repeat = true;
        }
    }
    if actors.is_empty() {
        return Ok(Spent {
            to_seal: drafts,
            spent_before: Vec::new(),
        });
    }
    // An id is spent now when it is new, or when its row is older than the window (then
    // taken over); the rows returned are the ids this batch spends.
    let rows = client
        .query(
            "INSERT INTO request_ids (actor, request_id, spent_at)
             SELECT actor, request_id, clock_timestamp()
             FROM unnest($1::TEXT[], $2::TEXT[]) AS wanted(actor, request_id)
             ON CONFLICT (actor, request_id) DO UPDATE SET spent_at = EXCLUDED.spent_at
                 WHERE request_ids.spent_at <= EXCLUDED.spent_at - make_interval(secs => $3)
             RETURNING actor, request_id",
            &[&actors, &ids, &window.as_secs_f64()],
        )
        .map_err(backend)?;
    let mut spent_now = HashSet::with_capacity(rows.len());
    for row in &rows {
        let actor: String = row.try_get(0).map_err(backend)?;
        let id: String = row.try_get(1).map_err(backend)?;
        spent_now.insert((actor, id));
    }
    let mut to_seal = Vec::with_capacity(drafts.len());
    let mut spent_before = Vec::new();
    for (place, draft) in drafts.into_iter().enumerate() {
        let taken = draft.spent_request_id().is_some_and(|id| {
            repeated.get(place).copied().unwrap_or(true)
                || !spent_now.contains(&(draft.actor.clone(), id.to_string()))
        });
        if taken {
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

/// Deletes the ids spent longer than `window` ago.
pub(crate) fn prune(client: &mut impl GenericClient, window: Duration) -> Result<u64, StoreError> {
    client
        .execute(
            "DELETE FROM request_ids WHERE spent_at < clock_timestamp() - make_interval(secs => $1)",
            &[&window.as_secs_f64()],
        )
        .map_err(backend)
}
