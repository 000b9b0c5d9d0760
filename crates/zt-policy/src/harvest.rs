//! What a policy mentions, read from its JSON form: the actions and action groups it names
//! (to declare them for validation, and to check them against the action grammar), the
//! strings it compares `context.action` with, the entity types it uses and the context keys
//! it reads.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::names::{ACTION, AGENT, GROUP, RESOURCE};

/// Names found in one policy.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Mentions {
    /// Ids of every `Action::"..."` in the scope or the conditions.
    pub actions: BTreeSet<String>,
    /// Entity types other than `Agent`, `Group`, `Action` and `Resource`.
    pub unknown_types: BTreeSet<String>,
    /// Keys read directly on `context` (`context.k`, `context["k"]`, `context has k`).
    pub context_keys: BTreeSet<String>,
    /// Strings `context.action` is compared with (`==`), or matched against (`like`, its
    /// wildcards written `*`).
    pub action_literals: BTreeSet<String>,
}

impl Mentions {
    /// Walks the JSON (EST) form of a policy.
    pub(crate) fn of(est: &Value) -> Self {
        let mut found = Self::default();
        found.walk(est);
        found
    }

    fn walk(&mut self, value: &Value) {
        match value {
            Value::Array(items) => items.iter().for_each(|v| self.walk(v)),
            Value::Object(map) => {
                if let (2, Some(Value::String(ty)), Some(Value::String(id))) =
                    (map.len(), map.get("type"), map.get("id"))
                {
                    self.entity(ty, id);
                }
                if let Some(Value::String(ty)) = map.get("entity_type") {
                    self.entity_type(ty);
                }
                self.action_comparison(map);
                for op in [".", "has"] {
                    if let Some(Value::Object(access)) = map.get(op) {
                        if let (Some(left), Some(Value::String(attr))) =
                            (access.get("left"), access.get("attr"))
                        {
                            if left.get("Var").and_then(Value::as_str) == Some("context") {
                                self.context_keys.insert(attr.clone());
                            }
                        }
                    }
                }
                for (key, v) in map {
                    // Annotation values are free text, never names.
                    if key != "annotations" {
                        self.walk(v);
                    }
                }
            }
            _ => {}
        }
    }

    /// Records the string of `context.action == "..."` (either side) or
    /// `context.action like "..."`.
    fn action_comparison(&mut self, map: &serde_json::Map<String, Value>) {
        if let Some(Value::Object(like)) = map.get("like") {
            if like.get("left").is_some_and(is_context_action) {
                if let Some(Value::Array(parts)) = like.get("pattern") {
                    let pattern: String = parts
                        .iter()
                        .map(|part| match part {
                            Value::Object(literal) => literal
                                .get("Literal")
                                .and_then(Value::as_str)
                                .unwrap_or_default(),
                            _ => "*",
                        })
                        .collect();
                    self.action_literals.insert(pattern);
                }
            }
        }
        for op in ["==", "!="] {
            if let Some(Value::Object(sides)) = map.get(op) {
                let (Some(left), Some(right)) = (sides.get("left"), sides.get("right")) else {
                    continue;
                };
                for (this, other) in [(left, right), (right, left)] {
                    if is_context_action(this) {
                        if let Some(text) = other.get("Value").and_then(Value::as_str) {
                            self.action_literals.insert(text.to_string());
                        }
                    }
                }
            }
        }
    }

    fn entity(&mut self, ty: &str, id: &str) {
        if ty == ACTION {
            self.actions.insert(id.to_string());
        } else {
            self.entity_type(ty);
        }
    }

    fn entity_type(&mut self, ty: &str) {
        if ![AGENT, GROUP, ACTION, RESOURCE].contains(&ty) {
            self.unknown_types.insert(ty.to_string());
        }
    }
}

/// True for the expression `context.action`.
fn is_context_action(expr: &Value) -> bool {
    expr.get(".").is_some_and(|access| {
        access.get("attr").and_then(Value::as_str) == Some(crate::schema::CONTEXT_ACTION)
            && access
                .get("left")
                .and_then(|left| left.get("Var"))
                .and_then(Value::as_str)
                == Some("context")
    })
}

#[cfg(test)]
#[path = "harvest_tests.rs"]
mod tests;
