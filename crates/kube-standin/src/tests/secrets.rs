//! Secret create, delete and deletecollection over HTTPS, through the real kube client where
//! it can say what is checked, and raw where the exact body matters; and Secret-bound tokens
//! that die with their Secret behind the token success cache (the crate's README.md,
//! "Secrets and revocation").

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use serde_json::{Value, json};

use super::kube_client::kube_client;
use super::*;
use crate::{DEFAULT_ISSUER, Fault, FaultTarget};

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const SELF_SUBJECT_REVIEWS: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
const BINDING_TYPE: &str = "tokenvend.io/token-binding";

/// A binding Secret as tokenvend creates one: generated name, custom type, labels, no data.
fn binding(expires: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            generate_name: Some("tokenvend-".into()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    "tokenvend".to_owned(),
                ),
                ("tokenvend.io/expires".to_owned(), expires.to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some(BINDING_TYPE.into()),
        ..Secret::default()
    }
}

async fn secrets_api(server: &ApiServer, token: &str) -> Api<Secret> {
    Api::namespaced(kube_client(server, token).await, "payments")
}

async fn create_binding(api: &Api<Secret>, expires: &str) -> Secret {
    api.create(&PostParams::default(), &binding(expires))
        .await
        .unwrap()
}

fn name_of(secret: &Secret) -> String {
    secret.metadata.name.clone().unwrap()
}

fn uid_of(secret: &Secret) -> String {
    secret.metadata.uid.clone().unwrap()
}

fn api_error(error: kube::Error) -> kube::core::Status {
    match error {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn kube_creates_a_secret_with_a_generated_name() {
    let server = start(options()).await;
    let api = secrets_api(&server, ADMIN).await;
    let created = create_binding(&api, "1784887200").await;
    let name = name_of(&created);
    let suffix = name.strip_prefix("tokenvend-").unwrap();
    assert_eq!(suffix.len(), 5, "{name}");
    assert!(
        suffix
            .bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
        "{name}"
    );
    assert_eq!(created.metadata.namespace.as_deref(), Some("payments"));
    assert_eq!(created.type_.as_deref(), Some(BINDING_TYPE));
    assert!(uuid::Uuid::parse_str(&uid_of(&created)).is_ok());
    assert!(created.metadata.creation_timestamp.is_some());
    assert!(created.data.is_none());
    // Lists and gets see it, with a resource version past every seeded object's.
    let fetched = api.get(&name).await.unwrap();
    assert_eq!(uid_of(&fetched), uid_of(&created));
    let listed = api
        .list(&ListParams::default().labels("tokenvend.io/expires in (1784887200,1)"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.metadata.resource_version,
        created.metadata.resource_version
    );
    assert!(
        server
            .secrets()
            .iter()
            .any(|s| uid_of(s) == uid_of(&created))
    );
    assert_eq!(server.secret_writes(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_create_is_refused_like_kube_apiserver_refuses_it() {
    let server = start(options()).await;
    let path = "/api/v1/namespaces/payments/secrets";
    let reply = post(
        &server,
        path,
        Some(ADMIN),
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x","namespace":"web"}}"#,
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the namespace of the provided object does not match the namespace sent on the request","reason":"BadRequest","code":400})
    );
    let reply = post(
        &server,
        path,
        Some(ADMIN),
        r#"{"metadata":{"name":"plain"}}"#,
    )
    .await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"secrets \"plain\" already exists","reason":"AlreadyExists","details":{"name":"plain","kind":"secrets"},"code":409})
    );
    let reply = post(
        &server,
        path,
        Some(ADMIN),
        r#"{"metadata":{"name":"Bad_Name"},"data":{"a b":"eA=="}}"#,
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    let name_error = r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    let key_error = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
    assert_eq!(
        reply.json(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message": format!("Secret \"Bad_Name\" is invalid: [metadata.name: Invalid value: \"Bad_Name\": {name_error}, data[a b]: Invalid value: \"a b\": {key_error}]"),
            "reason":"Invalid",
            "details":{"name":"Bad_Name","kind":"Secret","causes":[
                {"reason":"FieldValueInvalid","message":format!("Invalid value: \"Bad_Name\": {name_error}"),"field":"metadata.name"},
                {"reason":"FieldValueInvalid","message":format!("Invalid value: \"a b\": {key_error}"),"field":"data[a b]"}]},
            "code":422})
    );
    // ValidateSecret's order: object meta, data keys, then the type's own rules.
    let reply = post(
        &server,
        path,
        Some(ADMIN),
        r#"{"metadata":{"name":"t","labels":{"app":"-x"},"annotations":{"a b":"x"}},"type":"kubernetes.io/service-account-token","data":{"k k":""}}"#,
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    let fields: Vec<Value> = reply.json()["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cause| json!([cause["field"], cause["reason"]]))
        .collect();
    assert_eq!(
        fields,
        [
            json!(["metadata.labels", "FieldValueInvalid"]),
            json!(["metadata.annotations", "FieldValueInvalid"]),
            json!(["data[k k]", "FieldValueInvalid"]),
            json!([
                "metadata.annotations[kubernetes.io/service-account.name]",
                "FieldValueRequired"
            ]),
        ]
    );
    let reply = post(&server, path, Some(ADMIN), r#"{"metadata":{}}"#).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(
        reply.json()["message"],
        "Secret \"\" is invalid: metadata.name: Required value: name or generateName is required"
    );
    assert_eq!(server.secret_writes(), 5);
    assert_eq!(server.secrets().len(), options().secrets.len());
    server.shutdown().await;
}

#[tokio::test]
async fn data_and_string_data_are_stored_as_base64_data() {
    let server = start(options()).await;
    let reply = post(
        &server,
        "/api/v1/namespaces/payments/secrets",
        Some(ADMIN),
        r#"{"metadata":{"name":"s"},"data":{"a":"eA=="},"stringData":{"b":"y"}}"#,
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["data"], json!({"a": "eA==", "b": "eQ=="}));
    assert_eq!(body["type"], "Opaque");
    assert_eq!(body.get("stringData"), None);
    server.shutdown().await;
}

#[tokio::test]
async fn kube_deletes_a_secret_with_a_uid_precondition() {
    let server = start(options()).await;
    let api = secrets_api(&server, ADMIN).await;
    let created = create_binding(&api, "1").await;
    let name = name_of(&created);
    let wrong = DeleteParams::default().preconditions(Preconditions {
        uid: Some("00000000-0000-4000-8000-000000000000".into()),
        resource_version: None,
    });
    let status = api_error(api.delete(&name, &wrong).await.unwrap_err());
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    assert_eq!(
        status.message,
        format!(
            "Operation cannot be fulfilled on secrets \"{name}\": StorageError: invalid object, Code: 4, Key: /registry/secrets/payments/{name}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: 00000000-0000-4000-8000-000000000000, UID in object meta: {}",
            uid_of(&created)
        )
    );
    assert!(api.get_opt(&name).await.unwrap().is_some());
    let right = DeleteParams::default().preconditions(Preconditions {
        uid: Some(uid_of(&created)),
        resource_version: None,
    });
    let deleted = api.delete(&name, &right).await.unwrap();
    let status = deleted.right().expect("a Status, not the object");
    assert_eq!(
        status.status,
        Some(kube::core::response::StatusSummary::Success)
    );
    let details = status.details.unwrap();
    assert_eq!(
        (
            details.name.as_str(),
            details.kind.as_str(),
            details.uid.as_str()
        ),
        (name.as_str(), "secrets", uid_of(&created).as_str())
    );
    assert!(api.get_opt(&name).await.unwrap().is_none());
    let status = api_error(api.delete(&name, &right).await.unwrap_err());
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(status.message, format!("secrets \"{name}\" not found"));
    assert_eq!(server.secret_writes(), 4);
    server.shutdown().await;
}

#[tokio::test]
async fn delete_answers_kube_apiservers_exact_bodies() {
    let server = start(options()).await;
    let uid = uid_of(
        &server
            .secrets()
            .into_iter()
            .find(|s| name_of(s) == "plain")
            .unwrap(),
    );
    let path = "/api/v1/namespaces/payments/secrets/plain";
    let reply = delete(
        &server,
        path,
        Some(ADMIN),
        Some(r#"{"kind":"DeleteOptions","apiVersion":"v1","preconditions":{"uid":"other"}}"#),
    )
    .await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message": format!("Operation cannot be fulfilled on secrets \"plain\": StorageError: invalid object, Code: 4, Key: /registry/secrets/payments/plain, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: other, UID in object meta: {uid}"),
            "reason":"Conflict","details":{"name":"plain","kind":"secrets"},"code":409})
    );
    let version = server
        .secrets()
        .into_iter()
        .find(|s| name_of(s) == "plain")
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let reply = delete(
        &server,
        path,
        Some(ADMIN),
        Some(r#"{"preconditions":{"resourceVersion":"999"}}"#),
    )
    .await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert_eq!(
        reply.json()["message"],
        format!(
            "Operation cannot be fulfilled on secrets \"plain\": StorageError: invalid object, Code: 4, Key: /registry/secrets/payments/plain, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: ResourceVersion in precondition: 999, ResourceVersion in object meta: {version}"
        )
    );
    // Without a body, and with a dry run: nothing is deleted.
    let reply = delete(&server, &format!("{path}?dryRun=All"), Some(ADMIN), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(server.secrets().iter().any(|s| name_of(s) == "plain"));
    let reply = delete(&server, path, Some(ADMIN), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.text,
        format!(
            r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Success","details":{{"name":"plain","kind":"secrets","uid":"{uid}"}}}}"#
        )
    );
    let reply = delete(&server, path, Some(ADMIN), None).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"secrets \"plain\" not found","reason":"NotFound","details":{"name":"plain","kind":"secrets"},"code":404})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn kube_deletes_a_collection_by_a_set_based_selector() {
    let server = start(options()).await;
    let api = secrets_api(&server, ADMIN).await;
    let first = create_binding(&api, "100").await;
    let second = create_binding(&api, "200").await;
    let kept = create_binding(&api, "300").await;
    let other_namespace: Api<Secret> = Api::namespaced(kube_client(&server, ADMIN).await, "web");
    other_namespace
        .create(&PostParams::default(), &binding("100"))
        .await
        .unwrap();
    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default()
                .labels("app.kubernetes.io/managed-by=tokenvend,tokenvend.io/expires in (100,200)"),
        )
        .await
        .unwrap();
    let list = deleted.left().expect("the list of deleted Secrets");
    let mut names: Vec<String> = list.items.iter().map(name_of).collect();
    names.sort();
    let mut expected = vec![name_of(&first), name_of(&second)];
    expected.sort();
    assert_eq!(names, expected);
    let remaining: Vec<String> = server.secrets().iter().map(name_of).collect();
    assert!(remaining.contains(&name_of(&kept)));
    assert!(!remaining.contains(&name_of(&first)));
    assert!(!remaining.contains(&name_of(&second)));
    assert_eq!(
        server
            .secrets()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some("web")
                && s.type_.as_deref() == Some(BINDING_TYPE))
            .count(),
        1
    );
    // Nothing matches any more: an empty list, still a SecretList.
    let reply = delete(
        &server,
        "/api/v1/namespaces/payments/secrets?labelSelector=tokenvend.io%2Fexpires+in+%28100%2C200%29",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["kind"], "SecretList");
    assert_eq!(body["items"], json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn secret_writes_need_their_rbac_verbs() {
    let mut options = options();
    options.rbac.push(
        RbacRule::allow("minter", &["delete"], &[""], &["secrets"])
            .in_namespace("payments")
            .named(&["plain"]),
    );
    let server = start(options).await;
    let collection = "/api/v1/namespaces/payments/secrets";
    let forbidden = |message: &str, name: Option<&str>| {
        let mut details = json!({"kind": "secrets"});
        if let Some(name) = name {
            details["name"] = json!(name);
        }
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":message,"reason":"Forbidden","details":details,"code":403})
    };
    let reply = post(&server, collection, Some(MINTER), &binding_json()).await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(
        reply.json(),
        forbidden(
            r#"secrets is forbidden: User "minter" cannot create resource "secrets" in API group "" in the namespace "payments""#,
            None
        )
    );
    let reply = delete(
        &server,
        &format!("{collection}/legacy-1"),
        Some(MINTER),
        None,
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(
        reply.json(),
        forbidden(
            r#"secrets "legacy-1" is forbidden: User "minter" cannot delete resource "secrets" in API group "" in the namespace "payments""#,
            Some("legacy-1")
        )
    );
    let reply = delete(
        &server,
        &format!("{collection}?labelSelector=a"),
        Some(MINTER),
        None,
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(
        reply.json(),
        forbidden(
            r#"secrets is forbidden: User "minter" cannot deletecollection resource "secrets" in API group "" in the namespace "payments""#,
            None
        )
    );
    // resourceNames restrict delete: the named Secret may go.
    let reply = delete(&server, &format!("{collection}/plain"), Some(MINTER), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(server.secret_writes(), 4);
    assert_eq!(server.secrets().len(), super::options().secrets.len() - 1);
    server.shutdown().await;
}

fn binding_json() -> String {
    serde_json::to_string(&binding("1")).unwrap()
}

/// Mints a `payments/billing` token for the API audiences, bound to Secret `name`.
async fn mint_secret_bound(server: &ApiServer, name: &str) -> Reply {
    let body =
        json!({"spec": {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": name}}});
    post(
        server,
        &token_path("payments", "billing"),
        Some(MINTER),
        &body.to_string(),
    )
    .await
}

fn claims_of(token: &str) -> Value {
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

async fn token_review(server: &ApiServer, token: &str) -> Value {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
    let reply = post(server, TOKEN_REVIEWS, Some(MINTER), &body.to_string()).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json()["status"].clone()
}

/// Polls TokenReview until the token stops authenticating; `None` if it never does.
async fn review_until_refused(server: &ApiServer, token: &str) -> Option<Value> {
    for _ in 0..100 {
        let status = token_review(server, token).await;
        if status.get("authenticated").is_none() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn a_secret_bound_token_dies_with_its_secret_after_the_cache_ttl() {
    let server = start(ApiServerOptions {
        token_success_cache_ttl: Duration::from_millis(300),
        ..options()
    })
    .await;
    let api = secrets_api(&server, ADMIN).await;
    let secret = create_binding(&api, "1").await;
    let reply = mint_secret_bound(&server, &name_of(&secret)).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let token = reply.json()["status"]["token"].as_str().unwrap().to_owned();
    assert_eq!(
        claims_of(&token)["kubernetes.io"]["secret"],
        json!({"name": name_of(&secret), "uid": uid_of(&secret)})
    );
    let status = token_review(&server, &token).await;
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:payments:billing"
    );
    let whoami = post(&server, SELF_SUBJECT_REVIEWS, Some(&token), "{}").await;
    assert_eq!(whoami.status, 201, "{}", whoami.text);
    api.delete(&name_of(&secret), &DeleteParams::default())
        .await
        .unwrap();
    let refused = review_until_refused(&server, &token)
        .await
        .expect("the token stops authenticating");
    assert_eq!(
        refused,
        json!({"user": {}, "error": "service account token has been invalidated"})
    );
    let reply = post(&server, SELF_SUBJECT_REVIEWS, Some(&token), "{}").await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})
    );
    // Minting against the deleted Secret is a 404 on it.
    let reply = mint_secret_bound(&server, &name_of(&secret)).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(
        reply.json()["message"],
        format!("secrets \"{}\" not found", name_of(&secret))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_recreated_secret_of_the_same_name_does_not_revive_the_token() {
    let server = start(ApiServerOptions {
        token_success_cache_ttl: Duration::ZERO,
        ..options()
    })
    .await;
    let api = secrets_api(&server, ADMIN).await;
    let mut named = binding("1");
    named.metadata.generate_name = None;
    named.metadata.name = Some("bound".into());
    let first = api.create(&PostParams::default(), &named).await.unwrap();
    let reply = mint_secret_bound(&server, "bound").await;
    let token = reply.json()["status"]["token"].as_str().unwrap().to_owned();
    api.delete("bound", &DeleteParams::default()).await.unwrap();
    let second = api.create(&PostParams::default(), &named).await.unwrap();
    let status = token_review(&server, &token).await;
    assert_eq!(
        status["error"],
        format!(
            "secret UID ({}) does not match service account secret ref claim ({})",
            uid_of(&second),
            uid_of(&first)
        )
    );
    server.shutdown().await;
}

#[test]
fn the_success_cache_ttl_defaults_to_kube_apiservers() {
    assert_eq!(
        ApiServerOptions::default().token_success_cache_ttl,
        Duration::from_secs(10)
    );
}

#[tokio::test]
async fn a_revoked_token_still_passes_within_the_success_cache_ttl() {
    // A TTL far longer than the few requests below take (kube-apiserver's is 10 s).
    let server = start(ApiServerOptions {
        token_success_cache_ttl: Duration::from_secs(600),
        ..options()
    })
    .await;
    let api = secrets_api(&server, ADMIN).await;
    let secret = create_binding(&api, "1").await;
    let reply = mint_secret_bound(&server, &name_of(&secret)).await;
    let token = reply.json()["status"]["token"].as_str().unwrap().to_owned();
    assert_eq!(token_review(&server, &token).await["authenticated"], true);
    let whoami = post(&server, SELF_SUBJECT_REVIEWS, Some(&token), "{}").await;
    assert_eq!(whoami.status, 201, "{}", whoami.text);
    api.delete(&name_of(&secret), &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(token_review(&server, &token).await["authenticated"], true);
    let whoami = post(&server, SELF_SUBJECT_REVIEWS, Some(&token), "{}").await;
    assert_eq!(whoami.status, 201, "{}", whoami.text);
    // The cache is per audience set: a review for another audience checks afresh.
    let body = json!({"spec": {"token": token, "audiences": [DEFAULT_ISSUER, "other"]}});
    let reply = post(&server, TOKEN_REVIEWS, Some(MINTER), &body.to_string()).await;
    assert_eq!(
        reply.json()["status"]["error"],
        "service account token has been invalidated"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn faults_hit_only_their_target_and_any_hits_every_request() {
    let server = start(options()).await;
    let api = secrets_api(&server, ADMIN).await;
    server.inject_for(
        FaultTarget::SecretCreate,
        Fault::Status {
            code: 503,
            retry_after: None,
            times: 1,
        },
    );
    let status = api_error(
        api.create(&PostParams::default(), &binding("1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status.code, status.message.as_str()),
        (503, "apiserver is shutting down")
    );
    let created = create_binding(&api, "1").await;
    server.inject_for(
        FaultTarget::SecretDelete,
        Fault::Status {
            code: 500,
            retry_after: None,
            times: 1,
        },
    );
    let token = mint_secret_bound(&server, &name_of(&created)).await;
    assert_eq!(token.status, 201, "the TokenRequest is not the target");
    let status = api_error(
        api.delete(&name_of(&created), &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 500);
    server.inject_for(
        FaultTarget::Any,
        Fault::Status {
            code: 429,
            retry_after: Some(3),
            times: 3,
        },
    );
    for path in [TOKEN_REVIEWS, &token_path("payments", "billing")] {
        let reply = post(&server, path, Some(MINTER), "{}").await;
        assert_eq!(reply.status, 429, "{path}: {}", reply.text);
        assert_eq!(reply.header("retry-after"), "3");
    }
    let reply = delete(
        &server,
        "/api/v1/namespaces/payments/secrets?labelSelector=a",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(reply.status, 429, "{}", reply.text);
    server.clear_faults();
    let reply = delete(
        &server,
        "/api/v1/namespaces/payments/secrets?labelSelector=a",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    server.shutdown().await;
}
