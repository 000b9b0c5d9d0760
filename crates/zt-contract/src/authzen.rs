//! OpenID AuthZEN Authorization API 1.0 wire types (`POST /access/v1/evaluation` and
//! `POST /access/v1/evaluations`), which the control plane maps onto its own decision path.
//!
//! Mapping: `subject.id` is the actor, `action.name` the action, `resource.id` the resource
//! (`resource.properties.type` / `.environment` its attributes), `context` the request context.
//! The answer is always `200` with a boolean `decision`; the response `context` carries the
//! reason, the deciding policies and the audit evidence of the logged decision.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The subject of an evaluation: in this API, an agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// Kind of subject (informational; agents are `agent`).
    #[serde(rename = "type", default)]
    pub subject_type: String,
    /// The actor name.
    #[serde(default)]
    pub id: String,
    /// Extra properties (ignored: an agent's attributes come from the registry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
}

/// The action of an evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The dotted action name.
    #[serde(default)]
    pub name: String,
    /// Extra properties (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
}

/// The resource of an evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Kind of resource.
    #[serde(rename = "type", default)]
    pub resource_type: String,
    /// The resource id.
    #[serde(default)]
    pub id: String,
    /// Attributes (`environment`, ...); string values become resource attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
}

/// `POST /access/v1/evaluation` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRequest {
    /// Who.
    #[serde(default)]
    pub subject: Subject,
    /// What.
    #[serde(default)]
    pub action: Action,
    /// On what.
    #[serde(default)]
    pub resource: Resource,
    /// Request context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
}

/// One item of a batch: any part given overrides the batch's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationItem {
    /// Overrides the default subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// Overrides the default action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Overrides the default resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// Overrides the default context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
}

/// How a batch is evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationsSemantic {
    /// Evaluate every item.
    #[default]
    ExecuteAll,
    /// Stop after the first deny.
    DenyOnFirstDeny,
    /// Stop after the first permit.
    PermitOnFirstPermit,
}

/// Options of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluationsOptions {
    /// Evaluation semantic.
    #[serde(default)]
    pub evaluations_semantic: EvaluationsSemantic,
}

/// `POST /access/v1/evaluations` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationsRequest {
    /// Default subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// Default action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Default resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// Default context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
    /// The items; absent or empty means one evaluation of the defaults.
    #[serde(default)]
    pub evaluations: Vec<EvaluationItem>,
    /// Options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<EvaluationsOptions>,
}

impl EvaluationsRequest {
    /// The evaluations to run: each item over the defaults, or the defaults alone; `None` if
    /// there are more than `max` items. Counted before anything is built: every item takes
    /// its own copy of the defaults, so a small body of empty items under a large default
    /// context would otherwise grow to hundreds of megabytes before it was refused.
    pub fn expand(&self, max: usize) -> Option<Vec<EvaluationRequest>> {
        if self.evaluations.len() > max {
            return None;
        }
        let defaults = EvaluationRequest {
            subject: self.subject.clone().unwrap_or_default(),
            action: self.action.clone().unwrap_or_default(),
            resource: self.resource.clone().unwrap_or_default(),
            context: self.context.clone(),
        };
        if self.evaluations.is_empty() {
            return Some(vec![defaults]);
        }
        let items = self
            .evaluations
            .iter()
            .map(|item| EvaluationRequest {
                subject: item
                    .subject
                    .clone()
                    .unwrap_or_else(|| defaults.subject.clone()),
                action: item
                    .action
                    .clone()
                    .unwrap_or_else(|| defaults.action.clone()),
                resource: item
                    .resource
                    .clone()
                    .unwrap_or_else(|| defaults.resource.clone()),
                context: item.context.clone().or_else(|| defaults.context.clone()),
            })
            .collect();
        Some(items)
    }
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationResponse {
    /// True when allowed.
    pub decision: bool,
    /// Reason, deciding policies and audit evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
}

/// `POST /access/v1/evaluations` response: one decision per evaluated item, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationsResponse {
    /// The decisions.
    pub evaluations: Vec<EvaluationResponse>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batch_items_override_defaults() {
        let request: EvaluationsRequest = serde_json::from_value(json!({
            "subject": {"type": "agent", "id": "a1"},
            "action": {"name": "files.read"},
            "context": {"environment": "prod"},
            "evaluations": [
                {"resource": {"type": "file", "id": "f1"}},
                {"action": {"name": "files.write"}, "resource": {"type": "file", "id": "f2"}, "context": {"x": 1}}
            ]
        }))
        .unwrap();
        let items = request.expand(64).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].action.name, "files.read");
        assert_eq!(items[0].resource.id, "f1");
        assert_eq!(items[0].context.as_ref().unwrap()["environment"], "prod");
        assert_eq!(items[1].action.name, "files.write");
        assert_eq!(items[1].subject.id, "a1");
        assert!(items[1]
            .context
            .as_ref()
            .unwrap()
            .get("environment")
            .is_none());
    }

    #[test]
    fn a_batch_over_the_cap_is_refused_before_it_is_built() {
        let items = vec![json!({}); 65];
        let request: EvaluationsRequest = serde_json::from_value(json!({
            "action": {"name": "x"},
            "context": {"big": "y".repeat(1 << 20)},
            "evaluations": items,
        }))
        .unwrap();
        assert!(request.expand(64).is_none());
        assert_eq!(request.expand(65).unwrap().len(), 65);
    }

    #[test]
    fn an_empty_batch_is_one_evaluation_of_the_defaults() {
        let request: EvaluationsRequest = serde_json::from_value(
            json!({"subject": {"type": "agent", "id": "a"}, "action": {"name": "x"}}),
        )
        .unwrap();
        assert_eq!(request.expand(64).unwrap().len(), 1);
        let semantic: EvaluationsOptions =
            serde_json::from_value(json!({"evaluations_semantic": "deny_on_first_deny"})).unwrap();
        assert_eq!(
            semantic.evaluations_semantic,
            EvaluationsSemantic::DenyOnFirstDeny
        );
    }
}
