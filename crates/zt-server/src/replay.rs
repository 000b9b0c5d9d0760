//! Replay protection: a `request_id` (client nonce) may be used once per actor within the
//! replay window. Seen ids are kept in memory and, at start, reloaded from the audit log's
//! records of the last window, so a restart does not reopen the window.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Seen `(actor, request_id)` pairs and when they stop mattering.
pub struct ReplayGuard {
    window: Duration,
    seen: Mutex<HashMap<(String, String), Instant>>,
}

impl ReplayGuard {
    /// A guard with the given window.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Records `request_id` for `actor`; false if it was already used inside the window.
    pub fn first_use(&self, actor: &str, request_id: &str) -> bool {
        self.first_use_at(actor, request_id, Instant::now())
    }

    /// As [`Self::first_use`], for an id seen `age` ago (used when reloading from the log).
    pub fn remember(&self, actor: &str, request_id: &str, age: Duration) {
        if let Some(seen_at) = Instant::now().checked_sub(age) {
            self.first_use_at(actor, request_id, seen_at);
        }
    }

    fn first_use_at(&self, actor: &str, request_id: &str, seen_at: Instant) -> bool {
        let expires = seen_at + self.window;
        if expires <= Instant::now() {
            return true;
        }
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (actor.to_string(), request_id.to_string());
        match seen.get(&key) {
            Some(until) if *until > Instant::now() => false,
            _ => {
                seen.insert(key, expires);
                true
            }
        }
    }

    /// Drops expired entries.
    pub fn expire(&self) {
        let now = Instant::now();
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, until| *until > now);
    }
}

/// Records read per page while reloading.
const RELOAD_PAGE: u64 = 1000;

/// Reloads the request ids of the last window from the log, newest first, stopping at the
/// first record older than the window. Called once at start.
pub fn reload_from_log(
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
            let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let field = |k: &str| record.get(k).and_then(serde_json::Value::as_str);
            let age = field("timestamp")
                .and_then(zt_ledger::clock::parse_wire)
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            if age > guard.window {
                return Ok(reloaded);
            }
            if let (Some(actor), Some(id)) = (field("actor"), field("request_id")) {
                guard.remember(actor, id, age);
                reloaded += 1;
            }
        }
        end = from;
    }
    Ok(reloaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_once_per_actor_within_the_window() {
        let guard = ReplayGuard::new(Duration::from_millis(200));
        assert!(guard.first_use("a", "n1"));
        assert!(!guard.first_use("a", "n1"));
        assert!(guard.first_use("b", "n1"), "per actor");
        std::thread::sleep(Duration::from_millis(250));
        guard.expire();
        assert!(guard.first_use("a", "n1"), "after the window");
    }

    #[test]
    fn remembered_ids_from_the_log_count() {
        let guard = ReplayGuard::new(Duration::from_secs(60));
        guard.remember("a", "old", Duration::from_secs(10));
        assert!(!guard.first_use("a", "old"));
        guard.remember("a", "older", Duration::from_secs(120));
        assert!(guard.first_use("a", "older"));
    }
}
