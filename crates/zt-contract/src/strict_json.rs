//! Strict JSON for what strangers send: request bodies, gateway messages, token headers.
//! serde_json alone lets the last of two equal keys win, and
//! serde's derived structs also accept a JSON array as a positional struct; both make one
//! document mean two things (a policy could read the first `approval_id`, a log the last).
//! So a body is read in two steps:
//!
//! 1. [`parse_document`]: syntax, then the document's shape: an object at the top, no
//!    duplicate key in any object at any depth, at most [`MAX_DEPTH`] nested objects/arrays,
//!    a tree of at most [`MAX_TREE_BYTES`] (a tree can take 60 times its body's bytes:
//!    `[0,0,…]` is two bytes an item in the body, about 117 in the tree);
//! 2. [`from_document`]: the typed request, from that tree, where a struct is only ever read
//!    from an object.

use serde::de::value::{Error as ShapeError, MapDeserializer, SeqDeserializer};
use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, Error as _, IntoDeserializer, MapAccess,
    SeqAccess, Unexpected, Visitor,
};
use serde_json::{Map, Number, Value};
use std::cell::Cell;

/// Deepest nesting of objects and arrays in a request body (the body object itself is level
/// 1, so a request's `context` may hold 30 more levels).
pub const MAX_DEPTH: usize = 32;

/// Most memory, as the costs below reckon it, that one document's tree may take: ample for a
/// 16 MiB string or tens of thousands of values, refused for a body of small values whose tree
/// would take gigabytes.
pub const MAX_TREE_BYTES: usize = 64 << 20;

/// What a tree costs, by the allocations serde_json makes for it, with or without its
/// `preserve_order` map (every binary here has it: `cedar-policy-core` asks for it). A vector
/// first allocates room for 4 and then doubles: an array is charged 4 places for its first
/// item and 2 for each. An object's first entry is charged a B-tree leaf of 11 entries (the
/// default map's smallest allocation; the indexed map's first ones are smaller), and each
/// entry twice its key, value and hash. A string costs its length and the allocator's header.
/// Checked against the allocator's own count in `tests/strict_json_memory.rs`.
const SLOT: usize = std::mem::size_of::<Value>();
const KEY: usize = std::mem::size_of::<String>();
const ARRAY_FIRST: usize = 4 * SLOT;
const ARRAY_ITEM: usize = 2 * SLOT;
const OBJECT_FIRST: usize = 11 * (KEY + SLOT) + 16;
const OBJECT_ENTRY: usize = 2 * (KEY + SLOT + 8) + 16;
const HEAP_HEADER: usize = 16;

fn string_cost(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len.saturating_add(HEAP_HEADER)
    }
}

/// Longest stretch of a key or path repeated back in an error message.
const MAX_ECHO: usize = 64;

/// Parses `bytes` as one JSON value of any kind, refusing duplicate keys at any depth and
/// nesting deeper than [`MAX_DEPTH`] (for protocols whose messages need not be objects).
pub fn parse_value(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let budget = Cell::new(MAX_TREE_BYTES);
    let value = StrictValue::top(&budget).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Parses `bytes` as one JSON document and checks its shape (see the module docs). Syntax
/// errors are serde_json's syntax errors; shape errors are its data errors.
pub fn parse_document(bytes: &[u8]) -> Result<Map<String, Value>, serde_json::Error> {
    match parse_value(bytes)? {
        Value::Object(map) => Ok(map),
        other => Err(serde_json::Error::custom(format!(
            "the request body must be a JSON object, not {}",
            kind(&other)
        ))),
    }
}

/// Reads a `T` from a document [`parse_document`] accepted. Unlike serde_json, never reads
/// a struct from an array.
pub fn from_document<T: DeserializeOwned>(document: &Map<String, Value>) -> Result<T, ShapeError> {
    T::deserialize(StrictObject(document))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `text` cut to [`MAX_ECHO`] characters.
fn echo(text: &str) -> String {
    let mut cut: String = text.chars().take(MAX_ECHO).collect();
    if cut.len() < text.len() {
        cut.push_str("...");
    }
    cut
}

/// Reads one JSON value, refusing duplicate keys and nesting deeper than [`MAX_DEPTH`].
/// Where the value is (for messages) is a chain of borrowed steps, only spelled out when a
/// message needs it: building every value's path up front would cost time and memory in
/// proportion to depth times size.
struct StrictValue<'p> {
    /// Nesting level of this value if it is an object or array.
    depth: usize,
    /// Tree bytes the document may still take (see [`MAX_TREE_BYTES`]).
    budget: &'p Cell<usize>,
    /// The step from the enclosing value to this one; `None` at the top.
    step: Option<(&'p StrictValue<'p>, Step<'p>)>,
}

#[derive(Clone, Copy)]
enum Step<'p> {
    Key(&'p str),
    Index(usize),
}

impl<'p> StrictValue<'p> {
    fn top(budget: &'p Cell<usize>) -> Self {
        StrictValue {
            depth: 1,
            budget,
            step: None,
        }
    }

    fn child<'c>(&'c self, step: Step<'c>) -> StrictValue<'c> {
        StrictValue {
            depth: self.depth.saturating_add(1),
            budget: self.budget,
            step: Some((self, step)),
        }
    }

    /// Takes `bytes` from the document's budget, or refuses the document once it is spent.
    fn charge<E: serde::de::Error>(&self, bytes: usize) -> Result<(), E> {
        match self.budget.get().checked_sub(bytes) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(E::custom(format!(
                "the document holds too many values: its tree would take more than {} MiB",
                MAX_TREE_BYTES >> 20
            ))),
        }
    }

    /// `context.tool.args[0]`; empty at the top.
    fn path(&self) -> String {
        let mut steps = Vec::new();
        let mut at = self;
        while let Some((parent, step)) = &at.step {
            steps.push(*step);
            at = *parent;
        }
        let mut path = String::new();
        for step in steps.into_iter().rev() {
            match step {
                Step::Key(key) if path.is_empty() => path.push_str(key),
                Step::Key(key) => {
                    path.push('.');
                    path.push_str(key);
                }
                Step::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        path
    }

    fn check_depth<E: serde::de::Error>(&self) -> Result<(), E> {
        if self.depth > MAX_DEPTH {
            return Err(E::custom(format!(
                "the request body is nested more than {MAX_DEPTH} levels deep"
            )));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number is not finite"))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.charge(string_cost(v.len()))?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.charge(string_cost(v.len()))?;
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.check_depth::<A::Error>()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child(Step::Index(items.len())))? {
            let first = if items.is_empty() { ARRAY_FIRST } else { 0 };
            self.charge::<A::Error>(first + ARRAY_ITEM)?;
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.check_depth::<A::Error>()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let first = if object.is_empty() { OBJECT_FIRST } else { 0 };
            self.charge::<A::Error>(first + OBJECT_ENTRY + string_cost(key.len()))?;
            if object.contains_key(&key) {
                let path = self.path();
                let place = if path.is_empty() {
                    String::new()
                } else {
                    format!(" in `{}`", echo(&path))
                };
                return Err(A::Error::custom(format!(
                    "duplicate key `{}`{place}",
                    echo(&key)
                )));
            }
            let value = map.next_value_seed(self.child(Step::Key(&key)))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A checked document's object, as a deserializer.
struct StrictObject<'a>(&'a Map<String, Value>);

/// Any value of a checked document, as a deserializer that reads structs only from objects.
#[derive(Clone, Copy)]
struct Strict<'a>(&'a Value);

impl<'de> Deserializer<'de> for StrictObject<'de> {
    type Error = ShapeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        let mut entries: MapDeserializer<'_, _, ShapeError> = MapDeserializer::new(
            self.0
                .iter()
                .map(|(key, value)| (key.as_str(), Strict(value))),
        );
        let value = visitor.visit_map(&mut entries)?;
        entries.end()?;
        Ok(value)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de> Deserializer<'de> for Strict<'de> {
    type Error = ShapeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    match n.as_f64() {
                        Some(f) => visitor.visit_f64(f),
                        None => Err(ShapeError::custom("a number is not representable")),
                    }
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut items: SeqDeserializer<_, ShapeError> =
                    SeqDeserializer::new(items.iter().map(Strict));
                let value = visitor.visit_seq(&mut items)?;
                items.end()?;
                Ok(value)
            }
            Value::Object(map) => StrictObject(map).deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ShapeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ShapeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        match self.0 {
            Value::Object(map) => StrictObject(map).deserialize_any(visitor),
            other => Err(ShapeError::invalid_type(unexpected(other), &visitor)),
        }
    }

    /// Only unit variants, spelled as strings: the request types have no other enums.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ShapeError> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(
                IntoDeserializer::<'_, ShapeError>::into_deserializer(s.as_str()),
            ),
            other => Err(ShapeError::invalid_type(unexpected(other), &visitor)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, ShapeError> for Strict<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Unexpected::Unsigned(u),
            (None, Some(i), _) => Unexpected::Signed(i),
            (None, None, Some(f)) => Unexpected::Float(f),
            (None, None, None) => Unexpected::Other("number"),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

#[cfg(test)]
#[path = "strict_json_tests.rs"]
mod tests;
