//! Reviewed policy changes. A proposal holds a validated policy set and the version it was
//! made against; approving it activates it atomically, and only if the active policy is still
//! that version (no lost updates). Proposals live in memory: a restart drops pending ones,
//! but every proposal, approval and activation is in the audit chain.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use zt_policy::{PolicyEngine, PolicyRequest};

use crate::recent::RecentRequest;
use crate::registry::Registry;

/// Where a proposal stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ProposalStatus {
    /// Waiting for approval.
    Pending,
    /// Approved and activated.
    Activated {
        /// Who approved it.
        approved_by: String,
    },
}

/// One proposed policy set.
#[derive(Clone)]
pub struct Proposal {
    /// `prop-N`.
    pub id: String,
    /// The admin who proposed it.
    pub proposed_by: String,
    /// When (wire timestamp).
    pub proposed_at: String,
    /// The active version it was made against.
    pub base_version: String,
    /// The proposed policy set, validated.
    pub engine: Arc<PolicyEngine>,
    /// Where it stands.
    pub status: ProposalStatus,
}

/// All proposals of this run.
#[derive(Default)]
pub struct Proposals {
    items: Mutex<BTreeMap<u64, Proposal>>,
}

impl Proposals {
    /// Files a proposal and returns it with its new id.
    pub fn add(
        &self,
        proposed_by: &str,
        proposed_at: String,
        base_version: &str,
        engine: Arc<PolicyEngine>,
    ) -> Proposal {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        let n = items.keys().next_back().map_or(1, |last| last + 1);
        let proposal = Proposal {
            id: format!("prop-{n}"),
            proposed_by: proposed_by.to_string(),
            proposed_at,
            base_version: base_version.to_string(),
            engine,
            status: ProposalStatus::Pending,
        };
        items.insert(n, proposal.clone());
        proposal
    }

    /// The proposal with this id.
    pub fn get(&self, id: &str) -> Option<Proposal> {
        let n = id.strip_prefix("prop-")?.parse::<u64>().ok()?;
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&n)
            .cloned()
    }

    /// Marks a proposal activated.
    pub fn mark_activated(&self, id: &str, approved_by: &str) {
        let Some(n) = id.strip_prefix("prop-").and_then(|n| n.parse::<u64>().ok()) else {
            return;
        };
        if let Some(p) = self
            .items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&n)
        {
            p.status = ProposalStatus::Activated {
                approved_by: approved_by.to_string(),
            };
        }
    }
}

/// How one replayed request is decided under a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The reason.
    pub reason: String,
}

/// A replayed request whose outcome the proposal would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The actor.
    pub actor: String,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// Under the active policy.
    pub active: Outcome,
    /// Under the proposal.
    pub proposed: Outcome,
}

fn outcome(engine: &PolicyEngine, registry: &Registry, r: &RecentRequest) -> Outcome {
    let attributes = registry.attributes(&r.actor).unwrap_or_default().to_map();
    let mut asked = PolicyRequest::new(&r.actor, &r.action, &r.resource)
        .with_actor_attributes(&attributes)
        .with_resource_attributes(&r.resource_attributes);
    if let Some(context) = &r.context {
        asked = asked.with_context(context);
    }
    let decided = engine.decide(&asked);
    Outcome {
        decision: if decided.allowed { "allow" } else { "deny" },
        reason: decided.reason,
    }
}

/// Replays `requests` under both policies and returns those decided differently.
pub fn impact(
    active: &PolicyEngine,
    proposed: &PolicyEngine,
    registry: &Registry,
    requests: &[RecentRequest],
) -> Vec<Change> {
    requests
        .iter()
        .filter_map(|r| {
            let (before, after) = (outcome(active, registry, r), outcome(proposed, registry, r));
            (before != after).then(|| Change {
                actor: r.actor.clone(),
                action: r.action.clone(),
                resource: r.resource.clone(),
                active: before,
                proposed: after,
            })
        })
        .collect()
}

/// A unified diff of two policy texts.
pub fn text_diff(active: &str, proposed: &str) -> String {
    similar::TextDiff::from_lines(active, proposed)
        .unified_diff()
        .context_radius(3)
        .header("active", "proposed")
        .to_string()
}
