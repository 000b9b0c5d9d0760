//! Checks an OCSF event against the attribute lists transcribed in `api_activity-1.7.0.json`:
//! every field name (outside `unmapped`) must exist for its class, profile or object, with the
//! transcribed JSON type; required attributes must be present (except the documented gaps);
//! enum ids must be listed and their sibling captions match; object constraints hold. Shared by
//! the zt-siem tests and the end-to-end export tests.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test support: a malformed checked-in schema fails the test"
)]

use serde_json::{Map, Value};

/// The transcribed schema.
pub struct Schema(Value);

impl Schema {
    /// Loads the checked-in transcription.
    pub fn load() -> Schema {
        Schema(serde_json::from_str(include_str!("../data/api_activity-1.7.0.json")).unwrap())
    }

    /// Every violation in `event`; empty when it conforms.
    pub fn check(&self, event: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(fields) = event.as_object() else {
            return vec!["event is not an object".into()];
        };
        let mut attributes = self.0["event"]["attributes"].as_object().unwrap().clone();
        let profiles = fields
            .get("metadata")
            .and_then(|m| m.get("profiles"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for profile in profiles {
            let name = profile.as_str().unwrap_or_default();
            match self.0["profiles"][name]["attributes"].as_object() {
                Some(extra) => attributes.extend(extra.clone()),
                None => errors.push(format!("profile `{name}` is not transcribed")),
            }
        }
        let gaps = self.0["known_gaps"].as_object().unwrap();
        self.check_fields("api_activity", fields, &attributes, gaps, &mut errors);
        self.check_classification(fields, &mut errors);
        errors
    }

    fn check_fields(
        &self,
        at: &str,
        fields: &Map<String, Value>,
        attributes: &Map<String, Value>,
        gaps: &Map<String, Value>,
        errors: &mut Vec<String>,
    ) {
        for (name, value) in fields {
            let path = format!("{at}.{name}");
            match attributes.get(name) {
                None => errors.push(format!("`{path}` is not an OCSF attribute there")),
                Some(def) => self.check_value(&path, def, value, fields, errors),
            }
        }
        for (name, def) in attributes {
            if def["requirement"] == "required"
                && !fields.contains_key(name)
                && !gaps.contains_key(name)
            {
                errors.push(format!("required `{at}.{name}` is missing"));
            }
        }
    }

    fn check_value(
        &self,
        path: &str,
        def: &Value,
        value: &Value,
        siblings: &Map<String, Value>,
        errors: &mut Vec<String>,
    ) {
        let Some(kind) = def["type"].as_str() else {
            errors.push(format!(
                "`{path}`: its type was not transcribed; do not emit it"
            ));
            return;
        };
        let items: Vec<&Value> = if def["is_array"] == true {
            match value.as_array() {
                Some(items) => items.iter().collect(),
                None => return errors.push(format!("`{path}` must be an array")),
            }
        } else {
            vec![value]
        };
        for item in items {
            if let Some(object) = kind.strip_prefix("object:") {
                self.check_object(path, object, item, errors);
                continue;
            }
            let ok = match kind {
                "integer_t" | "long_t" | "timestamp_t" => item.is_i64() || item.is_u64(),
                "boolean_t" => item.is_boolean(),
                _ => item.is_string(),
            };
            if !ok {
                errors.push(format!("`{path}` is not a {kind}: {item}"));
            }
        }
        if let Some(enumeration) = def["enum"].as_object() {
            let id = value.as_u64().map(|n| n.to_string()).unwrap_or_default();
            match enumeration.get(&id) {
                None => errors.push(format!("`{path}` = {value} is not in its enum")),
                Some(caption) => {
                    let sibling = def["sibling"].as_str().and_then(|s| siblings.get(s));
                    // Other (99) lets the sibling carry a source-specific name.
                    if let Some(text) = sibling {
                        if id != "99" && text != caption {
                            errors.push(format!("`{path}` = {id} is {caption}, not {text}"));
                        }
                    }
                }
            }
        }
    }

    fn check_object(&self, path: &str, object: &str, value: &Value, errors: &mut Vec<String>) {
        let Some(fields) = value.as_object() else {
            return errors.push(format!("`{path}` must be an object"));
        };
        if object == "object" {
            return; // `unmapped`: free-form by definition
        }
        let Some(def) = self.0["objects"][object].as_object() else {
            return errors.push(format!("`{path}`: object `{object}` is not transcribed"));
        };
        let attributes = def["attributes"].as_object().unwrap();
        self.check_fields(path, fields, attributes, &Map::new(), errors);
        if let Some(any) = def.get("at_least_one").and_then(Value::as_array) {
            if !any.iter().any(|k| fields.contains_key(k.as_str().unwrap())) {
                errors.push(format!("`{path}` needs at least one of {any:?}"));
            }
        }
    }

    fn check_classification(&self, fields: &Map<String, Value>, errors: &mut Vec<String>) {
        let class = &self.0["class"];
        let int = |k: &str| fields.get(k).and_then(Value::as_u64);
        if int("class_uid") != class["class_uid"].as_u64() {
            errors.push("class_uid is not api_activity's".into());
        }
        if int("category_uid") != class["category_uid"].as_u64() {
            errors.push("category_uid is not application's".into());
        }
        let (Some(class_uid), Some(activity)) = (int("class_uid"), int("activity_id")) else {
            return errors.push("class_uid or activity_id missing".into());
        };
        if int("type_uid") != Some(class_uid * 100 + activity) {
            errors.push("type_uid is not class_uid * 100 + activity_id".into());
        }
        let caption = &self.0["event"]["attributes"]["activity_id"]["enum"][activity.to_string()];
        let expected = format!(
            "{}: {}",
            class["caption"].as_str().unwrap(),
            caption.as_str().unwrap_or("?")
        );
        if fields.get("type_name").and_then(Value::as_str) != Some(expected.as_str()) {
            errors.push(format!("type_name must be `{expected}`"));
        }
    }
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").finish_non_exhaustive()
    }
}
