//! The reference JSON action-policy format.

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

/// Reason given when nothing allows the action.
pub const REASON_NOT_ALLOWED: &str = "action is not in the allow list";
/// Reason given when an allow rule carries no reason of its own.
const REASON_ALLOWED_BY_RULE: &str = "action is in the allow list";

/// What happens to an action no rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultDecision {
    /// Deny (the only safe default).
    #[default]
    Deny,
    /// Allow everything no deny rule matches. Danger: this turns the allow list off.
    Allow,
}

/// One rule: an action pattern and the reason returned when it decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Exact action name, or a prefix followed by `*`.
    pub action: String,
    /// Why this rule decides as it does.
    #[serde(default)]
    pub reason: String,
}

impl Rule {
    /// True if this rule's pattern covers `action`.
    pub fn matches(&self, action: &str) -> bool {
        match self.action.strip_suffix('*') {
            Some(prefix) => action.starts_with(prefix),
            None => self.action == action,
        }
    }
}

/// A policy in the reference JSON format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActionPolicy {
    /// What happens when no rule matches.
    #[serde(default)]
    pub default_decision: DefaultDecision,
    /// Allow rules.
    #[serde(default)]
    pub allow: Vec<Rule>,
    /// Deny rules; a match beats every allow rule.
    #[serde(default)]
    pub deny: Vec<Rule>,
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The text is not a valid policy document.
    #[error("invalid action policy: {0}")]
    Parse(#[from] serde_json::Error),
    /// A rule with an empty action pattern.
    #[error("invalid action policy: {list} rule {index} has an empty action")]
    EmptyAction {
        /// `allow` or `deny`.
        list: &'static str,
        /// Position of the rule in its list, from 0.
        index: usize,
    },
}

/// The outcome of evaluating one action, with its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDecision {
    /// True when the action may run.
    pub allowed: bool,
    /// Human reason; never empty.
    pub reason: String,
    /// The pattern of the deciding rule, `None` when the default decided.
    pub rule: Option<String>,
}

impl Default for ActionPolicy {
    /// The shipped default: deny by default, and EC2 instance termination explicitly denied.
    fn default() -> Self {
        Self {
            default_decision: DefaultDecision::Deny,
            allow: Vec::new(),
            deny: vec![Rule {
                action: "aws.ec2.terminate_instances".into(),
                reason: "Terminating EC2 instances is denied by the default policy.".into(),
            }],
        }
    }
}

impl ActionPolicy {
    /// Parses and validates a policy document.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        let policy: Self = serde_json::from_str(text)?;
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), PolicyError> {
        for (list, rules) in [("allow", &self.allow), ("deny", &self.deny)] {
            if let Some(index) = rules.iter().position(|r| r.action.is_empty()) {
                return Err(PolicyError::EmptyAction { list, index });
            }
        }
        Ok(())
    }

    /// Decides `action`: deny rules first, then allow rules, then the default.
    pub fn evaluate(&self, action: &str) -> PolicyDecision {
        if let Some(rule) = self.deny.iter().find(|r| r.matches(action)) {
            return PolicyDecision {
                allowed: false,
                reason: non_empty_or(&rule.reason, "action is denied by policy"),
                rule: Some(rule.action.clone()),
            };
        }
        if let Some(rule) = self.allow.iter().find(|r| r.matches(action)) {
            return PolicyDecision {
                allowed: true,
                reason: non_empty_or(&rule.reason, REASON_ALLOWED_BY_RULE),
                rule: Some(rule.action.clone()),
            };
        }
        match self.default_decision {
            DefaultDecision::Deny => PolicyDecision {
                allowed: false,
                reason: REASON_NOT_ALLOWED.into(),
                rule: None,
            },
            DefaultDecision::Allow => PolicyDecision {
                allowed: true,
                reason: "allowed by the policy's default decision".into(),
                rule: None,
            },
        }
    }

    /// Adds an allow rule (replacing the reason of an existing rule with the same pattern).
    pub fn add_allow(&mut self, action: &str, reason: &str) {
        let reason = non_empty_or(reason, REASON_ALLOWED_BY_RULE);
        match self.allow.iter_mut().find(|r| r.action == action) {
            Some(rule) => rule.reason = reason,
            None => self.allow.push(Rule {
                action: action.into(),
                reason,
            }),
        }
    }

    /// `sha256:<hex>` of the canonical serialization: equal policies have equal versions.
    pub fn version(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let d = digest::digest(&digest::SHA256, &bytes);
        format!("sha256:{}", hex::encode(d.as_ref()))
    }

    /// Pretty JSON, as written to the data directory.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn non_empty_or(reason: &str, fallback: &str) -> String {
    if reason.trim().is_empty() {
        fallback.to_string()
    } else {
        reason.to_string()
    }
}

#[cfg(test)]
#[path = "action_policy_tests.rs"]
mod tests;
