//! The strict JSON reader behind `decode`: it builds the same `serde_json::Value` tree
//! serde_json would, in the same single pass, but refuses an object that names a key
//! twice, at any depth. serde_json keeps the last of repeated keys, so a proxy or filter
//! that reads the first one would see a different frame than roomgate acts on. The check
//! rides on the map insert the tree needs anyway (its return value), so the happy path
//! pays no second parse and no extra lookup. It knows nothing about frame shapes, error
//! codes or sockets.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a text could not be read as strict JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictError {
    /// Not JSON at all (syntax, trailing bytes, bad escapes, numbers out of range).
    Syntax,
    /// Valid JSON, but some object repeats a key.
    DuplicateKey,
}

/// Parses `text` into a `Value`, refusing duplicate keys anywhere in it.
pub fn parse(text: &str) -> Result<Value, StrictError> {
    let mut de = serde_json::Deserializer::from_str(text);
    // serde's error type cannot carry our own kind through the parser, so the visitor
    // raises a flag before it fails; the flag, not the message text, tells the kinds apart.
    let mut duplicate = false;
    let value = StrictValue {
        duplicate: &mut duplicate,
    }
    .deserialize(&mut de);
    match value.and_then(|v| de.end().map(|()| v)) {
        Ok(v) => Ok(v),
        Err(_) if duplicate => Err(StrictError::DuplicateKey),
        Err(_) => Err(StrictError::Syntax),
    }
}

/// A seed for one JSON value; it carries the duplicate flag down the tree.
struct StrictValue<'f> {
    duplicate: &'f mut bool,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value without repeated object keys")
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

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json hands only finite floats to a visitor; `Null` mirrors its own Value.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(StrictValue {
            duplicate: &mut *self.duplicate,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(StrictValue {
                duplicate: &mut *self.duplicate,
            })?;
            if out.insert(key, value).is_some() {
                *self.duplicate = true;
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_tree_as_serde_json_without_duplicates() {
        for text in [
            r#"{"type":"message","data":{"roomId":"r","content":"a\"\u00e9\ud83d\ude00"},"timestamp":1}"#,
            r#"[1,-2,3.5,1e300,true,false,null,"",{},[],{"a":{"b":[{"c":null}]}}]"#,
            r#"  {"a" : 18446744073709551615 , "b": -9223372036854775808}  "#,
        ] {
            let ours = parse(text).expect("valid JSON");
            let theirs: Value = serde_json::from_str(text).expect("valid JSON");
            assert_eq!(ours, theirs, "{text}");
        }
    }

    #[test]
    fn duplicates_at_any_depth_are_refused() {
        for text in [
            r#"{"type":"auth","type":"join"}"#,
            r#"{"data":{"roomId":"a","roomId":"b"}}"#,
            r#"[{"x":1},{"y":{"z":1,"z":1}}]"#,
            // Escapes do not hide a repeat: both keys are "a" once read.
            r#"{"a":1,"\u0061":2}"#,
        ] {
            assert_eq!(parse(text), Err(StrictError::DuplicateKey), "{text}");
        }
        // The same key in sibling objects is not a repeat.
        assert!(parse(r#"{"a":{"k":1},"b":{"k":1}}"#).is_ok());
    }

    #[test]
    fn syntax_errors_are_told_apart() {
        for text in [
            "",
            "{",
            r#"{"a":1}x"#,
            r#"{"a":1,}"#,
            r#""\ud800""#,
            "1e999",
        ] {
            assert_eq!(parse(text), Err(StrictError::Syntax), "{text:?}");
        }
    }
}
