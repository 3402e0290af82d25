//! The payload of a verified token: a JSON object with no duplicate keys at any depth, its
//! registered claims typed, and every string free of control characters.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Nested claims deeper than this are refused (serde_json stops at 128 anyway).
const MAX_DEPTH: usize = 32;

/// The claims of a token as an object. Deserialising refuses a non-object payload (RFC 7519)
/// and duplicate members anywhere, which `serde_json::Value` would silently resolve to the last.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimSet(pub Map<String, Value>);

impl<'de> Deserialize<'de> for ClaimSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_map(StrictVisitor { depth: 0 })? {
            Value::Object(map) => Ok(Self(map)),
            _ => Err(de::Error::custom("claims must be a JSON object")),
        }
    }
}

struct StrictVisitor {
    depth: usize,
}

struct StrictSeed {
    depth: usize,
}

impl<'de> de::DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor { depth: self.depth })
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
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
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
        let depth = self.nested::<A::Error>()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictSeed { depth })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let depth = self.nested::<A::Error>()?;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom("duplicate claim"));
            }
            let value = access.next_value_seed(StrictSeed { depth })?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

impl StrictVisitor {
    fn nested<E: de::Error>(&self) -> Result<usize, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom("claims nested too deeply"));
        }
        Ok(self.depth + 1)
    }
}

/// The registered claims every accepted token carries, with their types enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredClaims {
    pub iss: String,
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    pub nbf: Option<u64>,
    pub jti: Option<String>,
}

/// Why a claim set is not acceptable; internal detail, never shown to callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("claim {0} is missing or of the wrong type")]
    Invalid(&'static str),
    #[error("a claim string contains a control character")]
    ControlCharacter,
}

impl RegisteredClaims {
    /// Reads the registered claims with strict types: `iss`/`sub` single strings, times
    /// integers of seconds, `jti` a string when present.
    pub fn from_claims(claims: &Map<String, Value>) -> Result<Self, ClaimError> {
        let string =
            |name: &'static str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let seconds = |name: &'static str| claims.get(name).and_then(Value::as_u64);
        let optional = |name: &'static str, value: Option<&Value>| match value {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(ClaimError::Invalid(name)),
        };
        let jti = match claims.get("jti") {
            None => None,
            Some(Value::String(jti)) if !jti.is_empty() => Some(jti.clone()),
            Some(_) => return Err(ClaimError::Invalid("jti")),
        };
        Ok(Self {
            iss: string("iss").ok_or(ClaimError::Invalid("iss"))?,
            sub: string("sub")
                .filter(|s| !s.is_empty())
                .ok_or(ClaimError::Invalid("sub"))?,
            exp: seconds("exp").ok_or(ClaimError::Invalid("exp"))?,
            iat: seconds("iat").ok_or(ClaimError::Invalid("iat"))?,
            nbf: optional("nbf", claims.get("nbf"))?,
            jti,
        })
    }
}

/// Refuses C0 and C1 control characters (U+0000–U+001F, U+007F–U+009F) in every string,
/// keys included: they truncate C strings and split log lines.
pub fn reject_control_characters(claims: &Map<String, Value>) -> Result<(), ClaimError> {
    fn clean(text: &str) -> bool {
        !text.chars().any(char::is_control)
    }
    fn walk(value: &Value) -> bool {
        match value {
            Value::String(text) => clean(text),
            Value::Array(items) => items.iter().all(walk),
            Value::Object(map) => map.iter().all(|(k, v)| clean(k) && walk(v)),
            _ => true,
        }
    }
    if claims.iter().all(|(k, v)| clean(k) && walk(v)) {
        Ok(())
    } else {
        Err(ClaimError::ControlCharacter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClaimSet, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn an_object_payload_is_accepted() {
        let claims = parse(r#"{"iss":"a","nested":{"x":[1,{"y":true}]}}"#).unwrap();
        assert_eq!(claims.0["nested"]["x"][1]["y"], Value::Bool(true));
    }

    #[test]
    fn non_object_payloads_and_duplicates_are_refused() {
        for text in [
            r#"[1,2,3]"#,
            r#""iss""#,
            r#"{"iss":"a","iss":"b"}"#,
            r#"{"repository":"org/app","repository":"evil/x"}"#,
            r#"{"nested":{"a":1,"a":2}}"#,
            r#"{"list":[{"a":1,"a":2}]}"#,
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!(r#"{{"x":{}1{}}}"#, "[".repeat(100), "]".repeat(100));
        assert!(parse(&text).is_err());
    }

    #[test]
    fn registered_claims_must_have_their_types() {
        let good = parse(r#"{"iss":"i","sub":"s","exp":20,"iat":10,"nbf":10,"jti":"j"}"#).unwrap();
        assert!(RegisteredClaims::from_claims(&good.0).is_ok());
        for text in [
            r#"{"iss":["i"],"sub":"s","exp":20,"iat":10}"#,
            r#"{"iss":"i","sub":42,"exp":20,"iat":10}"#,
            r#"{"iss":"i","sub":"","exp":20,"iat":10}"#,
            r#"{"iss":"i","sub":"s","exp":"20","iat":10}"#,
            r#"{"iss":"i","sub":"s","exp":20.5,"iat":10}"#,
            r#"{"iss":"i","sub":"s","exp":-1,"iat":10}"#,
            r#"{"iss":"i","sub":"s","exp":20}"#,
            r#"{"iss":"i","sub":"s","exp":20,"iat":"yesterday"}"#,
            r#"{"iss":"i","sub":"s","exp":20,"iat":10,"nbf":"soon"}"#,
            r#"{"iss":"i","sub":"s","exp":20,"iat":10,"jti":7}"#,
        ] {
            let claims = parse(text).unwrap();
            assert!(RegisteredClaims::from_claims(&claims.0).is_err(), "{text}");
        }
    }

    #[test]
    fn control_characters_anywhere_are_refused() {
        for text in [
            r#"{"sub":"repo:a/b\u0000evil"}"#,
            r#"{"sub":"main\n"}"#,
            r#"{"sub":"\u001b[31mred"}"#,
            r#"{"sub":"c1\u0085"}"#,
            r#"{"x":{"y":["\u007f"]}}"#,
            r#"{"k\u0000":"v"}"#,
        ] {
            let claims = parse(text).unwrap();
            assert_eq!(
                reject_control_characters(&claims.0),
                Err(ClaimError::ControlCharacter),
                "{text}"
            );
        }
        let clean =
            parse(r#"{"sub":"repo:acme/app:ref:refs/heads/main","ü":"Ünïcode ok"}"#).unwrap();
        assert!(reject_control_characters(&clean.0).is_ok());
    }
}
