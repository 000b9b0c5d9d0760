//! The reference JSON action-policy format.

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use zt_contract::names::{ActionName, ActionPattern};

use crate::error::PolicyError;

/// Reason given when nothing allows the action (one definition, in the contract).
pub use zt_contract::REASON_NOT_ALLOWED;
/// Reason given when an allow rule carries no reason of its own.
pub(crate) const REASON_ALLOWED_BY_RULE: &str = "action is in the allow list";
/// Reason given when a deny rule carries no reason of its own.
pub(crate) const REASON_DENIED_BY_RULE: &str = "action is denied by policy";
/// Reason given when nothing matched and the default decision is allow.
pub(crate) const REASON_DEFAULT_ALLOW: &str = "allowed by the policy's default decision";

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
    /// Exact action name, or a prefix followed by `*`, in lower case
    /// ([`ActionPattern`](zt_contract::names::ActionPattern)).
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

/// The outcome of evaluating one action against an [`ActionPolicy`], with its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionDecision {
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

    pub(crate) fn validate(&self) -> Result<(), PolicyError> {
        for (list, rules) in [("allow", &self.allow), ("deny", &self.deny)] {
            if let Some(index) = rules.iter().position(|r| r.action.is_empty()) {
                return Err(PolicyError::EmptyAction { list, index });
            }
            for (index, rule) in rules.iter().enumerate() {
                ActionPattern::parse(&rule.action).map_err(|source| {
                    PolicyError::InvalidPattern {
                        list,
                        index,
                        source,
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Decides `action` (folded to lower case; an invalid action name is denied): deny rules
    /// first, then allow rules, then the default.
    pub fn evaluate(&self, action: &str) -> ActionDecision {
        let action = match ActionName::parse(action) {
            Ok(name) => name,
            Err(e) => {
                return ActionDecision {
                    allowed: false,
                    reason: format!("request denied: {e}"),
                    rule: None,
                }
            }
        };
        let action = action.as_str();
        if let Some(rule) = self.deny.iter().find(|r| r.matches(action)) {
            return ActionDecision {
                allowed: false,
                reason: non_empty_or(&rule.reason, REASON_DENIED_BY_RULE),
                rule: Some(rule.action.clone()),
            };
        }
        if let Some(rule) = self.allow.iter().find(|r| r.matches(action)) {
            return ActionDecision {
                allowed: true,
                reason: non_empty_or(&rule.reason, REASON_ALLOWED_BY_RULE),
                rule: Some(rule.action.clone()),
            };
        }
        match self.default_decision {
            DefaultDecision::Deny => ActionDecision {
                allowed: false,
                reason: REASON_NOT_ALLOWED.into(),
                rule: None,
            },
            DefaultDecision::Allow => ActionDecision {
                allowed: true,
                reason: REASON_DEFAULT_ALLOW.into(),
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

pub(crate) fn non_empty_or(reason: &str, fallback: &str) -> String {
    if reason.trim().is_empty() {
        fallback.to_string()
    } else {
        reason.to_string()
    }
}

#[cfg(test)]
#[path = "action_policy_tests.rs"]
mod tests;
