//! The request's JSON context to a Cedar context, plus what the server adds.
//!
//! JSON maps onto Cedar values one way only: objects become records (never entity or extension
//! escapes, whatever their keys), arrays become sets, strings, booleans and integers stay what
//! they are. A `null` member of an object is left out (so `context has k` is false). Anything
//! else (a fractional or out-of-range number, a `null` inside an array, nesting deeper than
//! [`MAX_DEPTH`], a well-known key of the wrong type) is refused, and the request denied.

use cedar_policy::{Context, RestrictedExpression};
use serde_json::{Map, Value};

use crate::schema::{
    CONTEXT_ACTION, CONTEXT_REQUEST_TIME, EXEC_CONTEXT_FIELDS, EXEC_CONTEXT_KEY,
    STRING_CONTEXT_KEYS,
};

/// Whether `value` has the schema's shape of `exec`: exactly its fields, each a string.
fn is_exec(value: &Value) -> bool {
    value.as_object().is_some_and(|fields| {
        fields.len() == EXEC_CONTEXT_FIELDS.len()
            && EXEC_CONTEXT_FIELDS
                .iter()
                .all(|name| fields.get(*name).is_some_and(Value::is_string))
    })
}

/// How deeply context values may nest.
pub(crate) const MAX_DEPTH: usize = 32;

/// Why a context could not become a Cedar context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ContextError {
    /// A number Cedar cannot hold.
    #[error("context value `{0}` is not an integer between -2^63 and 2^63-1")]
    Number(String),
    /// `null` in an array.
    #[error("context value `{0}` is null inside a list")]
    NullInList(String),
    /// Too deep.
    #[error("context value `{0}` is nested more than {MAX_DEPTH} levels deep")]
    TooDeep(String),
    /// A well-known key of the wrong type.
    #[error("context value `{0}` must be a string")]
    NotString(String),
    /// The broker's `exec` key of another shape.
    #[error("context value `exec` must be an object of the strings `program` and `args_sha256`, and nothing else")]
    NotExec,
    /// Cedar refused the record (not expected: keys of a JSON object are unique).
    #[error("context is not valid: {0}")]
    Cedar(String),
}

/// Builds the Cedar context: the request's `given` context (keys `action` and `request_time`
/// are replaced) plus `action` and `request_time` (seconds since the Unix epoch).
pub(crate) fn build(
    given: Option<&Map<String, Value>>,
    action: &str,
    request_time: i64,
) -> Result<Context, ContextError> {
    let mut pairs: Vec<(String, RestrictedExpression)> =
        Vec::with_capacity(given.map_or(0, Map::len) + 2);
    for (key, value) in given.into_iter().flatten() {
        if key == CONTEXT_ACTION || key == CONTEXT_REQUEST_TIME || value.is_null() {
            continue;
        }
        if STRING_CONTEXT_KEYS.contains(&key.as_str()) && !value.is_string() {
            return Err(ContextError::NotString(key.clone()));
        }
        if key == EXEC_CONTEXT_KEY && !is_exec(value) {
            return Err(ContextError::NotExec);
        }
        let converted = convert(value, 1).map_err(|e| e.under(key))?;
        pairs.push((key.clone(), converted));
    }
    pairs.push((
        CONTEXT_ACTION.to_string(),
        RestrictedExpression::new_string(action.to_string()),
    ));
    pairs.push((
        CONTEXT_REQUEST_TIME.to_string(),
        RestrictedExpression::new_long(request_time),
    ));
    Context::from_pairs(pairs).map_err(|e| ContextError::Cedar(e.to_string()))
}

fn convert(value: &Value, depth: usize) -> Result<RestrictedExpression, ContextError> {
    if depth > MAX_DEPTH {
        return Err(ContextError::TooDeep(String::new()));
    }
    Ok(match value {
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => return Err(ContextError::Number(String::new())),
        },
        Value::Array(items) => {
            let mut set = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                if item.is_null() {
                    return Err(ContextError::NullInList(format!("[{i}]")));
                }
                set.push(convert(item, depth + 1).map_err(|e| e.under(&format!("[{i}]")))?);
            }
            RestrictedExpression::new_set(set)
        }
        Value::Object(map) => {
            let mut fields = Vec::with_capacity(map.len());
            for (key, item) in map {
                if !item.is_null() {
                    fields.push((
                        key.clone(),
                        convert(item, depth + 1).map_err(|e| e.under(key))?,
                    ));
                }
            }
            RestrictedExpression::new_record(fields)
                .map_err(|e| ContextError::Cedar(e.to_string()))?
        }
        // Left out by the callers above.
        Value::Null => return Err(ContextError::NullInList(String::new())),
    })
}

impl ContextError {
    /// Prefixes the path of the offending value with `step` (a key or `[i]`).
    fn under(self, step: &str) -> Self {
        let join = |path: String| {
            if path.is_empty() || path.starts_with('[') {
                format!("{step}{path}")
            } else {
                format!("{step}.{path}")
            }
        };
        match self {
            Self::Number(p) => Self::Number(join(p)),
            Self::NullInList(p) => Self::NullInList(join(p)),
            Self::TooDeep(p) => Self::TooDeep(join(p)),
            other @ (Self::NotString(_) | Self::NotExec | Self::Cedar(_)) => other,
        }
    }
}

#[cfg(test)]
#[path = "context_tests.rs"]
mod tests;
