//! The annotations of the permits that decided an allow, as plain strings: what an execution
//! broker's sandbox grant is read from (`@sandbox_write("/srv/out")`, docs/BROKER.md). Read
//! from each policy's canonical text, so the engine keeps nothing more per policy.

use std::collections::BTreeMap;

use cedar_policy::{Effect, Policy};

use crate::engine::PolicyEngine;

impl PolicyEngine {
    /// For each id of `policy_ids` that names a `permit` of this set, its annotations (key to
    /// value; an annotation written without a value reads as `""`), in the order given.
    /// Unknown ids and `forbid`s are left out.
    pub fn permit_annotations(&self, policy_ids: &[String]) -> Vec<BTreeMap<String, String>> {
        policy_ids
            .iter()
            .filter_map(|id| self.policy_text(id))
            .filter_map(|text| Policy::parse(None, text).ok())
            .filter(|policy| policy.effect() == Effect::Permit)
            .map(|policy| {
                policy
                    .annotations()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::{PolicyEngine, PolicyRequest};

    #[test]
    fn the_deciding_permits_annotations_are_returned_without_cedar_types() {
        let engine = PolicyEngine::from_cedar(
            r#"
            @id("build") @reason("builds may write their output") @sandbox_write("/srv/out")
            permit (principal, action == Action::"ci.build", resource);
            @id("never") forbid (principal, action == Action::"ci.deploy", resource);
            "#,
        )
        .unwrap();
        let decided = engine.decide(&PolicyRequest::new("a", "ci.build", ""));
        assert!(decided.allowed);
        let annotations = engine.permit_annotations(&decided.determining_policies);
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations[0]["sandbox_write"], "/srv/out");
        assert_eq!(annotations[0]["id"], "build");
        let none = engine.permit_annotations(&["never".into(), "missing".into()]);
        assert!(none.is_empty(), "forbids and unknown ids are left out");
    }
}
