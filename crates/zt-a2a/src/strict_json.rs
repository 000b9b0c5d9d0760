//! Strict JSON for what strangers send: a document with a duplicate object key is refused,
//! because two parsers may keep different copies (the proxy decides on one, the agent acts on
//! the other).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` as one JSON value, refusing duplicate keys at any depth.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = deserializer.deserialize_any(StrictVisitor)?;
    deserializer.end()?;
    Ok(value)
}

struct StrictVisitor;

struct StrictValue(Value);

impl<'de> de::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for doc in [
            r#"{"method":"GetTask","method":"SendMessage"}"#,
            r#"{"params":{"message":{"metadata":{"resource":"a","resource":"b"}}}}"#,
            r#"[{"a":1,"a":1}]"#,
        ] {
            let error = parse(doc.as_bytes()).unwrap_err().to_string();
            assert!(error.contains("duplicate key"), "{doc}: {error}");
        }
    }

    #[test]
    fn ordinary_documents_parse_like_serde_json() {
        let doc = r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"é\u0000"}"#;
        assert_eq!(
            parse(doc.as_bytes()).unwrap(),
            serde_json::from_str::<serde_json::Value>(doc).unwrap()
        );
    }

    #[test]
    fn trailing_garbage_and_bad_json_are_refused() {
        for doc in ["{} {}", "{", "", "{'a':1}", "[1,]"] {
            assert!(parse(doc.as_bytes()).is_err(), "{doc}");
        }
    }
}
