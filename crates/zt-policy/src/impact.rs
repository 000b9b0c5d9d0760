//! The impact of a policy change: requests replayed under two policy sets, and which are
//! decided differently. One path for the server's proposals (recent requests) and for
//! `zt policy diff --against` (an audit log), with one owned request type for everything that
//! keeps or reads requests (the recent-request buffer, policy test cases, test vectors).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{PolicyDecision, PolicyEngine, PolicyRequest};

/// A request as the policy engine sees it, owned: kept, read from a file, replayed. Read
/// from JSON strictly (unknown keys refused); every field but `actor` and `action` may be
/// left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedPolicyRequest {
    /// The actor.
    pub actor: String,
    /// The actor's registry attributes.
    #[serde(default)]
    pub actor_attributes: BTreeMap<String, String>,
    /// The actor's registry groups (`principal in Group::"<name>"`).
    #[serde(default)]
    pub actor_groups: Vec<String>,
    /// The action.
    pub action: String,
    /// The resource (`""` when the request names none).
    #[serde(default)]
    pub resource: String,
    /// The resource's attributes.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    /// The request context.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// When it is decided, in seconds since the Unix epoch (`context.request_time`); now
    /// when absent.
    #[serde(default)]
    pub request_time: Option<u64>,
}

impl OwnedPolicyRequest {
    /// The request to hand the engine.
    pub fn as_request(&self) -> PolicyRequest<'_> {
        let mut request = PolicyRequest::new(&self.actor, &self.action, &self.resource)
            .with_actor_attributes(&self.actor_attributes)
            .with_actor_groups(&self.actor_groups)
            .with_resource_attributes(&self.resource_attributes);
        if let Some(context) = &self.context {
            request = request.with_context(context);
        }
        if let Some(seconds) = self.request_time {
            request = request.at(UNIX_EPOCH + Duration::from_secs(seconds));
        }
        request
    }

    /// Decided by `engine`.
    pub fn decide(&self, engine: &PolicyEngine) -> PolicyDecision {
        engine.decide(&self.as_request())
    }
}

/// How one policy set decides one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Outcome {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The reason.
    pub reason: String,
    /// The deciding policies.
    pub policies: Vec<String>,
}

impl Outcome {
    /// The outcome of a decision.
    pub fn of(decision: PolicyDecision) -> Self {
        Self {
            decision: decision.word(),
            reason: decision.reason,
            policies: decision.determining_policies,
        }
    }

    /// True if `other` decides the same way for the same reason (the deciding policies may
    /// differ).
    pub fn same_as(&self, other: &Outcome) -> bool {
        self.decision == other.decision && self.reason == other.reason
    }
}

/// One request under the policy in force and under the one proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compared {
    /// Under the policy in force.
    pub before: Outcome,
    /// Under the proposed policy.
    pub after: Outcome,
}

impl Compared {
    /// `request` decided by both.
    pub fn of(before: &PolicyEngine, after: &PolicyEngine, request: &PolicyRequest<'_>) -> Self {
        Self {
            before: Outcome::of(before.decide(request)),
            after: Outcome::of(after.decide(request)),
        }
    }

    /// True if the decision or its reason changes.
    pub fn changed(&self) -> bool {
        !self.before.same_as(&self.after)
    }
}

/// A replayed request the proposed policy decides differently.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed<'r> {
    /// The request.
    pub request: &'r OwnedPolicyRequest,
    /// How each policy decides it.
    pub outcomes: Compared,
}

/// Replays `requests` under both policies and returns those decided differently, in order.
pub fn impact<'r>(
    before: &PolicyEngine,
    after: &PolicyEngine,
    requests: impl IntoIterator<Item = &'r OwnedPolicyRequest>,
) -> Vec<Changed<'r>> {
    requests
        .into_iter()
        .filter_map(|request| {
            let outcomes = Compared::of(before, after, &request.as_request());
            outcomes.changed().then_some(Changed { request, outcomes })
        })
        .collect()
}

/// A unified diff of two policy texts.
pub fn text_diff(before: &str, after: &str, before_name: &str, after_name: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(before_name, after_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(action: &str) -> OwnedPolicyRequest {
        OwnedPolicyRequest {
            actor: "bot".into(),
            action: action.into(),
            ..OwnedPolicyRequest::default()
        }
    }

    #[test]
    fn only_requests_decided_differently_are_listed() {
        let before = PolicyEngine::default_policy();
        let rule = crate::allow_rule("docs.read", "reading is fine");
        let after = PolicyEngine::from_cedar(&format!("{}\n{rule}", before.source())).unwrap();
        let requests = [request("docs.read"), request("docs.write")];
        let changed = impact(&before, &after, &requests);
        assert_eq!(changed.len(), 1);
        let only = &changed[0];
        assert_eq!(only.request.action, "docs.read");
        assert_eq!(only.outcomes.before.decision, "deny");
        assert_eq!(only.outcomes.after.decision, "allow");
        assert_eq!(only.outcomes.after.reason, "reading is fine");
        assert!(impact(&before, &before, &requests).is_empty());
        assert!(text_diff(before.source(), after.source(), "a", "b").contains("docs.read"));
    }

    #[test]
    fn requests_are_read_strictly() {
        let read: OwnedPolicyRequest =
            serde_json::from_str(r#"{"actor": "a", "action": "x", "request_time": 7}"#).unwrap();
        assert_eq!(read.request_time, Some(7));
        assert_eq!(read.resource, "");
        assert!(serde_json::from_str::<OwnedPolicyRequest>(
            r#"{"actor": "a", "action": "x", "extra": 1}"#
        )
        .is_err());
    }
}
