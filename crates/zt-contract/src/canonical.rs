//! Canonical JSON: object keys sorted recursively, no insignificant whitespace, JSON string
//! escaping. For the records this project writes (strings, integers, booleans and nested
//! objects) this is byte for byte what RFC 8785 (JCS) and Python's
//! `json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` produce.
//!
//! Keys are sorted by Unicode code point, the order Python uses. We sort explicitly rather than
//! relying on `serde_json::Map` ordering, which changes if any crate in a build turns on
//! serde_json's `preserve_order` feature.

use serde_json::{Map, Value};

/// Returns the canonical JSON text of `value`.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(value, &mut out);
    out
}

/// Returns the canonical JSON text of the object `map` (as [`canonical_json`] of
/// `Value::Object`, without building one).
pub fn canonical_object(map: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(256);
    write_object(map, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(map, out),
    }
}

fn write_object(map: &Map<String, Value>, out: &mut String) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(key, out);
        out.push(':');
        write_value(item, out);
    }
    out.push('}');
}

/// JSON string escaping as RFC 8785 requires: `"` and `\` escaped, the short escapes for
/// `\b \f \n \r \t`, `\u00xx` (lowercase hex) for other control characters, everything else
/// literal UTF-8.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_object_reads_the_same_without_its_value_wrapper() {
        let v = json!({"b": [1, {"d": "x\n", "c": null}], "a": true});
        let map = v.as_object().unwrap();
        assert_eq!(canonical_object(map), canonical_json(&v));
    }

    #[test]
    fn sorts_keys_recursively_without_whitespace() {
        let v = json!({"b": 1, "a": {"z": true, "y": null}, "c": [ {"k": "v", "j": 2} ]});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"y":null,"z":true},"b":1,"c":[{"j":2,"k":"v"}]}"#
        );
    }

    /// Found by the `canonical_json` fuzz target: without serde_json's `float_roundtrip`, an
    /// integer past `u64` was parsed one ULP off, so the canonical text of a parsed context
    /// read back as another number and hashed differently.
    #[test]
    fn numbers_read_back_as_the_same_number() {
        for text in [
            "18446744223372036854775880",
            "1.8446744223372038e25",
            "0.1",
            "1e300",
            "-0",
            "2.2250738585072014e-308",
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            let again: Value = serde_json::from_str(&canonical_json(&v)).unwrap();
            assert_eq!(again, v, "{text}");
        }
    }

    #[test]
    fn escapes_like_jcs() {
        let v = json!({"s": "q\"b\\\u{08}\u{0c}\n\r\t\u{01}\u{1f}é€😀/"});
        assert_eq!(
            canonical_json(&v),
            "{\"s\":\"q\\\"b\\\\\\b\\f\\n\\r\\t\\u0001\\u001fé€😀/\"}"
        );
    }

    #[test]
    fn agrees_with_serde_json_on_sorted_input() {
        let text = r#"{"a":"x\u0000y","b":[1,-2,3],"c":{"d":false}}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(canonical_json(&v), text);
    }
}
