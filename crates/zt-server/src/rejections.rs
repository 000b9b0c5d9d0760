//! Requests refused before any decision (malformed JSON, wrong types, missing fields, oversize
//! bodies, bodies too slow, unknown routes, overload, missing or invalid credentials, rate
//! limits, a full replay guard, connections over the cap) are not logged one record each:
//! garbage must not be able to flood the audit log. They are counted in `/metrics` as they happen, and every
//! `--rejection-summary-interval` (and at shutdown) one `rejections` record with the counts
//! since the last summary is appended to the chain.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use zt_contract::RecordDraft;

/// How many causes there are.
const CAUSES: usize = 12;

/// Why a request was refused before a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionCause {
    /// Not JSON.
    MalformedJson,
    /// JSON of the wrong shape.
    InvalidRequest,
    /// `actor` or `action` missing.
    MissingField,
    /// Body over the limit.
    BodyTooLarge,
    /// No such route or method.
    UnknownRoute,
    /// Commit queue full.
    Overloaded,
    /// No valid credential.
    Unauthenticated,
    /// Per-actor rate limit exhausted (decisions, or refused admin access).
    RateLimited,
    /// The body did not arrive within the body timeout.
    BodyTimeout,
    /// The replay guard's memory budget is full.
    ReplayMemoryFull,
    /// A connection over `--max-connections` asked for more than `/health`.
    TooManyConnections,
    /// A request that may come from a web page of another host.
    ForeignPage,
}

impl RejectionCause {
    /// Every cause, in a fixed order.
    pub const ALL: [RejectionCause; CAUSES] = [
        RejectionCause::MalformedJson,
        RejectionCause::InvalidRequest,
        RejectionCause::MissingField,
        RejectionCause::BodyTooLarge,
        RejectionCause::UnknownRoute,
        RejectionCause::Overloaded,
        RejectionCause::Unauthenticated,
        RejectionCause::RateLimited,
        RejectionCause::BodyTimeout,
        RejectionCause::ReplayMemoryFull,
        RejectionCause::TooManyConnections,
        RejectionCause::ForeignPage,
    ];

    /// The label in metrics and summary records.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionCause::MalformedJson => "malformed_json",
            RejectionCause::InvalidRequest => "invalid_request",
            RejectionCause::MissingField => "missing_field",
            RejectionCause::BodyTooLarge => "body_too_large",
            RejectionCause::UnknownRoute => "unknown_route",
            RejectionCause::Overloaded => "overloaded",
            RejectionCause::Unauthenticated => "unauthenticated",
            RejectionCause::RateLimited => "rate_limited",
            RejectionCause::BodyTimeout => "body_timeout",
            RejectionCause::ReplayMemoryFull => "replay_memory_full",
            RejectionCause::TooManyConnections => "too_many_connections",
            RejectionCause::ForeignPage => "foreign_page",
        }
    }

    fn index(self) -> usize {
        match self {
            RejectionCause::MalformedJson => 0,
            RejectionCause::InvalidRequest => 1,
            RejectionCause::MissingField => 2,
            RejectionCause::BodyTooLarge => 3,
            RejectionCause::UnknownRoute => 4,
            RejectionCause::Overloaded => 5,
            RejectionCause::Unauthenticated => 6,
            RejectionCause::RateLimited => 7,
            RejectionCause::BodyTimeout => 8,
            RejectionCause::ReplayMemoryFull => 9,
            RejectionCause::TooManyConnections => 10,
            RejectionCause::ForeignPage => 11,
        }
    }
}

/// Counts since the last summary record.
#[derive(Debug, Default)]
pub(crate) struct RejectionCounter {
    pending: [AtomicU64; CAUSES],
}

impl RejectionCounter {
    /// Counts one rejection.
    pub(crate) fn count(&self, cause: RejectionCause) {
        if let Some(c) = self.pending.get(cause.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the counts so far (resetting them) as a summary record, or `None` if there were
    /// none. If the record then fails to commit, [`Self::restore`] puts the counts back.
    pub(crate) fn take_summary(&self) -> Option<RecordDraft> {
        let counts: BTreeMap<String, u64> = RejectionCause::ALL
            .iter()
            .filter_map(|c| {
                let n = self.pending.get(c.index())?.swap(0, Ordering::Relaxed);
                (n > 0).then(|| (c.as_str().to_string(), n))
            })
            .collect();
        if counts.is_empty() {
            return None;
        }
        Some(RecordDraft::rejections(counts))
    }

    /// Puts back the counts of a summary that could not be committed.
    pub(crate) fn restore(&self, summary: &RecordDraft) {
        for cause in RejectionCause::ALL {
            let n = summary
                .counts
                .as_ref()
                .and_then(|c| c.get(cause.as_str()))
                .copied()
                .unwrap_or(0);
            if let Some(c) = self.pending.get(cause.index()) {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}
