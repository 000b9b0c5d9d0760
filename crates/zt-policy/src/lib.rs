#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod action_policy;
mod annotations;
mod cache;
mod compile_json;
mod context;
mod engine;
mod entities;
mod error;
mod groups;
mod harvest;
mod impact;
mod load;
mod names;
mod request;
mod schema;
mod scope;
mod scoped;
mod slice;
mod validate;

pub use action_policy::{ActionDecision, ActionPolicy, DefaultDecision, Rule, REASON_NOT_ALLOWED};
pub use compile_json::{allow_rule, allow_rule_id};
pub use engine::PolicyEngine;
pub use error::{Location, PolicyError};
pub use impact::{impact, text_diff, Changed, Compared, Outcome, OwnedPolicyRequest};
pub use request::{PolicyDecision, PolicyRequest};
pub use schema::SCHEMA;
pub use scoped::Scoped;
