//! Helpers shared by the policy tests.

use serde_json::{Map, Value};

use super::{IssuerRules, PolicySet, RawPolicy};

/// Compiles policies given as JSON against two issuers without required claims, `ci` and
/// `other`.
pub fn compile(policies: Value) -> PolicySet {
    let raw: Vec<RawPolicy> = serde_json::from_value(policies).unwrap();
    let require = Vec::new();
    let issuers = [
        IssuerRules {
            name: "ci",
            require_claims: &require,
        },
        IssuerRules {
            name: "other",
            require_claims: &require,
        },
    ];
    PolicySet::compile(&raw, &issuers).unwrap()
}

/// A claim set from a JSON object.
pub fn claims(value: Value) -> Map<String, Value> {
    let Value::Object(map) = value else {
        panic!("claims must be a JSON object, not {value}")
    };
    map
}
