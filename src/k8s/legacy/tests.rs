use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;
use crate::config::Config;

fn token_secret() -> Secret {
    Secret {
        metadata: ObjectMeta {
            namespace: Some("production".into()),
            name: Some("deployer-token".into()),
            creation_timestamp: Some(Time(Timestamp::from_second(1_700_000_000).unwrap())),
            annotations: Some(BTreeMap::from([(
                SERVICE_ACCOUNT_ANNOTATION.to_owned(),
                "deployer".to_owned(),
            )])),
            labels: Some(BTreeMap::from([
                (LAST_USED_LABEL.to_owned(), "2025-03-04".to_owned()),
                (INVALID_SINCE_LABEL.to_owned(), "2025-06-01".to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some(TOKEN_SECRET_TYPE.into()),
        data: Some(BTreeMap::from([(
            "token".to_owned(),
            ByteString(b"SECRET-TOKEN-BYTES".to_vec()),
        )])),
        ..Secret::default()
    }
}

#[test]
fn a_token_secret_is_reduced_to_its_metadata() {
    let row = from_secret(token_secret()).unwrap();
    assert_eq!(
        (
            row.namespace.as_str(),
            row.secret.as_str(),
            row.service_account.as_str()
        ),
        ("production", "deployer-token", "deployer")
    );
    assert_eq!(row.last_used.as_deref(), Some("2025-03-04"));
    assert_eq!(row.invalid_since.as_deref(), Some("2025-06-01"));
    assert_eq!(row.created.unwrap().as_second(), 1_700_000_000);
    assert!(!format!("{row:?}").contains("SECRET-TOKEN-BYTES"));
}

#[test]
fn secrets_of_other_types_are_skipped() {
    let mut secret = token_secret();
    secret.type_ = Some("Opaque".into());
    assert_eq!(from_secret(secret), None);
}

#[test]
fn coverage_names_every_policy_granting_the_service_account() {
    let config = Config::parse(
        r#"
issuers: [{name: ci, url: "https://ci.example.com", audiences: [tokenvend]}]
policies:
  - {name: deploy, issuer: ci, match: {sub: a}, grant: {serviceAccounts: [production/deployer]}}
  - {name: other, issuer: ci, match: {sub: b}, grant: {serviceAccounts: [staging/deployer]}}
  - {name: both, issuer: ci, match: {sub: c}, grant: {serviceAccounts: [staging/x, production/deployer]}}
"#,
        Path::new("test.yaml"),
    )
    .unwrap();
    let covered = from_secret(token_secret()).unwrap();
    let mut uncovered = covered.clone();
    uncovered.namespace = "ci".into();
    let mut rows = [covered, uncovered];
    mark_coverage(&mut rows, &config.policies);
    assert_eq!(rows[0].covered_by, ["deploy", "both"]);
    assert!(rows[1].covered_by.is_empty());
}
