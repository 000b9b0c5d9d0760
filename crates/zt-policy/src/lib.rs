//! The policy decision point. This crate evaluates the reference ZT-Infra JSON action-policy
//! format (`{"defaultDecision": "deny", "allow": [...], "deny": [...]}`) and explains every
//! decision: which rule decided, and the human reason.
//!
//! Semantics: a rule matches an action exactly, or by prefix when its pattern ends in `*`;
//! a matching deny rule beats any allow rule; with no match the default decision applies.

mod action_policy;

pub use action_policy::{ActionPolicy, DefaultDecision, PolicyDecision, PolicyError, Rule};
