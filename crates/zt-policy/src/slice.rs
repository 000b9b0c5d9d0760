//! The policy index, so a decision evaluates only the policies that can apply.
//!
//! Policies are indexed first by the action scope: `action == Action::"a"` under `a`,
//! `action in Action::"g"` and `action in [..]` under each group named. A policy with an
//! unconstrained action scope, `action in Action::"*"`, or a scope naming a non-`Action`
//! entity (which validation refuses) applies to every action and is filed under "any action".
//! Within each action key, policies are filed by principal and resource ([`crate::scope`]),
//! each leaf a Cedar policy set built at load. A decision on action `a` evaluates the leaves
//! that can admit its principal and resource under "any action", `a`, and each of `a`'s named
//! wildcard groups. Conditions (`when`/`unless`) are not indexed: a policy whose scope admits
//! the request is always evaluated.
//!
//! Per action name, a slice is cached (in a cache bounded in estimated bytes): the action
//! entity as a member of the root group and of the groups some policy names (in its scope or
//! its conditions), found in time linear in the action's length, and the action keys to look
//! up; the groups nobody names are never built.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};

use cedar_policy::{ActionConstraint, Entities, Entity, EntityUid, Policy};

use crate::cache::BoundedCache;
use crate::error::PolicyError;
use crate::groups::NamedGroups;
use crate::names::{action_id, Names, ROOT_GROUP};
use crate::scope::{self, Bucket, BucketId, Buckets, ByPrincipal};

/// Estimated bytes the slice cache may hold.
pub(crate) const SLICE_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Estimated bytes of a cached slice, besides its names.
const SLICE_BASE_BYTES: usize = 1024;

/// What a decision on one action name needs besides the request: cached per action name.
#[derive(Debug)]
pub(crate) struct Slice {
    /// `Action::"<name>"`.
    pub action: EntityUid,
    /// The action entity, a member of its wildcard groups, with its transitive closure
    /// computed once (the costly part of building entities).
    pub entities: Entities,
    /// The action keys some policy is indexed under that admit this action: its own name and
    /// its named groups (the root group is the index's `any_action`).
    keys: Vec<String>,
}

/// The policy set, indexed by action, then principal, then resource ([`crate::scope`]).
#[derive(Debug)]
pub(crate) struct Slicer {
    /// Policies whose action scope admits every action.
    any_action: ByPrincipal,
    /// Policies by the action or action group their scope names (`==` and `in` alike: an
    /// action `in` itself is the action, and no request names a group).
    actions: HashMap<String, ByPrincipal>,
    /// Every bucket the two indexes above file policies in.
    buckets: Buckets,
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
        let mut any_action = ByPrincipal::default();
        let mut actions: HashMap<String, ByPrincipal> = HashMap::new();
        let mut buckets = Buckets::default();
        let mut named = NamedGroups::default();
        for name in mentioned {
            named.add(name);
        }
        for policy in &policies {
            let (who, what) = (scope::who(policy), scope::what(policy));
            let filed = match index_keys(policy) {
                Keys::Always => any_action.add(&mut buckets, policy, &who, &what),
                Keys::Exact(name) => {
                    actions
                        .entry(name)
                        .or_default()
                        .add(&mut buckets, policy, &who, &what)
                }
                Keys::Member(groups) => {
                    let groups: BTreeSet<String> = groups.into_iter().collect();
                    groups.into_iter().try_for_each(|group| {
                        named.add(&group);
                        actions
                            .entry(group)
                            .or_default()
                            .add(&mut buckets, policy, &who, &what)
                    })
                }
            };
            filed.map_err(PolicyError::Internal)?;
        }
        Ok(Self {
            any_action,
            actions,
            buckets,
            groups: named,
            cache: RwLock::new(BoundedCache::new(SLICE_CACHE_BYTES)),
        })
    }

    /// No policies.
    pub(crate) fn empty() -> Self {
        Self {
            any_action: ByPrincipal::default(),
            actions: HashMap::new(),
            buckets: Buckets::default(),
            groups: NamedGroups::default(),
            cache: RwLock::new(BoundedCache::new(SLICE_CACHE_BYTES)),
        }
    }

    /// The buckets of policies whose scope can admit `actor` (a member of `groups`) taking the
    /// action of `slice` on `resource`. Every policy that can apply is in exactly one of them
    /// per action key it is filed under.
    pub(crate) fn buckets(
        &self,
        slice: &Slice,
        actor: &str,
        groups: &[String],
        resource: &str,
    ) -> Vec<BucketId> {
        let mut out = Vec::new();
        self.any_action.collect(actor, groups, resource, &mut out);
        for key in &slice.keys {
            if let Some(filed) = self.actions.get(key) {
                filed.collect(actor, groups, resource, &mut out);
            }
        }
        out
    }

    /// The bucket `id` (one [`buckets`](Self::buckets) gave), if this index made it.
    pub(crate) fn bucket(&self, id: BucketId) -> Option<&Bucket> {
        self.buckets.get(id)
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
        let keys: Vec<String> = std::iter::once(action)
            .chain(groups.iter().copied())
            .filter(|key| self.actions.contains_key(*key))
            .map(str::to_string)
            .collect();
        groups.push(ROOT_GROUP);
        let weight = groups
            .iter()
            .copied()
            .chain(keys.iter().map(String::as_str))
            .map(str::len)
            .sum::<usize>()
            .saturating_add(action.len().saturating_mul(2))
            .saturating_add(SLICE_BASE_BYTES);
        let uid = names.action(action);
        let groups: HashSet<EntityUid> = groups.iter().map(|g| names.action(g)).collect();
        let entities = Entities::from_entities([Entity::new_no_attrs(uid.clone(), groups)], None)
            .map_err(|e| e.to_string())?;
        let slice = Slice {
            action: uid,
            entities,
            keys,
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
