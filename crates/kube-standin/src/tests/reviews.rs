//! TokenReview, SelfSubjectReview and discovery over HTTPS (the crate's README.md,
//! "Reviews and discovery").

use serde_json::{Value, json};

use super::*;
use crate::{ApiServerOptions, DEFAULT_ISSUER};

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const SELF_SUBJECT_REVIEWS: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

fn review(token: &str, audiences: &[&str]) -> String {
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": audiences}})
        .to_string()
}

fn jti_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice::<Value>(&payload).unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_minted_token_reviews_as_its_service_account_with_pod_and_node_extras() {
    let server = start(options()).await;
    let token = mint_bound_token(&server, &["https://vault.example.com"]).await;
    let reply = post(
        &server,
        TOKEN_REVIEWS,
        Some(MINTER),
        &review(&token, &["https://vault.example.com"]),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let jti = jti_of(&token);
    assert_eq!(
        reply.json(),
        json!({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{},
            "spec":{"token": token,"audiences":["https://vault.example.com"]},
            "status":{"authenticated":true,
                "user":{"username":"system:serviceaccount:payments:billing","uid":SA_UID,
                    "groups":["system:serviceaccounts","system:serviceaccounts:payments","system:authenticated"],
                    "extra":{"authentication.kubernetes.io/credential-id":[format!("JTI={jti}")],
                        "authentication.kubernetes.io/node-name":["node-a"],"authentication.kubernetes.io/node-uid":[NODE_UID],
                        "authentication.kubernetes.io/pod-name":["web-0"],"authentication.kubernetes.io/pod-uid":[POD_UID]}},
                "audiences":["https://vault.example.com"]}})
    );
    assert!(reply.text.starts_with(r#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{},"spec":{"token":"#));
    server.shutdown().await;
}

#[tokio::test]
async fn a_review_for_another_audience_is_unauthenticated_with_an_error_and_an_empty_user() {
    let server = start(options()).await;
    let token = mint_bound_token(&server, &["https://vault.example.com"]).await;
    let reply = post(
        &server,
        TOKEN_REVIEWS,
        Some(MINTER),
        &review(&token, &["https://elsewhere"]),
    )
    .await;
    assert_eq!(reply.status, 201);
    let status = &reply.json()["status"];
    assert!(status.get("authenticated").is_none());
    assert_eq!(status["user"], json!({}));
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("invalid for the target audiences")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_review_answers_the_intersection_of_its_audiences_with_the_tokens() {
    let server = start(options()).await;
    let token = mint_bound_token(&server, &["https://vault.example.com", "https://b"]).await;
    let reply = post(
        &server,
        TOKEN_REVIEWS,
        Some(MINTER),
        &review(&token, &["https://elsewhere", "https://vault.example.com"]),
    )
    .await;
    let status = &reply.json()["status"];
    assert_eq!(status["authenticated"], true, "{}", reply.text);
    assert_eq!(status["audiences"], json!(["https://vault.example.com"]));
    server.shutdown().await;
}

#[tokio::test]
async fn a_review_without_audiences_checks_the_api_audiences() {
    let server = start(options()).await;
    let token = mint_bound_token(&server, &[]).await;
    let status = post(&server, TOKEN_REVIEWS, Some(MINTER), &review(&token, &[]))
        .await
        .json()["status"]
        .clone();
    assert_eq!(status["authenticated"], true);
    assert_eq!(status["audiences"], json!([DEFAULT_ISSUER]));
    server.shutdown().await;
}

#[tokio::test]
async fn token_reviews_need_rbac_and_a_token() {
    let server = start(options()).await;
    let forbidden = post(&server, TOKEN_REVIEWS, Some(NOBODY), &review("x", &[])).await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(
        forbidden.json()["message"],
        r#"tokenreviews.authentication.k8s.io is forbidden: User "nobody" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope"#
    );
    let empty = post(&server, TOKEN_REVIEWS, Some(MINTER), &review("", &[])).await;
    assert_eq!(
        (empty.status, empty.json()["message"].as_str()),
        (
            400,
            Some("token is required for TokenReview in authentication")
        )
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_minted_token_authenticates_its_own_self_subject_review() {
    let server = start(options()).await;
    let token = mint_bound_token(&server, &[]).await;
    let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let reply = post(&server, SELF_SUBJECT_REVIEWS, Some(&token), body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let user = &reply.json()["status"]["userInfo"];
    assert_eq!(user["username"], "system:serviceaccount:payments:billing");
    assert_eq!(user["uid"], SA_UID);
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/credential-id"],
        json!([format!("JTI={}", jti_of(&token))])
    );
    assert!(reply.text.starts_with(r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","metadata":{},"status":{"userInfo":{"#));
    server.shutdown().await;
}

#[tokio::test]
async fn an_in_process_minted_token_authenticates_like_a_requested_one() {
    let server = start(options()).await;
    let token = server.mint_token("payments", "other", &[], 600).unwrap();
    let reply = post(&server, SELF_SUBJECT_REVIEWS, Some(&token), "{}").await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(
        reply.json()["status"]["userInfo"]["username"],
        "system:serviceaccount:payments:other"
    );
    assert_eq!(server.token_requests(), 0);
    assert!(server.mint_token("payments", "ghost", &[], 600).is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn a_token_for_a_foreign_audience_does_not_authenticate_requests() {
    let server = start(options()).await;
    let token = mint_bound_token(&server, &["https://vault.example.com"]).await;
    let reply = post(&server, SELF_SUBJECT_REVIEWS, Some(&token), "{}").await;
    assert_eq!(reply.status, 401);
    server.shutdown().await;
}

#[tokio::test]
async fn issuer_discovery_serves_kubes_documents_to_authenticated_users_only() {
    let server = start(options()).await;
    let config = get(&server, "/.well-known/openid-configuration", Some(NOBODY)).await;
    assert_eq!(config.status, 200);
    assert_eq!(config.header("content-type"), "application/json");
    assert_eq!(config.header("cache-control"), "public, max-age=3600");
    assert_eq!(
        config.text,
        format!(
            r#"{{"issuer":"{DEFAULT_ISSUER}","jwks_uri":"{}/openid/v1/jwks","response_types_supported":["id_token"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["RS256"]}}"#,
            server.url()
        )
    );
    let jwks = get(&server, "/openid/v1/jwks", Some(NOBODY)).await;
    assert_eq!(jwks.header("content-type"), "application/jwk-set+json");
    assert_eq!(jwks.header("cache-control"), "public, max-age=3600");
    assert_eq!(
        jwks.json(),
        json!({"keys": [server.signing_key().public_jwk()]})
    );
    assert!(
        jwks.text
            .starts_with(r#"{"keys":[{"use":"sig","kty":"RSA","kid":"#)
    );
    let anonymous = get(&server, "/openid/v1/jwks", None).await;
    assert_eq!(anonymous.status, 403);
    assert_eq!(
        anonymous.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"forbidden: User \"system:anonymous\" cannot get path \"/openid/v1/jwks\"","reason":"Forbidden","details":{},"code":403}"#
    );
    server.shutdown().await;
}

#[tokio::test]
async fn issuer_discovery_does_not_exist_for_a_non_https_issuer() {
    let server = start(ApiServerOptions {
        issuer: "http://insecure.example".into(),
        ..options()
    })
    .await;
    let reply = get(&server, "/openid/v1/jwks", Some(NOBODY)).await;
    assert_eq!(reply.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn api_discovery_and_version_answer_what_kubectl_asks_first() {
    let server = start(options()).await;
    let api = get(&server, "/api", Some(NOBODY)).await.json();
    assert_eq!(
        (api["kind"].as_str(), &api["versions"]),
        (Some("APIVersions"), &json!(["v1"]))
    );
    let apis = get(&server, "/apis", Some(NOBODY)).await.json();
    assert_eq!(apis["groups"][0]["name"], "authentication.k8s.io");
    let core = get(&server, "/api/v1", Some(NOBODY)).await.json();
    assert!(
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "serviceaccounts/token")
    );
    let version = get(&server, "/version", None).await;
    assert_eq!(version.status, 200);
    assert_eq!(version.json()["major"], "1");
    server.shutdown().await;
}
