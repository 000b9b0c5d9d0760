//! What is asked, and what is answered.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Map, Value};

static NO_ATTRIBUTES: BTreeMap<String, String> = BTreeMap::new();

/// One question: may `actor` take `action` on `resource`, now?
#[derive(Debug, Clone, Copy)]
pub struct PolicyRequest<'a> {
    /// The actor: the principal `Agent::"<actor>"`.
    pub actor: &'a str,
    /// The actor's registry attributes (`type`, `workspace`, `trust_level`).
    pub actor_attributes: &'a BTreeMap<String, String>,
    /// The actor's registry groups: the principal is `in Group::"<name>"` for each.
    pub actor_groups: &'a [String],
    /// The dotted action name: `Action::"<action>"`, in all its wildcard groups.
    pub action: &'a str,
    /// The resource id: `Resource::"<resource>"` (`""` when the request names none).
    pub resource: &'a str,
    /// The resource's attributes from the request (`type`, `environment`).
    pub resource_attributes: &'a BTreeMap<String, String>,
    /// The request's context object, if it has one.
    pub context: Option<&'a Map<String, Value>>,
    /// When the request is decided; policies see it as `context.request_time`, in whole
    /// seconds since the Unix epoch.
    pub request_time: SystemTime,
}

impl<'a> PolicyRequest<'a> {
    /// A request with no attributes and no context, decided now.
    pub fn new(actor: &'a str, action: &'a str, resource: &'a str) -> Self {
        Self {
            actor,
            actor_attributes: &NO_ATTRIBUTES,
            actor_groups: &[],
            action,
            resource,
            resource_attributes: &NO_ATTRIBUTES,
            context: None,
            request_time: SystemTime::now(),
        }
    }

    /// With the actor's registry attributes.
    pub fn with_actor_attributes(mut self, attributes: &'a BTreeMap<String, String>) -> Self {
        self.actor_attributes = attributes;
        self
    }

    /// With the actor's registry groups.
    pub fn with_actor_groups(mut self, groups: &'a [String]) -> Self {
        self.actor_groups = groups;
        self
    }

    /// With the resource's attributes.
    pub fn with_resource_attributes(mut self, attributes: &'a BTreeMap<String, String>) -> Self {
        self.resource_attributes = attributes;
        self
    }

    /// With the request's context object.
    pub fn with_context(mut self, context: &'a Map<String, Value>) -> Self {
        self.context = Some(context);
        self
    }

    /// Decided at `time` instead of now.
    pub fn at(mut self, time: SystemTime) -> Self {
        self.request_time = time;
        self
    }
}

/// The answer, with its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDecision {
    /// True when the action may run.
    pub allowed: bool,
    /// Human reason; never empty. The deciding policy's `@reason`, a default naming it, a
    /// failure, or `action is not in the allow list`.
    pub reason: String,
    /// Ids of the policies that decided, in policy-set order (the one whose reason is given
    /// first): the matching `forbid`s of a deny, the matching `permit`s of an allow, the
    /// policies that failed to evaluate of a fail-closed deny; empty when nothing matched.
    pub determining_policies: Vec<String>,
    /// Evaluation errors, one message each (their presence always means deny).
    pub errors: Vec<String>,
}

impl PolicyDecision {
    /// `allow` or `deny`, as the wire and the audit record spell it.
    pub fn word(&self) -> &'static str {
        if self.allowed {
            "allow"
        } else {
            "deny"
        }
    }

    /// A deny decided by no policy, for `reason`.
    pub(crate) fn deny(reason: impl Into<String>) -> Self {
        Self {
            allowed: false,
            reason: reason.into(),
            determining_policies: Vec::new(),
            errors: Vec::new(),
        }
    }
}
