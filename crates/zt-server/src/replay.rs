//! Replay protection: a `request_id` (client nonce) may be used once per actor within the
//! replay window. The actor is the one the decision record names: the authenticated actor
//! (the credential's, even when the body claims another), or the body's under `--auth none`.
//!
//! An id is spent only by a committed decision record: the decision path reserves it (so two
//! concurrent uses cannot both pass), then releases it if the record is not committed (queue
//! full, audit log unavailable). At start the ids are reloaded from the log's records of the
//! last window, keyed the same way, so a restart neither reopens nor extends a window.
//!
//! Servers sharing one PostgreSQL store (replicas) each keep their own guard for the ids they
//! decide; the store spends every id again in the transaction that commits its record
//! (`zt_ledger::AuditStore::append_at_head`). An id another replica spent
//! first comes back as `LedgerError::RequestIdSpent`, and the decision path records a replay
//! instead, keeping the id reserved here: two replicas given the same id, however close
//! together, decide it once.
//!
//! Memory is bounded: ids are at most [`MAX_REQUEST_ID_BYTES`] long, and once the ids kept
//! reach the memory budget (`--replay-memory`), a new id is refused (503) until old ones
//! expire, rather than kept without bound.
//!
//! Work is bounded too: the ids are also kept in expiry order, so each reservation forgets
//! the expired ones from the front, one step each, and a full guard refuses in constant work.
//! The one full scan (dropping what releases left behind in that order) is housekeeping's.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Longest `request_id` accepted, in bytes.
pub(crate) const MAX_REQUEST_ID_BYTES: usize = 256;

/// What one kept id costs besides its text: the map slot (96), its place in the expiry order
/// (48), the two shared strings' counts (32).
const ENTRY_OVERHEAD_BYTES: usize = 176;

/// Why a `request_id` cannot be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayRefusal {
    /// Already used (or reserved by a request still in flight) within the window.
    AlreadyUsed,
    /// The ids kept fill the memory budget.
    Full,
}

/// Seen `(actor, request_id)` pairs and when they stop mattering.
pub(crate) struct ReplayGuard {
    window: Duration,
    memory_budget: usize,
    seen: Mutex<Seen>,
    /// Set once the budget was found full, so the warning is logged once per episode.
    full: AtomicBool,
}

impl std::fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("window", &self.window)
            .field("memory_budget", &self.memory_budget)
            .finish_non_exhaustive()
    }
}

/// An actor and one of its request ids, shared by the map and the expiry order.
type Key = (Arc<str>, Arc<str>);

fn key(actor: &str, request_id: &str) -> Key {
    (Arc::from(actor), Arc::from(request_id))
}

#[derive(Default)]
struct Seen {
    /// When each kept id stops mattering.
    expiries: HashMap<Key, Instant>,
    /// The same ids, soonest expiry first (a reservation expires at insertion + the window,
    /// so it goes last). An entry whose id was released, or kept again with another expiry,
    /// since is stale: told by its expiry, skipped when reached, dropped by [`Seen::compact`].
    by_expiry: VecDeque<(Instant, Key)>,
    /// How many entries of `by_expiry` are stale.
    stale: usize,
    /// What `by_expiry`'s entries are counted as, stale ones included: a stale entry still
    /// holds its id until it is dropped, so it counts against the budget until then.
    bytes: usize,
    /// Entries of `by_expiry` looked at, to test that the work per call is bounded.
    #[cfg(test)]
    visits: usize,
}

impl Seen {
    /// Forgets the ids expired by `now`: they are at the front, so this looks at those and
    /// one more.
    fn expire_front(&mut self, now: Instant) {
        while let Some((until, _)) = self.by_expiry.front() {
            #[cfg(test)]
            {
                self.visits += 1;
            }
            if *until > now {
                break;
            }
            if let Some((until, key)) = self.by_expiry.pop_front() {
                self.forget(until, &key);
            }
        }
    }

    /// An entry taken from `by_expiry`: its id is forgotten unless kept again since.
    fn forget(&mut self, until: Instant, key: &Key) {
        self.bytes = self.bytes.saturating_sub(entry_cost(&key.0, &key.1));
        if self.expiries.get(key) == Some(&until) {
            self.expiries.remove(key);
        } else {
            self.stale = self.stale.saturating_sub(1);
        }
    }

    /// Drops the stale entries of `by_expiry`: a full scan, for housekeeping, or when the
    /// budget is found full and a quarter of the entries or more are stale.
    fn compact(&mut self) {
        if self.stale == 0 {
            return;
        }
        let Self {
            expiries,
            by_expiry,
            bytes,
            ..
        } = self;
        by_expiry.retain(|(until, key)| {
            let live = expiries.get(key) == Some(until);
            if !live {
                *bytes = bytes.saturating_sub(entry_cost(&key.0, &key.1));
            }
            live
        });
        self.stale = 0;
    }

    /// Whether `key` is kept (call [`Seen::expire_front`] first: expired ids may linger).
    fn is_used(&self, key: &Key, now: Instant) -> bool {
        self.expiries.get(key).is_some_and(|until| *until > now)
    }

    fn insert(&mut self, key: Key, expires: Instant) {
        self.bytes = self.bytes.saturating_add(entry_cost(&key.0, &key.1));
        if self.expiries.insert(key.clone(), expires).is_some() {
            // Kept again: its earlier place in the order is stale.
            self.stale = self.stale.saturating_add(1);
        }
        // A reservation goes last; an id remembered from the log may be older than some kept.
        if self
            .by_expiry
            .back()
            .is_none_or(|(last, _)| *last <= expires)
        {
            self.by_expiry.push_back((expires, key));
        } else {
            let at = self
                .by_expiry
                .partition_point(|(until, _)| *until <= expires);
            self.by_expiry.insert(at, (expires, key));
        }
    }

    /// Forgets `key` (a reservation given back); its place in the order turns stale, and
    /// counts until it is dropped.
    fn remove(&mut self, key: &Key) {
        if self.expiries.remove(key).is_some() {
            self.stale = self.stale.saturating_add(1);
        }
    }
}

fn entry_cost(actor: &str, id: &str) -> usize {
    actor.len() + id.len() + ENTRY_OVERHEAD_BYTES
}

/// A reserved id (see [`ReplayGuard::reserve`]).
pub(crate) struct Reservation<'g> {
    guard: &'g ReplayGuard,
    key: Option<(String, String)>,
}

impl Reservation<'_> {
    /// Its record is being queued (nothing awaits between this and the queueing): the id
    /// stays reserved even if the request is abandoned now, as the record commits anyway.
    /// Returns the actor and id, to [`ReplayGuard::release`] if the record is refused.
    pub(crate) fn queued(mut self) -> Option<(String, String)> {
        self.key.take()
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some((actor, id)) = self.key.take() {
            self.guard.release(&actor, &id);
        }
    }
}

impl ReplayGuard {
    /// A guard with the given window that keeps at most about `memory_budget` bytes of ids.
    pub(crate) fn new(window: Duration, memory_budget: usize) -> Self {
        Self {
            window,
            memory_budget,
            seen: Mutex::new(Seen::default()),
            full: AtomicBool::new(false),
        }
    }

    /// Reserves `request_id` for `actor` from now until the window ends. The reservation is
    /// given back when dropped, unless [`Reservation::queued`] says its record was queued: a
    /// request abandoned before that (its client gone while the decision was evaluated) must
    /// not spend the id without a record.
    pub(crate) fn reserve(
        &self,
        actor: &str,
        request_id: &str,
    ) -> Result<Reservation<'_>, ReplayRefusal> {
        self.reserve_key(actor, request_id)?;
        Ok(Reservation {
            guard: self,
            key: Some((actor.to_string(), request_id.to_string())),
        })
    }

    fn reserve_key(&self, actor: &str, request_id: &str) -> Result<(), ReplayRefusal> {
        let now = Instant::now();
        let key = key(actor, request_id);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        // Amortized one step per reservation: each entry is popped once.
        seen.expire_front(now);
        if seen.is_used(&key, now) {
            return Err(ReplayRefusal::AlreadyUsed);
        }
        let cost = entry_cost(actor, request_id);
        if seen.bytes.saturating_add(cost) > self.memory_budget
            && seen.stale.saturating_mul(4) >= seen.by_expiry.len()
        {
            // Ids given back hold a quarter of the room or more: drop their places, then look
            // again. Each scan of n places drops n/4 or more, each made by one request, so the
            // work stays a few places per request however full the guard.
            seen.compact();
        }
        if seen.bytes.saturating_add(cost) > self.memory_budget {
            if !self.full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    budget_bytes = self.memory_budget,
                    "the replay guard is full: requests with a new request_id get 503 until old ids expire"
                );
            }
            return Err(ReplayRefusal::Full);
        }
        seen.insert(key, now + self.window);
        Ok(())
    }

    /// Gives back a reservation whose record was not committed: the id was not spent.
    pub(crate) fn release(&self, actor: &str, request_id: &str) {
        let key = key(actor, request_id);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.remove(&key);
    }

    /// Marks `request_id` used by `actor` `age` ago (reloading from the log). Not bounded by
    /// the memory budget: these ids were accepted before the restart and must stay spent.
    pub(crate) fn remember(&self, actor: &str, request_id: &str, age: Duration) {
        let now = Instant::now();
        let Some(expires) = now.checked_sub(age).map(|at| at + self.window) else {
            return;
        };
        if expires <= now {
            return;
        }
        let key = key(actor, request_id);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if !seen.is_used(&key, now) {
            seen.insert(key, expires);
        }
    }

    /// Drops expired entries, and the order's stale ones (the full scan, every
    /// housekeeping round at most).
    pub(crate) fn expire(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.expire_front(Instant::now());
        seen.compact();
        if seen.bytes < self.memory_budget / 2 && self.full.swap(false, Ordering::Relaxed) {
            tracing::info!("the replay guard has room again");
        }
    }

    /// Bytes the kept ids are counted as.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }

    /// Entries of the expiry order looked at so far, and the order's length.
    #[cfg(test)]
    fn visits(&self) -> (usize, usize) {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        (seen.visits, seen.by_expiry.len())
    }
}

/// Records read per page while reloading.
pub(crate) const RELOAD_PAGE: u64 = 1000;

/// Reloads the request ids of the last window from the log, newest first, stopping at the
/// first record older than the window. Called once at start.
pub(crate) fn reload_from_log(
    guard: &ReplayGuard,
    ledger: &zt_ledger::Ledger,
) -> Result<usize, zt_ledger::StoreError> {
    let Some(head) = ledger.head() else {
        return Ok(0);
    };
    let now = std::time::SystemTime::now();
    let mut reloaded = 0;
    let mut end = head.seq + 1;
    while end > 0 {
        let from = end.saturating_sub(RELOAD_PAGE);
        let lines = ledger.read(from, usize::try_from(end - from).unwrap_or(usize::MAX))?;
        for line in lines.iter().rev() {
            match spent_id(line, now, guard.window) {
                Spent::Id { actor, id, age } => {
                    guard.remember(&actor, &id, age);
                    reloaded += 1;
                }
                Spent::Nothing => {}
                Spent::OutsideTheWindow => return Ok(reloaded),
            }
        }
        end = from;
    }
    Ok(reloaded)
}

/// What a stored record says of request ids.
enum Spent {
    /// It spent `id` for `actor`, `age` ago.
    Id {
        actor: String,
        id: String,
        age: Duration,
    },
    /// It spent none (no id, or it refused a replay, which spends nothing).
    Nothing,
    /// It is older than the window.
    OutsideTheWindow,
}

/// The fields of a stored record that tell whether it spent a request id (the rest is skipped
/// unread).
#[derive(serde::Deserialize)]
struct IdFields {
    actor: Option<String>,
    request_id: Option<String>,
    decision: Option<zt_contract::Decision>,
    reason: Option<String>,
    timestamp: Option<String>,
}

fn spent_id(line: &str, now: std::time::SystemTime, window: Duration) -> Spent {
    let Ok(record) = serde_json::from_str::<IdFields>(line) else {
        return Spent::Nothing;
    };
    let age = record
        .timestamp
        .as_deref()
        .and_then(zt_ledger::clock::parse_wire)
        .and_then(|t| now.duration_since(t).ok())
        .unwrap_or_default();
    if age > window {
        return Spent::OutsideTheWindow;
    }
    // A replay's denial carries the id it refused without spending it again.
    match (record.actor, record.request_id) {
        (Some(actor), Some(id))
            if zt_contract::spends_request_id(
                &id,
                record.decision.unwrap_or_default(),
                record.reason.as_deref().unwrap_or_default(),
            ) =>
        {
            Spent::Id { actor, id, age }
        }
        _ => Spent::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: usize = 1 << 20;

    /// Reserves the id as a request whose record was queued does.
    fn spend(guard: &ReplayGuard, actor: &str, id: &str) -> Result<(), ReplayRefusal> {
        guard.reserve(actor, id).map(|reservation| {
            reservation.queued();
        })
    }

    #[test]
    fn a_reservation_dropped_before_its_record_was_queued_is_given_back() {
        let guard = ReplayGuard::new(Duration::from_secs(60), BUDGET);
        let abandoned = guard.reserve("a", "n1").map(drop);
        assert_eq!(abandoned, Ok(()));
        // Its place in the expiry order counts until housekeeping drops it.
        guard.expire();
        assert_eq!(guard.bytes(), 0);
        assert!(
            guard.reserve("a", "n1").is_ok(),
            "the retry is not a replay"
        );
        // Once queued, it stays spent, however the request ends.
        let queued = guard.reserve("a", "n2").ok().and_then(Reservation::queued);
        assert_eq!(queued, Some(("a".to_string(), "n2".to_string())));
        assert_eq!(
            guard.reserve("a", "n2").err(),
            Some(ReplayRefusal::AlreadyUsed)
        );
    }

    #[test]
    fn a_nonce_is_good_once_per_actor_within_the_window() {
        let guard = ReplayGuard::new(Duration::from_millis(200), BUDGET);
        assert_eq!(spend(&guard, "a", "n1"), Ok(()));
        assert_eq!(spend(&guard, "a", "n1"), Err(ReplayRefusal::AlreadyUsed));
        assert_eq!(spend(&guard, "b", "n1"), Ok(()), "per actor");
        std::thread::sleep(Duration::from_millis(250));
        guard.expire();
        assert_eq!(spend(&guard, "a", "n1"), Ok(()), "after the window");
    }

    #[test]
    fn a_released_reservation_is_not_spent() {
        let guard = ReplayGuard::new(Duration::from_secs(60), BUDGET);
        assert_eq!(spend(&guard, "a", "n1"), Ok(()));
        guard.release("a", "n1");
        guard.expire();
        assert_eq!(guard.bytes(), 0);
        assert_eq!(spend(&guard, "a", "n1"), Ok(()));
    }

    /// Ids given back (their records refused) leave places in the expiry order that hold their
    /// strings until dropped: they count against the budget, and a full guard where they are a
    /// quarter or more drops them before refusing, so refused requests cannot grow the guard
    /// past its budget, nor make each request scan it.
    #[test]
    fn ids_given_back_count_until_dropped_and_never_fill_the_guard() {
        let one = entry_cost("a", "n00000");
        let guard = ReplayGuard::new(Duration::from_secs(60), 10 * one);
        for i in 0..1_000 {
            let id = format!("n{i:05}");
            assert_eq!(spend(&guard, "a", &id), Ok(()), "{id}");
            guard.release("a", &id);
            let (_, places) = guard.visits();
            assert!(guard.bytes() <= 10 * one, "{} bytes", guard.bytes());
            assert!(places <= 10, "{places} places kept");
        }
        // Spent ids fill it; then it refuses.
        for i in 0..10 {
            assert_eq!(spend(&guard, "b", &format!("m{i:05}")), Ok(()));
        }
        assert_eq!(spend(&guard, "b", "m99999"), Err(ReplayRefusal::Full));
    }

    #[test]
    fn remembered_ids_from_the_log_count() {
        let guard = ReplayGuard::new(Duration::from_secs(60), BUDGET);
        guard.remember("a", "old", Duration::from_secs(10));
        assert_eq!(spend(&guard, "a", "old"), Err(ReplayRefusal::AlreadyUsed));
        guard.remember("a", "older", Duration::from_secs(120));
        assert_eq!(spend(&guard, "a", "older"), Ok(()));
    }

    #[test]
    fn the_memory_budget_refuses_new_ids_until_old_ones_expire() {
        let one = entry_cost("a", "n0");
        let guard = ReplayGuard::new(Duration::from_millis(200), 3 * one);
        for id in ["n0", "n1", "n2"] {
            assert_eq!(spend(&guard, "a", id), Ok(()));
        }
        assert_eq!(spend(&guard, "a", "n3"), Err(ReplayRefusal::Full));
        assert_eq!(
            spend(&guard, "a", "n0"),
            Err(ReplayRefusal::AlreadyUsed),
            "a used id is still a replay when full"
        );
        assert_eq!(guard.bytes(), 3 * one);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(spend(&guard, "a", "n3"), Ok(()), "expired ids make room");
        assert_eq!(guard.bytes(), one);
    }

    /// Once full, a request with a new id is refused without a scan of every id kept: the
    /// work per call stays the same however many ids are kept (before, each one ran a
    /// `retain` over all of them, under the guard's lock, on an async worker).
    #[test]
    fn a_full_guard_refuses_in_constant_work() {
        const KEPT: usize = 20_000;
        const REFUSED: usize = 1_000;
        let one = entry_cost("a", "n00000");
        let guard = ReplayGuard::new(Duration::from_secs(60), KEPT * one);
        for i in 0..KEPT {
            assert_eq!(spend(&guard, "a", &format!("n{i:05}")), Ok(()));
        }
        let (before, _) = guard.visits();
        for i in 0..REFUSED {
            assert_eq!(
                spend(&guard, "a", &format!("m{i:05}")),
                Err(ReplayRefusal::Full)
            );
        }
        let (after, _) = guard.visits();
        let per_call = (after - before) / REFUSED;
        assert!(per_call <= 1, "{per_call} ids looked at per refusal");
    }

    /// Released and kept-again ids leave stale places in the expiry order: they never forget
    /// a later reservation of the same id, and housekeeping drops them.
    #[test]
    fn stale_places_in_the_expiry_order_forget_nothing_kept() {
        let ms = Duration::from_millis;
        let one = entry_cost("a", "n1");
        let guard = ReplayGuard::new(ms(400), 10 * one);
        assert_eq!(spend(&guard, "a", "n1"), Ok(()));
        guard.release("a", "n1");
        std::thread::sleep(ms(200));
        // Kept again, expiring 200 ms after its first place does.
        assert_eq!(spend(&guard, "a", "n1"), Ok(()));
        // An id reloaded from the log, expiring before both: placed first.
        guard.remember("b", "n2", ms(300));
        assert_eq!(guard.visits().1, 3);
        std::thread::sleep(ms(250));
        // The first place and the reloaded id have expired; the second reservation holds.
        assert_eq!(spend(&guard, "a", "n1"), Err(ReplayRefusal::AlreadyUsed));
        assert_eq!(spend(&guard, "b", "n2"), Ok(()));
        assert_eq!(guard.bytes(), 2 * one);
        guard.release("b", "n2");
        assert_eq!(guard.visits().1, 2, "one stale place left");
        assert_eq!(guard.bytes(), 2 * one, "it counts until dropped");
        guard.expire();
        assert_eq!(guard.visits().1, 1, "housekeeping dropped it");
        assert_eq!(guard.bytes(), one);
        std::thread::sleep(ms(250));
        guard.expire();
        assert_eq!((guard.bytes(), guard.visits().1), (0, 0));
    }
}
