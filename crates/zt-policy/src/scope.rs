//! The scope index: every policy filed under the principal and resource its scope names, within
//! each action key (see [`crate::slice`]), so a decision evaluates only the policies whose scope
//! can admit the request.
//!
//! The index is exact because of how requests are built ([`crate::entities`]): the principal
//! is an `Agent` whose only parents are its registry groups (`Group` entities, which have no
//! parents), and the resource is a `Resource` with no parents. So `principal == Agent::"a"`
//! and `principal in Agent::"a"` admit exactly agent `a`; `principal in Group::"g"` admits
//! exactly the members of `g`; `resource == Resource::"r"` and `resource in Resource::"r"`
//! admit exactly resource `r`. Any other scope (unconstrained, `is`, or one naming another
//! type, which can never match) goes in the general bucket of its dimension: evaluating a
//! policy whose scope is false changes nothing (Cedar checks the scope before the conditions,
//! so it neither matches nor errors), which is why over-including is safe and only excluding
//! needs proof. Conditions (`when`/`unless`) are never indexed.

use std::collections::HashMap;

use cedar_policy::{EntityUid, Policy, PolicySet, PrincipalConstraint, ResourceConstraint};

use crate::names::{AGENT, GROUP, RESOURCE};

/// Which principals a policy's scope admits, as far as the index can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Who {
    /// Any (or the index cannot tell).
    Any,
    /// Exactly `Agent::"<id>"`.
    Agent(String),
    /// The members of `Group::"<id>"`.
    Group(String),
}

/// Which resources a policy's scope admits, as far as the index can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum What {
    /// Any (or the index cannot tell).
    Any,
    /// Exactly `Resource::"<id>"`.
    Resource(String),
}

/// The id of `uid` if its type is `ty`.
fn id_of<'a>(uid: &'a EntityUid, ty: &str) -> Option<&'a str> {
    (uid.type_name().to_string() == ty).then(|| uid.id().unescaped())
}

/// Where `policy`'s principal scope files it.
pub(crate) fn who(policy: &Policy) -> Who {
    let named = |uid: &EntityUid, is_in: bool| {
        if let Some(id) = id_of(uid, AGENT) {
            Who::Agent(id.to_string())
        } else if let Some(id) = id_of(uid, GROUP).filter(|_| is_in) {
            Who::Group(id.to_string())
        } else {
            Who::Any
        }
    };
    match policy.principal_constraint() {
        PrincipalConstraint::Any | PrincipalConstraint::Is(_) => Who::Any,
        PrincipalConstraint::Eq(uid) => named(&uid, false),
        PrincipalConstraint::In(uid) => named(&uid, true),
        PrincipalConstraint::IsIn(ty, uid) if ty.to_string() == AGENT => named(&uid, true),
        PrincipalConstraint::IsIn(..) => Who::Any,
    }
}

/// Where `policy`'s resource scope files it.
pub(crate) fn what(policy: &Policy) -> What {
    let named = |uid: &EntityUid| match id_of(uid, RESOURCE) {
        Some(id) => What::Resource(id.to_string()),
        None => What::Any,
    };
    match policy.resource_constraint() {
        ResourceConstraint::Any | ResourceConstraint::Is(_) => What::Any,
        ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid) => named(&uid),
        ResourceConstraint::IsIn(ty, uid) if ty.to_string() == RESOURCE => named(&uid),
        ResourceConstraint::IsIn(..) => What::Any,
    }
}

/// Policies evaluated together: a Cedar set built once, at load.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    /// The policies, in policy-set order.
    pub policies: PolicySet,
    /// How many.
    pub len: usize,
}

impl Bucket {
    fn add(&mut self, policy: &Policy) -> Result<(), String> {
        self.policies
            .add(policy.clone())
            .map_err(|e| e.to_string())?;
        self.len += 1;
        Ok(())
    }
}

/// Where a bucket is in its [`Buckets`]: an index, not a reference, so a scoped request
/// owns the list of its buckets and can move to another thread with the engine's `Arc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BucketId(usize);

/// Every bucket of an index, each filed by its [`BucketId`].
#[derive(Debug, Default)]
pub(crate) struct Buckets(Vec<Bucket>);

impl Buckets {
    /// The bucket `id`, if this index made it.
    pub(crate) fn get(&self, id: BucketId) -> Option<&Bucket> {
        self.0.get(id.0)
    }

    /// A new, empty bucket.
    fn create(&mut self) -> BucketId {
        let id = BucketId(self.0.len());
        self.0.push(Bucket::default());
        id
    }

    fn add(&mut self, id: BucketId, policy: &Policy) -> Result<(), String> {
        match self.0.get_mut(id.0) {
            Some(bucket) => bucket.add(policy),
            None => Err(format!("bucket {} is not in the index", id.0)),
        }
    }
}

/// Buckets by resource.
#[derive(Debug, Default)]
struct ByResource {
    any: Option<BucketId>,
    named: HashMap<String, BucketId>,
}

impl ByResource {
    fn bucket(&mut self, what: &What, buckets: &mut Buckets) -> BucketId {
        match what {
            What::Any => *self.any.get_or_insert_with(|| buckets.create()),
            What::Resource(id) => *self
                .named
                .entry(id.clone())
                .or_insert_with(|| buckets.create()),
        }
    }

    fn collect(&self, resource: &str, out: &mut Vec<BucketId>) {
        out.extend(self.any);
        if !self.named.is_empty() {
            out.extend(self.named.get(resource).copied());
        }
    }
}

/// The policies of one action key, by principal then resource (the buckets themselves live
/// in the index's one [`Buckets`]).
#[derive(Debug, Default)]
pub(crate) struct ByPrincipal {
    any: ByResource,
    agents: HashMap<String, ByResource>,
    groups: HashMap<String, ByResource>,
}

impl ByPrincipal {
    /// Files `policy` under `who` and `what`, in a bucket of `buckets`.
    pub(crate) fn add(
        &mut self,
        buckets: &mut Buckets,
        policy: &Policy,
        who: &Who,
        what: &What,
    ) -> Result<(), String> {
        let by_resource = match who {
            Who::Any => &mut self.any,
            Who::Agent(id) => self.agents.entry(id.clone()).or_default(),
            Who::Group(id) => self.groups.entry(id.clone()).or_default(),
        };
        let id = by_resource.bucket(what, buckets);
        buckets.add(id, policy)
    }

    /// Adds to `out` the buckets whose scope can admit `actor` (a member of `groups`) acting
    /// on `resource`.
    pub(crate) fn collect(
        &self,
        actor: &str,
        groups: &[String],
        resource: &str,
        out: &mut Vec<BucketId>,
    ) {
        self.any.collect(resource, out);
        if let Some(own) = self.agents.get(actor) {
            own.collect(resource, out);
        }
        if !self.groups.is_empty() {
            for group in groups {
                if let Some(members) = self.groups.get(group) {
                    members.collect(resource, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn p(text: &str) -> Policy {
        Policy::from_str(text).unwrap()
    }

    #[test]
    fn principal_scopes_are_filed_by_agent_or_group() {
        let agent = || Who::Agent("a".into());
        let cases = [
            ("principal", Who::Any),
            ("principal is Agent", Who::Any),
            (r#"principal == Agent::"a""#, agent()),
            (r#"principal in Agent::"a""#, agent()),
            (r#"principal is Agent in Agent::"a""#, agent()),
            (r#"principal in Group::"g""#, Who::Group("g".into())),
            (
                r#"principal is Agent in Group::"g""#,
                Who::Group("g".into()),
            ),
            (r#"principal == Group::"g""#, Who::Any),
            (r#"principal is Group in Group::"g""#, Who::Any),
            (r#"principal == Resource::"a""#, Who::Any),
        ];
        for (scope, expected) in cases {
            let policy = p(&format!("permit({scope}, action, resource);"));
            assert_eq!(who(&policy), expected, "{scope}");
        }
    }

    #[test]
    fn resource_scopes_are_filed_by_resource() {
        let named = || What::Resource("r".into());
        let cases = [
            ("resource", What::Any),
            ("resource is Resource", What::Any),
            (r#"resource == Resource::"r""#, named()),
            (r#"resource in Resource::"r""#, named()),
            (r#"resource is Resource in Resource::"r""#, named()),
            (r#"resource == Agent::"r""#, What::Any),
            (r#"resource in Group::"r""#, What::Any),
        ];
        for (scope, expected) in cases {
            let policy = p(&format!("permit(principal, action, {scope});"));
            assert_eq!(what(&policy), expected, "{scope}");
        }
    }

    #[test]
    fn a_request_collects_only_the_buckets_that_can_admit_it() {
        let mut index = ByPrincipal::default();
        let mut buckets = Buckets::default();
        let scopes = [
            ("principal", "resource"),
            (r#"principal == Agent::"a""#, "resource"),
            (r#"principal == Agent::"b""#, "resource"),
            (r#"principal in Group::"g""#, r#"resource == Resource::"r""#),
            (r#"principal in Group::"h""#, "resource"),
            ("principal", r#"resource == Resource::"s""#),
        ];
        for (i, (principal, resource)) in scopes.iter().enumerate() {
            let policy = p(&format!(
                "@id(\"p{i}\") permit({principal}, action, {resource});"
            ))
            .new_id(cedar_policy::PolicyId::new(format!("p{i}")));
            index
                .add(&mut buckets, &policy, &who(&policy), &what(&policy))
                .unwrap();
        }
        let ids = |actor: &str, groups: &[&str], resource: &str| {
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            let mut out = Vec::new();
            index.collect(actor, &groups, resource, &mut out);
            let mut ids: Vec<String> = out
                .iter()
                .map(|&id| buckets.get(id).unwrap())
                .flat_map(|b| b.policies.policies().map(|p| p.id().to_string()))
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids("a", &[], "x"), ["p0", "p1"]);
        assert_eq!(ids("b", &["g"], "r"), ["p0", "p2", "p3"]);
        assert_eq!(ids("c", &["g", "h"], "s"), ["p0", "p4", "p5"]);
        assert_eq!(ids("c", &[], "r"), ["p0"]);
    }
}
