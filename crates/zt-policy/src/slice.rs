//! Slicing the policy set by action, so a decision evaluates only the policies that can apply.
//!
//! Policies are indexed by the action scope: `action == Action::"a"` under `a` (exact),
//! `action in Action::"g"` and `action in [..]` under each group (member). A policy with an
//! unconstrained action scope, `action in Action::"*"`, or a scope naming a non-`Action`
//! entity (which validation refuses) applies to every action and is in the shared "always"
//! set. The slice of action `a` is the exact policies of `a` plus the member policies of `a`
//! and of each of its wildcard groups, in policy-set order; slices are cached per action name
//! in a cache bounded in (estimated) bytes. Conditions (`when`/`unless`) are not indexed: a
//! policy whose scope admits the action is always evaluated.
//!
//! The action entity of a slice is a member of the root group and of the groups some policy
//! names (in its scope or its conditions), found in time linear in the action's length; the
//! groups nobody names are never built.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};

use cedar_policy::{ActionConstraint, Entities, Entity, EntityUid, Policy, PolicySet};

use crate::cache::BoundedCache;
use crate::error::PolicyError;
use crate::groups::NamedGroups;
use crate::names::{action_id, Names, ROOT_GROUP};

/// Estimated bytes the slice cache may hold.
pub(crate) const SLICE_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Estimated bytes of a cached slice, besides its names and policies.
const SLICE_BASE_BYTES: usize = 1024;
/// Estimated bytes per policy held in a slice (a shared reference and its id).
const SLICE_POLICY_BYTES: usize = 128;

/// The policies that may apply to one action name.
#[derive(Debug)]
pub(crate) struct Slice {
    /// `Action::"<name>"`.
    pub action: EntityUid,
    /// The action entity, a member of its wildcard groups, with its transitive closure
    /// computed once (the costly part of building entities).
    pub entities: Entities,
    /// The indexed policies whose scope admits the action (the "always" set not included).
    pub policies: PolicySet,
    /// True if `policies` is empty.
    pub is_empty: bool,
}

/// The policy set, indexed by action.
#[derive(Debug)]
pub(crate) struct Slicer {
    policies: Vec<Policy>,
    always: PolicySet,
    always_len: usize,
    exact: HashMap<String, Vec<usize>>,
    member: HashMap<String, Vec<usize>>,
    groups: NamedGroups,
    cache: RwLock<BoundedCache<Arc<Slice>>>,
}

impl Slicer {
    /// Indexes `policies` (in policy-set order); `mentioned` holds every action or group id the
    /// policies name anywhere (their conditions included).
    pub(crate) fn new(
        policies: Vec<Policy>,
        mentioned: &BTreeSet<String>,
    ) -> Result<Self, PolicyError> {
        let mut always = PolicySet::new();
        let mut always_len = 0;
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut member: HashMap<String, Vec<usize>> = HashMap::new();
        let mut named = NamedGroups::default();
        for name in mentioned {
            named.add(name);
        }
        for (position, policy) in policies.iter().enumerate() {
            match index_keys(policy) {
                Keys::Always => {
                    always
                        .add(policy.clone())
                        .map_err(|e| PolicyError::Internal(e.to_string()))?;
                    always_len += 1;
                }
                Keys::Exact(name) => exact.entry(name).or_default().push(position),
                Keys::Member(groups) => {
                    for group in groups {
                        named.add(&group);
                        let list = member.entry(group).or_default();
                        if list.last() != Some(&position) {
                            list.push(position);
                        }
                    }
                }
            }
        }
        Ok(Self {
            policies,
            always,
            always_len,
            exact,
            member,
            groups: named,
            cache: RwLock::new(BoundedCache::new(SLICE_CACHE_BYTES)),
        })
    }

    /// No policies.
    pub(crate) fn empty() -> Self {
        Self {
            policies: Vec::new(),
            always: PolicySet::new(),
            always_len: 0,
            exact: HashMap::new(),
            member: HashMap::new(),
            groups: NamedGroups::default(),
            cache: RwLock::new(BoundedCache::new(SLICE_CACHE_BYTES)),
        }
    }

    /// The policies every decision evaluates.
    pub(crate) fn always(&self) -> &PolicySet {
        &self.always
    }

    /// How many policies every decision evaluates.
    pub(crate) fn always_len(&self) -> usize {
        self.always_len
    }

    /// The slice of `action`, from the cache or built now.
    pub(crate) fn slice(&self, names: &Names, action: &str) -> Result<Arc<Slice>, String> {
        let hot = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .peek(action);
        if let Some(hit) = hot {
            return Ok(hit);
        }
        if let Some(hit) = self.write().get(action) {
            return Ok(hit);
        }
        let (built, weight) = self.build(names, action)?;
        let built = Arc::new(built);
        self.write()
            .insert(action.to_string(), Arc::clone(&built), weight);
        Ok(built)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BoundedCache<Arc<Slice>>> {
        self.cache.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The slice of `action`, and its estimated weight in bytes.
    fn build(&self, names: &Names, action: &str) -> Result<(Slice, usize), String> {
        let mut groups = self.groups.of(action);
        groups.push(ROOT_GROUP);
        let mut positions: Vec<usize> = Vec::new();
        positions.extend(self.exact.get(action).into_iter().flatten());
        positions.extend(self.member.get(action).into_iter().flatten());
        for group in &groups {
            positions.extend(self.member.get(*group).into_iter().flatten());
        }
        positions.sort_unstable();
        positions.dedup();
        let mut policies = PolicySet::new();
        for position in &positions {
            if let Some(policy) = self.policies.get(*position) {
                policies.add(policy.clone()).map_err(|e| e.to_string())?;
            }
        }
        let weight = groups
            .iter()
            .map(|g| g.len())
            .sum::<usize>()
            .saturating_add(action.len().saturating_mul(2))
            .saturating_add(positions.len().saturating_mul(SLICE_POLICY_BYTES))
            .saturating_add(SLICE_BASE_BYTES);
        let uid = names.action(action);
        let groups: HashSet<EntityUid> = groups.iter().map(|g| names.action(g)).collect();
        let entities = Entities::from_entities([Entity::new_no_attrs(uid.clone(), groups)], None)
            .map_err(|e| e.to_string())?;
        let slice = Slice {
            action: uid,
            entities,
            policies,
            is_empty: positions.is_empty(),
        };
        Ok((slice, weight))
    }

    /// How many slices are cached (for tests).
    #[cfg(test)]
    pub(crate) fn cached(&self) -> usize {
        self.write().len()
    }

    /// The estimated bytes cached (for tests).
    #[cfg(test)]
    pub(crate) fn cached_bytes(&self) -> usize {
        self.write().weight()
    }
}

/// Where a policy is indexed.
#[derive(Debug, PartialEq, Eq)]
enum Keys {
    Always,
    Exact(String),
    Member(Vec<String>),
}

fn index_keys(policy: &Policy) -> Keys {
    match policy.action_constraint() {
        ActionConstraint::Any => Keys::Always,
        ActionConstraint::Eq(uid) => match action_id(&uid) {
            Some(name) => Keys::Exact(name.to_string()),
            None => Keys::Always,
        },
        ActionConstraint::In(uids) => {
            let mut groups = Vec::with_capacity(uids.len());
            for uid in &uids {
                match action_id(uid) {
                    Some(ROOT_GROUP) | None => return Keys::Always,
                    Some(name) => groups.push(name.to_string()),
                }
            }
            Keys::Member(groups)
        }
    }
}

#[cfg(test)]
#[path = "slice_tests.rs"]
mod tests;
