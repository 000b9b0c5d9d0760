//! The annotations of the permits that decided an allow, as plain strings: what an execution
//! broker's sandbox grant is read from (`@sandbox_write("/srv/out")`, docs/BROKER.md). Read
//! from each policy's canonical text, so the engine keeps nothing more per policy. A permit's
//! grant is checked when the set is loaded, with the parser the control plane grants with, so
//! an unreadable grant is refused at load rather than denied at decision time.

use std::collections::BTreeMap;

use cedar_policy::{Effect, Policy};
use zt_contract::SandboxProfile;

use crate::engine::PolicyEngine;

/// A policy's annotations, key to value (an annotation written without a value reads as `""`).
fn annotation_map(policy: &Policy) -> BTreeMap<String, String> {
    policy
        .annotations()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Refuses a permit whose `@sandbox_*` annotations do not make a profile (an unknown
/// `@sandbox_*` key, a bad path, a bad port): the message names the problem. Forbids grant no
/// profile and are not read.
pub(crate) fn check_sandbox_grant(policy: &Policy) -> Result<(), String> {
    if policy.effect() != Effect::Permit {
        return Ok(());
    }
    let annotations = annotation_map(policy);
    if !SandboxProfile::annotated(&annotations) {
        return Ok(());
    }
    SandboxProfile::from_annotations(&annotations)
        .map(drop)
        .map_err(|e| format!("invalid sandbox grant: {e}"))
}

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
            .map(|policy| annotation_map(&policy))
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

    #[test]
    fn a_permit_with_an_unreadable_sandbox_grant_is_refused_at_load() {
        let cases = [
            (
                r#"@sandbox_wirte("/srv")"#,
                "unknown sandbox annotation `@sandbox_wirte`",
            ),
            (r#"@sandbox_read("srv/in")"#, "sandbox path `srv/in`"),
            (r#"@sandbox_connect("http")"#, "sandbox port `http`"),
            (
                r#"@sandbox_base("all")"#,
                "`@sandbox_base` is `default` or `empty`",
            ),
            (
                r#"@sandbox_read("@tmp")"#,
                "may only be granted for writing",
            ),
        ];
        for (annotation, expected) in cases {
            let text = format!(
                "@id(\"ok\") permit (principal, action == Action::\"a\", resource);\n\
                 @id(\"build\") {annotation}\n\
                 permit (principal, action == Action::\"ci.build\", resource);"
            );
            let error = PolicyEngine::from_cedar(&text).unwrap_err().to_string();
            assert!(
                error.starts_with("policy `build` at line 2, column 1: invalid sandbox grant: "),
                "{annotation}: {error}"
            );
            assert!(error.contains(expected), "{annotation}: {error}");
        }
    }

    #[test]
    fn good_grants_and_forbids_load() {
        let engine = PolicyEngine::from_cedar(
            r#"
            @id("build") @sandbox_base("empty") @sandbox_read("/srv/in")
            @sandbox_write("/srv/out, @tmp") @sandbox_exec("/usr") @sandbox_connect("443, none")
            permit (principal, action == Action::"ci.build", resource);
            @id("no") @sandbox_wirte("forbids grant nothing and are not read")
            forbid (principal, action == Action::"ci.deploy", resource);
            "#,
        );
        assert!(engine.is_ok(), "{engine:?}");
    }
}
