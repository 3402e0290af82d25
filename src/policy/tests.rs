//! Load-time guardrails of [`PolicySet::compile`]: policies that would grant more than they
//! appear to are refused, naming the policy and the key.

use serde_json::{Value, json};

use super::{IssuerRules, PolicySet, RawPolicy};

/// Compiles one policy named `p` on issuer `ci` with this `match` and optional `condition`.
fn compile_match(matches: &Value, condition: Option<&str>) -> Result<PolicySet, String> {
    let policy = json!({
        "name": "p", "issuer": "ci", "match": matches, "condition": condition,
        "grant": {"serviceAccounts": ["production/deployer"]},
    });
    let raw: Vec<RawPolicy> = serde_json::from_value(json!([policy])).unwrap();
    let none = Vec::new();
    let issuers = [IssuerRules {
        name: "ci",
        require_claims: &none,
    }];
    PolicySet::compile(&raw, &issuers).map_err(|e| e.to_string())
}

#[test]
fn a_match_that_cannot_tell_callers_apart_is_refused() {
    let refused: &[(Value, Option<&str>)] = &[
        (json!({}), Some(r#"claims.sub == "deployer""#)),
        (json!({"aud": "tokenvend"}), None),
        (json!({"iss": "https://ci.example.com"}), None),
        (json!({"azp": "client"}), None),
        (
            json!({"aud": "tokenvend", "iss": "https://ci.example.com"}),
            None,
        ),
        (
            json!({"exp": 1_700_000_000, "iat": 1, "nbf": 1, "auth_time": 1}),
            None,
        ),
        (json!({"/aud": "tokenvend"}), None),
        (json!({"/aud/0": "tokenvend"}), None),
        (json!({"aud": {"oneOf": ["a", "b"]}}), Some("true")),
        (json!({"sub": {"regex": ".*"}}), None),
        (json!({"sub": {"regex": ".+"}}), None),
        (json!({"sub": {"regex": "(?s).*"}}), None),
        (json!({"sub": {"regex": "[\\s\\S]*"}}), None),
        (json!({"sub": {"regex": "(.*)|x"}}), None),
        (json!({"sub": {"regex": "\\S+"}}), None),
        (json!({"sub": {"glob": "*"}}), None),
        (json!({"sub": {"glob": "**"}}), None),
        (
            json!({"sub": {"glob": "*"}, "aud": "tokenvend"}),
            Some("true"),
        ),
    ];
    for (matches, condition) in refused {
        let error = compile_match(matches, *condition)
            .map(|_| ())
            .expect_err(&format!("{matches} {condition:?} loaded"));
        assert!(
            error.starts_with("policies[0] (p): match: ")
                && error.contains("cannot tell callers of issuer \"ci\" apart"),
            "{matches}: {error}"
        );
    }
}

#[test]
fn a_match_on_an_identifying_claim_loads() {
    let loads: &[(Value, Option<&str>)] = &[
        (json!({"sub": "deployer"}), None),
        (json!({"sub": "deployer", "aud": "tokenvend"}), None),
        (json!({"sub": {"oneOf": ["a", "b"]}}), None),
        (json!({"sub": {"glob": "repo:acme/*"}}), None),
        (json!({"sub": {"glob": "*-deployer"}}), None),
        (json!({"sub": {"regex": "repo:acme/.*"}}), None),
        (
            json!({"ref": {"regex": "refs/heads/(main|release-.*)"}}),
            None,
        ),
        (json!({"sub": {"regex": ".*"}, "repository_id": "1"}), None),
        (json!({"/google/compute_engine/project_id": "acme"}), None),
        (
            json!({"email": "a@example.com"}),
            Some("claims.email_verified"),
        ),
    ];
    for (matches, condition) in loads {
        assert!(
            compile_match(matches, *condition).is_ok(),
            "{matches} {condition:?}: {:?}",
            compile_match(matches, *condition).err()
        );
    }
}
