//! Schema validation of a loaded policy set (strict mode), against the shipped schema plus the
//! actions the policies name (see `schema.rs`).
//!
//! Cedar's validator checks each policy against every declared action its scope admits, so one
//! schema naming the actions of 10,000 policies takes quadratic time. Policies are validated
//! in chunks instead, each against the actions its own policies name; the stand-in member of
//! each group makes that verdict the same as with every action declared.

use std::collections::BTreeSet;

use cedar_policy::{PolicySet, SchemaFragment, ValidationMode, ValidationWarning, Validator};
use zt_contract::names::{ActionPattern, NameError};

use crate::error::{diagnostic_parts, Lines, PolicyError};
use crate::harvest::Mentions;
use crate::load::Loaded;
use crate::schema::{is_declared_context_key, shipped, validation_schema};

/// Policies validated together.
const CHUNK: usize = 8;

/// What validation found besides errors.
#[derive(Debug, Default)]
pub(crate) struct Validated {
    /// The validator's warnings that did not stop loading.
    pub warnings: Vec<String>,
    /// Every action and action group id the policies name, anywhere.
    pub actions: BTreeSet<String>,
}

/// Validates every policy not marked `@unvalidated`; returns the validator's remaining warnings
/// (for instance confusable identifiers) and the actions named. A policy the validator proves
/// can never apply is an error, not a warning: a `forbid` that never matches is a hole nobody
/// sees. So is an action name a request can never carry (upper case, outside the action
/// grammar, or a group not at a dot): every policy, `@unvalidated` or not, is checked for
/// those. The error reported is the first in text order.
pub(crate) fn validate(text: &str, loaded: &[Loaded]) -> Result<Validated, PolicyError> {
    let mut checked: Vec<(&Loaded, Mentions)> = Vec::with_capacity(loaded.len());
    let mut actions = BTreeSet::new();
    for one in loaded {
        let est = one.policy.to_json().map_err(|e| PolicyError::Invalid {
            id: one.id.clone(),
            location: one.location,
            message: format!("cannot read the policy: {e}"),
        })?;
        let mentions = Mentions::of(&est);
        if let Some(ty) = mentions.unknown_types.iter().next() {
            return Err(PolicyError::Invalid {
                id: one.id.clone(),
                location: one.location,
                message: format!(
                    "entity type `{ty}` is not in the schema (expected `Agent`, `Group`, `Action` or `Resource`)"
                ),
            });
        }
        check_action_names(&mentions).map_err(|message| PolicyError::Invalid {
            id: one.id.clone(),
            location: one.location,
            message,
        })?;
        actions.extend(mentions.actions.iter().cloned());
        if !one.unvalidated {
            checked.push((one, mentions));
        }
    }
    let shipped = shipped()?;
    let lines = Lines::new(text);
    let mut warnings = Vec::new();
    for chunk in checked.chunks(CHUNK) {
        validate_chunk(&lines, &shipped, chunk, &mut warnings)?;
    }
    Ok(Validated { warnings, actions })
}

/// Refuses action ids that are not `*`, a group `<action>.*` or a lower-case action name, and
/// strings compared with `context.action` that hold upper case: no request could match them.
fn check_action_names(mentions: &Mentions) -> Result<(), String> {
    for id in &mentions.actions {
        let shown = id.escape_debug();
        match ActionPattern::parse(id) {
            Ok(ActionPattern::All | ActionPattern::Group(_) | ActionPattern::Exact(_)) => {}
            Ok(ActionPattern::Prefix(_)) => {
                return Err(format!(
                    "`Action::\"{shown}\"` is not an action group: groups end in `.*` (to match \
                     a prefix not at a dot, scope to the group and test \
                     `context.action like \"{shown}\"`)"
                ))
            }
            Err(e) => return Err(format!("`Action::\"{shown}\"`: {e}")),
        }
    }
    for literal in &mentions.action_literals {
        if let Some(at) = literal.bytes().position(|b| b.is_ascii_uppercase()) {
            let error = NameError::UpperCase {
                kind: zt_contract::names::NameKind::ActionPattern,
                character: zt_contract::names::Shown(char::from(
                    literal.as_bytes().get(at).copied().unwrap_or(b'?'),
                )),
                at,
            };
            return Err(format!(
                "`context.action` is compared with \"{}\": {error}",
                literal.escape_debug()
            ));
        }
    }
    Ok(())
}

fn validate_chunk(
    lines: &Lines<'_>,
    shipped: &SchemaFragment,
    chunk: &[(&Loaded, Mentions)],
    warnings: &mut Vec<String>,
) -> Result<(), PolicyError> {
    let mut actions = BTreeSet::new();
    let mut set = PolicySet::new();
    for (one, mentions) in chunk {
        actions.extend(mentions.actions.iter().cloned());
        set.add(one.policy.clone())
            .map_err(|e| PolicyError::Internal(e.to_string()))?;
    }
    let validator = Validator::new(validation_schema(shipped, &actions)?);
    let result = validator.validate(&set, ValidationMode::Strict);

    // (position in chunk, offset, error) of the first problem in text order.
    let mut first: Option<(usize, usize, PolicyError)> = None;
    let mut consider = |id: &str, diagnostic: &dyn miette::Diagnostic| {
        let Some((position, (one, mentions))) =
            chunk.iter().enumerate().find(|(_, (one, _))| one.id == id)
        else {
            return;
        };
        let (offset, message) = diagnostic_parts(diagnostic);
        let at = offset.unwrap_or(usize::MAX);
        if first
            .as_ref()
            .is_some_and(|(p, o, _)| (*p, *o) <= (position, at))
        {
            return;
        }
        let prefix = format!("for policy `{id}`, ");
        let mut message = message
            .strip_prefix(&prefix)
            .unwrap_or(&message)
            .to_string();
        if let Some(key) = mentions
            .context_keys
            .iter()
            .find(|k| !is_declared_context_key(k))
        {
            message.push_str(&format!(
                "; the policy reads context key `{key}`, which the schema does not declare: \
                 annotate it `@unvalidated(\"why\")` to skip type checking (it still denies \
                 when its evaluation fails)"
            ));
        }
        let location = offset.map_or(one.location, |o| lines.locate(o));
        first = Some((
            position,
            at,
            PolicyError::Invalid {
                id: one.id.clone(),
                location,
                message,
            },
        ));
    };
    for error in result.validation_errors() {
        consider(error.policy_id().as_ref(), error);
    }
    for warning in result.validation_warnings() {
        match warning {
            ValidationWarning::ImpossiblePolicy(_)
            | ValidationWarning::InvalidActionApplication(_) => {
                consider(warning.policy_id().as_ref(), warning);
            }
            _ => warnings.push(warning.to_string()),
        }
    }
    match first {
        Some((_, _, error)) => Err(error),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
