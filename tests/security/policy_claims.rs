//! Claim contents where they meet matching (docs/threat-model.md): claims are compared byte for
//! byte, never as patterns, never normalised.

use serde_json::json;

use crate::harness::{Expect, check, setup};

#[tokio::test]
async fn near_miss_claims_are_denied_not_matched() {
    let (alpha, _beta, service) = setup().await;
    let rows = [
        ("M2 trailing space", json!({"repository": "acme/webapp "})),
        ("M3 case difference", json!({"repository": "ACME/webapp"})),
        (
            "M4 Cyrillic a inside",
            json!({"repository": "acme/web\u{0430}pp"}),
        ),
        (
            "M4 Cyrillic a first",
            json!({"repository": "\u{0430}cme/webapp"}),
        ),
        ("M5 a glob as data", json!({"repository": "acme/*"})),
        ("M5 a ref glob as data", json!({"ref": "refs/heads/*"})),
        (
            "M7 sub says main, ref does not",
            json!({"sub": "repo:acme/webapp:ref:refs/heads/main", "ref": "refs/heads/evil"}),
        ),
        (
            "M9 an array with no matching element",
            json!({"repository": ["evil/app", "acme/webapp2"]}),
        ),
    ];
    for (case, changes) in rows {
        let mut claims = alpha.claims();
        for (key, value) in changes.as_object().unwrap() {
            claims[key] = value.clone();
        }
        let token = alpha.token(&claims);
        check(case, service.exchange(&token).await, Expect::Denied, &token).await;
    }
    let mut claims = alpha.claims();
    claims["repository"] = json!(["evil/app", "acme/webapp"]);
    let token = alpha.token(&claims);
    check(
        "array claim holds if any element does",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
}
