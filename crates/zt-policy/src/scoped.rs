//! A request scoped once: its names checked and made canonical, its action's slice, and the
//! index buckets whose scope can admit it. A caller can count the policies the decision will
//! evaluate (to choose where to run it) and then decide, without looking anything up twice;
//! [`Scoped::into_owned`] lets the scoped request move to another thread.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};
use zt_contract::names::{ActionName, ActorName, NameError, ResourceName};

use crate::engine::PolicyEngine;
use crate::names::Names;
use crate::request::{PolicyDecision, PolicyRequest};
use crate::scope::BucketId;
use crate::slice::Slice;

/// A request scoped against one policy engine, `E` (`&PolicyEngine`, or an
/// `Arc<PolicyEngine>` to move it to another thread). Made by [`PolicyEngine::scope`] or
/// [`Scoped::new`]; [`len`](Self::len) counts the policies deciding it evaluates, and
/// [`decide`](Self::decide) decides it, exactly as [`PolicyEngine::decide`].
pub struct Scoped<'r, E> {
    engine: E,
    scope: Scope<'r>,
}

impl<'r, E: Deref<Target = PolicyEngine>> Scoped<'r, E> {
    /// Scopes `request` against `engine`: a few hash lookups.
    pub fn new(engine: E, request: &PolicyRequest<'r>) -> Self {
        let scope = Scope::of(&engine, request);
        Self { engine, scope }
    }

    /// How many policies deciding the request evaluates: those whose scope admits it (a policy
    /// filed under several matching action keys counts once per key); 0 for a request that is
    /// refused before anything is evaluated (a name that is not valid).
    pub fn len(&self) -> usize {
        match &self.scope {
            Scope::Refused(_) => 0,
            Scope::Leaves(leaves) => leaves.len,
        }
    }

    /// True if deciding the request evaluates no policy (it is denied).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same scoped request, owning a copy of the request's attributes, groups and context
    /// instead of borrowing them, so that (with an `Arc<PolicyEngine>`) it can move to another
    /// thread.
    pub fn into_owned(self) -> Scoped<'static, E> {
        let scope = match self.scope {
            Scope::Refused(decision) => Scope::Refused(decision),
            Scope::Leaves(leaves) => Scope::Leaves(Leaves {
                request: match leaves.request {
                    Asked::Borrowed(r) => Asked::Owned(Box::new(OwnedParts::from(&r))),
                    Asked::Owned(parts) => Asked::Owned(parts),
                },
                names: leaves.names,
                actor: leaves.actor,
                action: leaves.action,
                resource: leaves.resource,
                slice: leaves.slice,
                buckets: leaves.buckets,
                len: leaves.len,
            }),
        };
        Scoped {
            engine: self.engine,
            scope,
        }
    }

    /// Decides the request (see [`PolicyEngine::decide`]).
    pub fn decide(self) -> PolicyDecision {
        let leaves = match self.scope {
            Scope::Refused(decision) => return decision,
            Scope::Leaves(leaves) => leaves,
        };
        let request = leaves.request.with_names(
            leaves.actor.as_str(),
            leaves.action.as_str(),
            leaves.resource.as_str(),
        );
        self.engine
            .decide_in(leaves.names, &request, &leaves.slice, &leaves.buckets)
    }
}

impl<E: Deref<Target = PolicyEngine>> fmt::Debug for Scoped<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("engine", &*self.engine)
            .field("policies", &self.len())
            .finish_non_exhaustive()
    }
}

/// What the index found for a request.
enum Scope<'r> {
    /// Denied before any policy is looked at.
    Refused(PolicyDecision),
    /// The buckets to evaluate.
    Leaves(Leaves<'r>),
}

/// A request (its names canonical), its action's slice, and the buckets that can admit it.
struct Leaves<'r> {
    request: Asked<'r>,
    names: &'static Names,
    actor: ActorName,
    action: ActionName,
    resource: ResourceName,
    slice: Arc<Slice>,
    buckets: Vec<BucketId>,
    len: usize,
}

impl<'r> Scope<'r> {
    /// The first steps of a decision, in its order: the names, the slice, the buckets.
    fn of(engine: &PolicyEngine, request: &PolicyRequest<'r>) -> Self {
        let (actor, action, resource) = match canonical_names(request) {
            Ok(names) => names,
            Err(e) => return Self::Refused(PolicyDecision::deny(format!("request denied: {e}"))),
        };
        let Some(names) = Names::get() else {
            return Self::Refused(PolicyDecision::deny("the policy engine could not start"));
        };
        let slicer = engine.slicer();
        let slice = match slicer.slice(names, action.as_str()) {
            Ok(slice) => slice,
            Err(e) => {
                return Self::Refused(PolicyDecision::deny(format!(
                    "the policy set could not be sliced: {e}"
                )))
            }
        };
        let buckets = slicer.buckets(
            &slice,
            actor.as_str(),
            request.actor_groups,
            resource.as_str(),
        );
        let len = buckets
            .iter()
            .filter_map(|&id| slicer.bucket(id))
            .map(|b| b.len)
            .sum();
        Self::Leaves(Leaves {
            request: Asked::Borrowed(*request),
            names,
            actor,
            action,
            resource,
            slice,
            buckets,
            len,
        })
    }
}

/// The request's names, checked and in canonical form.
fn canonical_names(
    request: &PolicyRequest<'_>,
) -> Result<(ActorName, ActionName, ResourceName), NameError> {
    Ok((
        ActorName::parse(request.actor)?,
        ActionName::parse(request.action)?,
        ResourceName::parse(request.resource)?,
    ))
}

/// The request a scope decides: borrowed, or owned to move to another thread.
enum Asked<'r> {
    Borrowed(PolicyRequest<'r>),
    Owned(Box<OwnedParts>),
}

impl Asked<'_> {
    /// The request, with its names replaced by `(actor, action, resource)`.
    fn with_names<'a>(
        &'a self,
        actor: &'a str,
        action: &'a str,
        resource: &'a str,
    ) -> PolicyRequest<'a> {
        match self {
            Asked::Borrowed(r) => PolicyRequest {
                actor,
                action,
                resource,
                ..*r
            },
            Asked::Owned(parts) => PolicyRequest {
                actor,
                actor_attributes: &parts.actor_attributes,
                actor_groups: &parts.actor_groups,
                action,
                resource,
                resource_attributes: &parts.resource_attributes,
                context: parts.context.as_ref(),
                request_time: parts.request_time,
            },
        }
    }
}

/// What a decision reads of a request besides its names (which the scope keeps, canonical).
struct OwnedParts {
    actor_attributes: BTreeMap<String, String>,
    actor_groups: Vec<String>,
    resource_attributes: BTreeMap<String, String>,
    context: Option<Map<String, Value>>,
    request_time: SystemTime,
}

impl From<&PolicyRequest<'_>> for OwnedParts {
    fn from(r: &PolicyRequest<'_>) -> Self {
        Self {
            actor_attributes: r.actor_attributes.clone(),
            actor_groups: r.actor_groups.to_vec(),
            resource_attributes: r.resource_attributes.clone(),
            context: r.context.cloned(),
            request_time: r.request_time,
        }
    }
}
