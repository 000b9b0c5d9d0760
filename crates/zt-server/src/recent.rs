//! The most recent decision requests, kept so a policy proposal can be replayed against real
//! traffic: "what would this change have decided differently?" (`zt_policy::impact`). They
//! are kept without the actor's attributes, which are read from the registry when replayed.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use zt_policy::OwnedPolicyRequest;

/// How many requests are kept.
pub(crate) const RECENT_CAPACITY: usize = 1000;

/// A bounded window of recent requests, newest last.
#[derive(Default)]
pub(crate) struct RecentRequests {
    items: Mutex<VecDeque<OwnedPolicyRequest>>,
}

impl std::fmt::Debug for RecentRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentRequests").finish_non_exhaustive()
    }
}

impl RecentRequests {
    /// Remembers one request, forgetting the oldest past [`RECENT_CAPACITY`].
    pub(crate) fn push(&self, request: OwnedPolicyRequest) {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        if items.len() == RECENT_CAPACITY {
            items.pop_front();
        }
        items.push_back(request);
    }

    /// The last `n` requests, oldest first.
    pub(crate) fn last(&self, n: usize) -> Vec<OwnedPolicyRequest> {
        let items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        items
            .iter()
            .skip(items.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(i: usize) -> OwnedPolicyRequest {
        OwnedPolicyRequest {
            actor: "a".into(),
            action: format!("x{i}"),
            ..OwnedPolicyRequest::default()
        }
    }

    #[test]
    fn keeps_the_newest_within_capacity() {
        let recent = RecentRequests::default();
        for i in 0..RECENT_CAPACITY + 5 {
            recent.push(request(i));
        }
        let all = recent.last(usize::MAX);
        assert_eq!(all.len(), RECENT_CAPACITY);
        assert_eq!(all[0].action, "x5");
        assert_eq!(
            recent
                .last(2)
                .iter()
                .map(|r| r.action.as_str())
                .collect::<Vec<_>>(),
            ["x1003", "x1004"]
        );
    }
}
