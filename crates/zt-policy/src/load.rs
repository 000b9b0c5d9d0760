//! Cedar text to the engine's ordered list of policies: ids from `@id` (or `policy-<n>`),
//! reasons from `@reason`, the `@unvalidated` opt-out, and where each policy starts.

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{Effect, Policy, PolicyId, PolicySet};

use crate::error::{diagnostic_parts, Lines, Location, PolicyError};

/// Annotation naming a policy.
pub(crate) const ANNOTATION_ID: &str = "id";
/// Annotation giving the human reason returned when the policy decides.
pub(crate) const ANNOTATION_REASON: &str = "reason";
/// Annotation exempting a policy from schema validation; its value says why.
pub(crate) const ANNOTATION_UNVALIDATED: &str = "unvalidated";

/// One policy of a set, in text order.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// The policy, its Cedar id set to `id`.
    pub policy: Policy,
    /// From `@id`, else `policy-<n>` (`n` its position in the text, from 1).
    pub id: String,
    /// From `@reason`.
    pub reason: Option<String>,
    /// `permit` or `forbid`.
    pub effect: Effect,
    /// True if annotated `@unvalidated("why")`.
    pub unvalidated: bool,
    /// Where the policy (its first annotation) starts.
    pub location: Location,
}

/// Parses `text` into its policies, in order.
pub(crate) fn parse(text: &str) -> Result<Vec<Loaded>, PolicyError> {
    let set = PolicySet::from_str(text).map_err(|errors| {
        let (offset, message) = match errors.iter().next() {
            Some(first) => diagnostic_parts(first),
            None => (None, errors.to_string()),
        };
        PolicyError::Syntax {
            location: Location::at_offset(text, offset.unwrap_or(0)),
            message,
        }
    })?;
    if let Some(template) = set.templates().next() {
        let offset = text.find(&template.to_cedar()).unwrap_or(0);
        return Err(PolicyError::Invalid {
            id: template.id().to_string(),
            location: Location::at_offset(text, offset),
            message: "templates (policies with `?principal` or `?resource`) are not supported"
                .into(),
        });
    }
    let lines = Lines::new(text);
    let count = set.policies().count();
    let mut loaded = Vec::with_capacity(count);
    let mut first_use: HashMap<String, Location> = HashMap::with_capacity(count);
    let mut cursor = 0;
    for n in 0..count {
        // Cedar names the policies of a parsed set `policy0`, `policy1`, ... in text order.
        let Some(policy) = set.policy(&PolicyId::new(format!("policy{n}"))) else {
            return Err(PolicyError::Internal(format!(
                "policy number {n} is missing from the parsed set"
            )));
        };
        let offset = policy
            .to_cedar()
            .and_then(|own| text.get(cursor..)?.find(&own).map(|at| (at, own.len())))
            .map_or(cursor, |(at, len)| {
                let start = cursor + at;
                cursor = start + len;
                start
            });
        let location = lines.locate(offset);
        let one = annotate(policy, n + 1, location)?;
        if let Some(first) = first_use.insert(one.id.clone(), location) {
            return Err(PolicyError::DuplicateId {
                id: one.id,
                location,
                first,
            });
        }
        loaded.push(one);
    }
    Ok(loaded)
}

fn annotate(policy: &Policy, position: usize, location: Location) -> Result<Loaded, PolicyError> {
    let generated = format!("policy-{position}");
    let invalid = |id: &str, message: String| PolicyError::Invalid {
        id: id.to_string(),
        location,
        message,
    };
    let id = match policy.annotation(ANNOTATION_ID) {
        None => generated,
        Some(id) if id.trim().is_empty() => {
            return Err(invalid(&generated, "`@id` is empty".into()));
        }
        Some(id) => id.to_string(),
    };
    let reason = match policy.annotation(ANNOTATION_REASON) {
        None => None,
        Some(reason) if reason.trim().is_empty() => {
            return Err(invalid(&id, "`@reason` is empty".into()));
        }
        Some(reason) => Some(reason.to_string()),
    };
    let unvalidated = match policy.annotation(ANNOTATION_UNVALIDATED) {
        None => false,
        Some(why) if why.trim().is_empty() => {
            return Err(invalid(
                &id,
                "`@unvalidated` needs a reason: `@unvalidated(\"why\")`".into(),
            ));
        }
        Some(_) => true,
    };
    crate::annotations::check_sandbox_grant(policy).map_err(|message| invalid(&id, message))?;
    Ok(Loaded {
        policy: policy.new_id(PolicyId::new(&id)),
        effect: policy.effect(),
        id,
        reason,
        unvalidated,
        location,
    })
}

/// The canonical Cedar text of one policy: Cedar's own rendering of its syntax tree, with
/// `@id` set to the policy's id, so formatting and comments do not change it.
pub(crate) fn canonical_text(one: &Loaded) -> Result<String, PolicyError> {
    let fail = |e: String| PolicyError::Invalid {
        id: one.id.clone(),
        location: one.location,
        message: format!("cannot render the policy: {e}"),
    };
    let mut est = one.policy.to_json().map_err(|e| fail(e.to_string()))?;
    if let Some(object) = est.as_object_mut() {
        let annotations = object
            .entry("annotations")
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(ANNOTATION_ID.into(), one.id.clone().into());
        }
    }
    let rendered = Policy::from_json(None, est).map_err(|e| fail(e.to_string()))?;
    rendered
        .to_cedar()
        .ok_or_else(|| fail("it has no text form".into()))
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
