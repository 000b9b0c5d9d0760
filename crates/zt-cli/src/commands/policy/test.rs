//! `zt policy test FILE CASES`: run expected decisions against a policy file, like OPA's policy
//! tests. CI reads the closing line, `N passed, M failed`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use serde_json::json;
use zt_policy::{OwnedPolicyRequest, PolicyDecision, PolicyEngine};

use super::{fail, load};
use crate::exit::Exit;

/// `zt policy test` arguments.
#[derive(Args, Debug)]
pub(crate) struct TestArgs {
    /// The policy file: `.cedar`, or `.json` in the reference format.
    pub file: PathBuf,
    /// The cases file (JSON): `{"cases": [{"name", "request", "expect"}]}`.
    pub cases: PathBuf,
    /// Print one JSON object (every case's result) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A cases file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    cases: Vec<Case>,
}

/// One case: a request and what it must be answered.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// The request, as `POST /actions` and the registry would give it to the engine.
    request: OwnedPolicyRequest,
    expect: Expect,
}

/// What the answer must be; `reason` and `policies` are checked only when given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: Expected,
    #[serde(default)]
    reason: Option<String>,
    /// The deciding policy ids, exactly and in order.
    #[serde(default)]
    policies: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expected {
    Allow,
    Deny,
}

impl Expected {
    fn word(self) -> &'static str {
        match self {
            Expected::Allow => "allow",
            Expected::Deny => "deny",
        }
    }
}

/// Runs every case; exit 0 only if all pass.
pub(super) fn run(args: &TestArgs) -> Exit {
    let (engine, cases) = match load_both(&args.file, &args.cases) {
        Ok(loaded) => loaded,
        Err(e) => return fail(&e, args.json),
    };
    let mut passed = 0usize;
    let mut failed = 0usize;
    let mut results = Vec::with_capacity(cases.len());
    for case in &cases {
        let decision = case.request.decide(&engine);
        let failure = mismatch(&case.expect, &decision);
        if failure.is_some() {
            failed += 1;
        } else {
            passed += 1;
        }
        if args.json {
            results.push(json!({
                "name": case.name,
                "passed": failure.is_none(),
                "expected": {
                    "decision": case.expect.decision.word(),
                    "reason": case.expect.reason,
                    "policies": case.expect.policies,
                },
                "got": {
                    "decision": decision.word(),
                    "reason": decision.reason,
                    "policies": decision.determining_policies,
                    "errors": decision.errors,
                },
            }));
        } else if let Some(failure) = failure {
            println!("FAIL {}: {failure}", case.name);
        }
    }
    if args.json {
        println!(
            "{}",
            json!({
                "ok": failed == 0,
                "file": args.file.display().to_string(),
                "version": engine.version(),
                "cases": args.cases.display().to_string(),
                "passed": passed,
                "failed": failed,
                "results": results,
            })
        );
    } else {
        println!("{passed} passed, {failed} failed");
    }
    if failed == 0 {
        Exit::Success
    } else {
        Exit::Failure
    }
}

fn load_both(file: &Path, cases: &Path) -> anyhow::Result<(PolicyEngine, Vec<Case>)> {
    let engine = load(file)?;
    let text = std::fs::read_to_string(cases)
        .with_context(|| format!("cannot read cases file `{}`", cases.display()))?;
    let parsed: CaseFile = serde_json::from_str(&text)
        .with_context(|| format!("cases file `{}` is not valid", cases.display()))?;
    if parsed.cases.is_empty() {
        bail!("cases file `{}` has no cases", cases.display());
    }
    let mut names = BTreeSet::new();
    for case in &parsed.cases {
        if case.name.trim().is_empty() || case.name.chars().any(char::is_control) {
            bail!(
                "cases file `{}`: case name `{}` is empty or has control characters",
                cases.display(),
                case.name.escape_debug()
            );
        }
        if !names.insert(case.name.as_str()) {
            bail!(
                "cases file `{}`: two cases are named `{}`",
                cases.display(),
                case.name
            );
        }
    }
    Ok((engine, parsed.cases))
}

/// `None` when the decision is what was expected; otherwise `expected ...; got ...` over the
/// fields the case checks.
fn mismatch(expect: &Expect, got: &PolicyDecision) -> Option<String> {
    let decision_ok = expect.decision.word() == got.word();
    let reason_ok = expect.reason.as_ref().is_none_or(|r| *r == got.reason);
    let policies_ok = expect
        .policies
        .as_ref()
        .is_none_or(|p| *p == got.determining_policies);
    if decision_ok && reason_ok && policies_ok {
        return None;
    }
    let mut expected = vec![expect.decision.word().to_string()];
    let mut actual = vec![got.word().to_string()];
    if let Some(reason) = &expect.reason {
        expected.push(format!("reason {reason:?}"));
        actual.push(format!("reason {:?}", got.reason));
    }
    if let Some(policies) = &expect.policies {
        expected.push(format!("policies {policies:?}"));
        actual.push(format!("policies {:?}", got.determining_policies));
    }
    if !got.errors.is_empty() {
        actual.push(format!("errors {:?}", got.errors));
    }
    Some(format!(
        "expected {}; got {}",
        expected.join(", "),
        actual.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(allowed: bool, reason: &str, policies: &[&str]) -> PolicyDecision {
        PolicyDecision {
            allowed,
            reason: reason.to_string(),
            determining_policies: policies.iter().map(|p| p.to_string()).collect(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn only_the_given_fields_are_checked() {
        let expect = Expect {
            decision: Expected::Deny,
            reason: None,
            policies: None,
        };
        assert_eq!(mismatch(&expect, &decision(false, "any", &["p"])), None);
        assert_eq!(
            mismatch(&expect, &decision(true, "any", &["p"])).as_deref(),
            Some("expected deny; got allow")
        );
    }

    #[test]
    fn a_mismatch_names_expected_and_got() {
        let expect = Expect {
            decision: Expected::Allow,
            reason: Some("ok".into()),
            policies: Some(vec!["a".into()]),
        };
        assert_eq!(mismatch(&expect, &decision(true, "ok", &["a"])), None);
        assert_eq!(
            mismatch(&expect, &decision(true, "ok", &["a", "b"])).as_deref(),
            Some(
                r#"expected allow, reason "ok", policies ["a"]; got allow, reason "ok", policies ["a", "b"]"#
            )
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = r#"{"cases": [{"name": "x", "request": {"actor": "a", "action": "b"},
            "expect": {"decision": "allow", "reasons": "typo"}}]}"#;
        let error = serde_json::from_str::<CaseFile>(text).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `reasons`"),
            "{error}"
        );
        let text = r#"{"cases": [{"name": "x", "request": {"actor": "a", "action": "b"},
            "expect": {"decision": "permit"}}]}"#;
        assert!(serde_json::from_str::<CaseFile>(text).is_err());
    }
}
