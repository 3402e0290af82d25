//! TokenRequest over HTTPS: every response kube-apiserver gives (status codes, Status bodies,
//! headers; the crate's README.md, "TokenRequest" and "Errors"), byte for byte where the
//! values are deterministic.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use super::*;
use crate::{ApiServerOptions, DEFAULT_ISSUER, Fault};

const BILLING: &str = "/api/v1/namespaces/payments/serviceaccounts/billing/token";

fn request(spec: &Value) -> String {
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {}, "spec": spec}).to_string()
}

fn decode_part(token: &str, index: usize) -> String {
    String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(token.split('.').nth(index).unwrap())
            .unwrap(),
    )
    .unwrap()
}

fn unix(rfc3339: &str) -> i64 {
    rfc3339
        .parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap()
        .as_second()
}

#[tokio::test]
async fn created_response_has_kubes_exact_shape_and_field_order() {
    let server = start(options()).await;
    let bound = json!({"kind": "Pod", "apiVersion": "v1", "name": "web-0", "uid": POD_UID});
    let body = request(
        &json!({"audiences": ["https://vault.example.com"], "expirationSeconds": 900, "boundObjectRef": bound}),
    );
    let reply = post(&server, BILLING, Some(MINTER), &body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.header("content-type"), "application/json");
    let created = reply.json();
    let token = created["status"]["token"].as_str().unwrap();
    let created_at = created["metadata"]["creationTimestamp"].as_str().unwrap();
    let expires_at = created["status"]["expirationTimestamp"].as_str().unwrap();
    let expected = format!(
        r#"{{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{{"name":"billing","namespace":"payments","uid":"{SA_UID}","creationTimestamp":"{created_at}"}},"spec":{{"audiences":["https://vault.example.com"],"expirationSeconds":900,"boundObjectRef":{{"kind":"Pod","apiVersion":"v1","name":"web-0","uid":"{POD_UID}"}}}},"status":{{"token":"{token}","expirationTimestamp":"{expires_at}"}}}}"#
    );
    assert_eq!(reply.text, expected);
    assert_eq!(unix(expires_at) - unix(created_at), 900);
    assert!(
        created_at.ends_with('Z') && created_at.len() == 20,
        "{created_at}"
    );
    assert_eq!(server.token_requests(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn an_empty_spec_gets_the_default_expiration_the_api_audiences_and_a_null_binding() {
    let server = start(options()).await;
    let reply = post(&server, BILLING, Some(MINTER), r#"{"spec":{}}"#).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let spec = &reply.json()["spec"];
    assert_eq!(
        *spec,
        json!({"audiences": [DEFAULT_ISSUER], "expirationSeconds": 3600, "boundObjectRef": null})
    );
    assert!(reply.text.contains(r#""boundObjectRef":null"#));
    server.shutdown().await;
}

#[tokio::test]
async fn configured_api_audiences_are_the_default() {
    let api_audiences = vec!["https://api-a".to_owned(), "https://api-b".to_owned()];
    let server = start(ApiServerOptions {
        api_audiences: api_audiences.clone(),
        ..options()
    })
    .await;
    let reply = post(
        &server,
        BILLING,
        Some(MINTER),
        r#"{"spec":{"audiences":[]}}"#,
    )
    .await;
    assert_eq!(reply.json()["spec"]["audiences"], json!(api_audiences));
    server.shutdown().await;
}

#[tokio::test]
async fn minted_jwt_has_kubes_header_and_sorted_claims_and_verifies_with_the_served_jwks() {
    let server = start(options()).await;
    let token = mint_bound_token(&server, &["https://vault.example.com"]).await;
    let kid = server.signing_key().kid();
    assert_eq!(
        decode_part(&token, 0),
        format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#)
    );
    assert!(token.starts_with("eyJhbGciOiJSUzI1NiIsImtpZCI6"));

    let jwks: JwkSet =
        serde_json::from_str(&get(&server, "/openid/v1/jwks", Some(MINTER)).await.text).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["https://vault.example.com"]);
    validation.set_issuer(&[DEFAULT_ISSUER]);
    let key = DecodingKey::from_jwk(jwks.find(kid).unwrap()).unwrap();
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation)
        .unwrap()
        .claims;
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(jti).unwrap().get_version_num(), 4);
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);
    let expected_payload = format!(
        r#"{{"aud":["https://vault.example.com"],"exp":{exp},"iat":{iat},"iss":"{DEFAULT_ISSUER}","jti":"{jti}","kubernetes.io":{{"namespace":"payments","node":{{"name":"node-a","uid":"{NODE_UID}"}},"pod":{{"name":"web-0","uid":"{POD_UID}"}},"serviceaccount":{{"name":"billing","uid":"{SA_UID}"}}}},"nbf":{iat},"sub":"system:serviceaccount:payments:billing"}}"#
    );
    assert_eq!(decode_part(&token, 1), expected_payload);
    server.shutdown().await;
}

#[tokio::test]
async fn missing_service_account_is_404_before_a_bad_expiration_is_noticed() {
    let server = start(options()).await;
    let reply = post(
        &server,
        &token_path("payments", "ghost"),
        Some(ADMIN),
        &request(&json!({"expirationSeconds": 1})),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"serviceaccounts \"ghost\" not found","reason":"NotFound","details":{"name":"ghost","kind":"serviceaccounts"},"code":404}"#
    );
    server.shutdown().await;
}

#[tokio::test]
async fn too_small_and_too_large_expirations_are_invalid() {
    let server = start(options()).await;
    let small = post(
        &server,
        BILLING,
        Some(MINTER),
        &request(&json!({"expirationSeconds": 300})),
    )
    .await;
    assert_eq!(small.status, 422);
    assert_eq!(
        small.json(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message":"TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes",
            "reason":"Invalid",
            "details":{"group":"authentication.k8s.io","kind":"TokenRequest",
                "causes":[{"reason":"FieldValueInvalid","message":"Invalid value: 300: may not specify a duration less than 10 minutes","field":"spec.expirationSeconds"}]},
            "code":422})
    );
    let large = post(
        &server,
        BILLING,
        Some(MINTER),
        &request(&json!({"expirationSeconds": 4_294_967_297_i64})),
    )
    .await;
    assert_eq!(large.status, 422);
    assert_eq!(
        large.json()["details"]["causes"][0]["message"],
        "Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds"
    );
    let zero = post(
        &server,
        BILLING,
        Some(MINTER),
        &request(&json!({"expirationSeconds": 0})),
    )
    .await;
    assert_eq!(zero.status, 422);
    server.shutdown().await;
}

#[tokio::test]
async fn a_mismatched_name_is_invalid_and_a_mismatched_namespace_a_bad_request() {
    let server = start(options()).await;
    let name = post(
        &server,
        BILLING,
        Some(MINTER),
        r#"{"metadata":{"name":"other"},"spec":{}}"#,
    )
    .await;
    assert_eq!(name.status, 422);
    assert_eq!(
        name.json(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message":"TokenRequest.authentication.k8s.io \"billing\" is invalid: metadata.name: Invalid value: \"other\": must match the service account name if specified",
            "reason":"Invalid","details":{"name":"billing","group":"authentication.k8s.io","kind":"TokenRequest",
            "causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"other\": must match the service account name if specified","field":"metadata.name"}]},"code":422})
    );
    let namespace = post(
        &server,
        BILLING,
        Some(MINTER),
        r#"{"metadata":{"namespace":"web"},"spec":{}}"#,
    )
    .await;
    assert_eq!(namespace.status, 400);
    assert_eq!(
        namespace.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the namespace of the provided object does not match the namespace sent on the request","reason":"BadRequest","code":400}"#
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_service_account_uid_mismatch_conflicts() {
    let server = start(options()).await;
    let reply = post(
        &server,
        BILLING,
        Some(MINTER),
        r#"{"metadata":{"uid":"1111"},"spec":{}}"#,
    )
    .await;
    assert_eq!(reply.status, 409);
    assert_eq!(
        reply.json(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message": format!("Operation cannot be fulfilled on TokenRequest.authentication.k8s.io \"billing\": the UID in the token request (1111) does not match the UID of the service account ({SA_UID})"),
            "reason":"Conflict","details":{"name":"billing","group":"authentication.k8s.io","kind":"TokenRequest"},"code":409})
    );
    let matching = post(
        &server,
        BILLING,
        Some(MINTER),
        &format!(r#"{{"metadata":{{"uid":"{SA_UID}"}},"spec":{{}}}}"#),
    )
    .await;
    assert_eq!(matching.status, 201);
    server.shutdown().await;
}

#[tokio::test]
async fn bindings_to_another_accounts_pod_or_an_unsupported_kind_are_bad_requests() {
    let server = start(options()).await;
    let other_pod =
        request(&json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "other-0"}}));
    let reply = post(&server, BILLING, Some(MINTER), &other_pod).await;
    assert_eq!(
        reply.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"cannot bind token for serviceaccount \"billing\" to pod running with different serviceaccount name.","reason":"BadRequest","code":400}"#
    );
    let config_map =
        request(&json!({"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1", "name": "x"}}));
    let reply = post(&server, BILLING, Some(MINTER), &config_map).await;
    assert_eq!(
        reply.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"cannot bind token to object of type /v1, Kind=ConfigMap","reason":"BadRequest","code":400}"#
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_missing_bound_pod_is_404_and_a_stale_uid_409() {
    let server = start(options()).await;
    let missing =
        request(&json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "gone"}}));
    let reply = post(&server, BILLING, Some(MINTER), &missing).await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.json()["details"],
        json!({"name": "gone", "kind": "pods"})
    );
    let stale = request(
        &json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-0", "uid": "1111"}}),
    );
    let reply = post(&server, BILLING, Some(MINTER), &stale).await;
    assert_eq!(
        reply.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Operation cannot be fulfilled on Pod \"web-0\": the UID in the bound object reference (1111) does not match the UID in record. The object might have been deleted and then recreated","reason":"Conflict","details":{"name":"web-0","kind":"Pod"},"code":409}"#
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_caller_without_rbac_gets_kubes_forbidden_body_with_nosniff() {
    let server = start(options()).await;
    let reply = post(&server, BILLING, Some(NOBODY), r#"{"spec":{}}"#).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("x-content-type-options"), "nosniff");
    assert_eq!(
        reply.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"serviceaccounts \"billing\" is forbidden: User \"nobody\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"payments\"","reason":"Forbidden","details":{"name":"billing","kind":"serviceaccounts"},"code":403}"#
    );
    server.add_rbac_rule(RbacRule::create_tokens("nobody", "payments", &["billing"]));
    assert_eq!(
        post(&server, BILLING, Some(NOBODY), r#"{"spec":{}}"#)
            .await
            .status,
        201
    );
    server.set_rbac(Vec::new());
    assert_eq!(
        post(&server, BILLING, Some(MINTER), r#"{"spec":{}}"#)
            .await
            .status,
        403
    );
    server.shutdown().await;
}

#[tokio::test]
async fn missing_or_unknown_credentials_get_the_401_body() {
    let server = start(options()).await;
    for token in [None, Some("not-a-known-token")] {
        let reply = post(&server, BILLING, token, r#"{"spec":{}}"#).await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.header("x-content-type-options"), "nosniff");
        assert_eq!(
            reply.text,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#
        );
    }
    assert_eq!(server.token_requests(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_non_json_content_type_is_415_after_authorization() {
    let server = start(options()).await;
    let reply = post_as(&server, BILLING, MINTER, "text/plain", "{}").await;
    assert_eq!(reply.status, 415);
    let status = reply.json();
    assert_eq!(
        (status["reason"].as_str(), status["code"].as_u64()),
        (Some("UnsupportedMediaType"), Some(415))
    );
    assert!(status["message"].as_str().unwrap().starts_with(
        "the body of the request was in an unknown format - accepted media types include: "
    ));
    assert_eq!(
        post_as(&server, BILLING, NOBODY, "text/plain", "{}")
            .await
            .status,
        403
    );
    let not_json = post(&server, BILLING, Some(MINTER), "nope").await;
    assert_eq!(
        (not_json.status, not_json.json()["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_kind_is_a_bad_request_and_unknown_fields_only_warn() {
    let server = start(options()).await;
    let wrong = post(
        &server,
        BILLING,
        Some(MINTER),
        r#"{"apiVersion":"v1","kind":"ConfigMap"}"#,
    )
    .await;
    assert_eq!(wrong.status, 400);
    let message = wrong.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with(r#"ConfigMap in version "v1" cannot be handled as a TokenRequest: "#),
        "{message}"
    );
    let unknown = post(&server, BILLING, Some(MINTER), r#"{"spec":{"foo":1}}"#).await;
    assert_eq!(unknown.status, 201);
    assert!(
        unknown.header("warning").starts_with("299 - "),
        "{:?}",
        unknown.headers
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_injected_429_is_plain_text_with_retry_after_and_passes() {
    let server = start(options()).await;
    server.inject(Fault::Status {
        code: 429,
        retry_after: Some(7),
        times: 1,
    });
    let reply = post(&server, BILLING, Some(MINTER), r#"{"spec":{}}"#).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.text, "Too many requests, please try again later.\n");
    assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(reply.header("retry-after"), "7");
    assert_eq!(reply.header("x-content-type-options"), "nosniff");
    assert_eq!(
        post(&server, BILLING, Some(MINTER), r#"{"spec":{}}"#)
            .await
            .status,
        201
    );
    assert_eq!(server.token_requests(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn injected_5xx_faults_answer_with_kubes_status_bodies() {
    let server = start(options()).await;
    server.inject(Fault::Status {
        code: 503,
        retry_after: Some(2),
        times: 1,
    });
    server.inject(Fault::Status {
        code: 504,
        retry_after: None,
        times: 1,
    });
    server.inject(Fault::Status {
        code: 500,
        retry_after: None,
        times: 1,
    });
    let unavailable = post(&server, BILLING, Some(MINTER), "{}").await;
    assert_eq!(
        unavailable.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"apiserver is shutting down","reason":"ServiceUnavailable","details":{"retryAfterSeconds":2},"code":503}"#
    );
    assert_eq!(unavailable.header("retry-after"), "2");
    let timeout = post(&server, BILLING, Some(MINTER), "{}").await;
    assert_eq!(
        (timeout.status, timeout.json()["reason"].as_str()),
        (504, Some("Timeout"))
    );
    let internal = post(&server, BILLING, Some(MINTER), "{}").await;
    assert_eq!(
        (internal.status, internal.json()["reason"].as_str()),
        (500, Some("InternalError"))
    );
    assert_eq!(post(&server, BILLING, Some(MINTER), "{}").await.status, 201);
    server.shutdown().await;
}

#[tokio::test]
async fn a_stall_delays_token_requests_until_cleared() {
    let server = start(options()).await;
    server.inject(Fault::Stall(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(post(&server, BILLING, Some(MINTER), "{}").await.status, 201);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Cleared, an hour's stall no longer applies: the request answers well within a minute.
    server.inject(Fault::Stall(Duration::from_secs(3600)));
    server.clear_faults();
    let answered = tokio::time::timeout(
        Duration::from_secs(60),
        post(&server, BILLING, Some(MINTER), "{}"),
    )
    .await
    .expect("the stall was not cleared");
    assert_eq!(answered.status, 201);
    server.shutdown().await;
}

#[tokio::test]
async fn an_expiration_above_the_cap_is_shortened_with_a_warning() {
    let server = start(ApiServerOptions {
        max_token_expiration: Some(7200),
        ..options()
    })
    .await;
    let reply = post(
        &server,
        BILLING,
        Some(MINTER),
        &request(&json!({"expirationSeconds": 86400})),
    )
    .await;
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.header("warning"),
        r#"299 - "requested expiration of 86400 seconds shortened to 7200 seconds""#
    );
    let created = reply.json();
    assert_eq!(created["spec"]["expirationSeconds"], 7200);
    let (from, to) = (
        created["metadata"]["creationTimestamp"].as_str().unwrap(),
        created["status"]["expirationTimestamp"].as_str().unwrap(),
    );
    assert_eq!(unix(to) - unix(from), 7200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_pod_bound_3607_second_token_for_kube_audiences_is_extended_with_warnafter() {
    let server = start(options()).await;
    let spec = json!({"expirationSeconds": 3607, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-0"}});
    let created = post(&server, BILLING, Some(MINTER), &request(&spec))
        .await
        .json();
    let token = created["status"]["token"].as_str().unwrap();
    let claims: Value = serde_json::from_str(&decode_part(token, 1)).unwrap();
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 31_536_000);
    assert_eq!(
        claims["kubernetes.io"]["warnafter"].as_i64().unwrap() - iat,
        3607
    );
    let status_expiry = unix(created["status"]["expirationTimestamp"].as_str().unwrap());
    assert_eq!(
        status_expiry - unix(created["metadata"]["creationTimestamp"].as_str().unwrap()),
        3607
    );

    let foreign = json!({"expirationSeconds": 3607, "audiences": ["https://vault"], "boundObjectRef": spec["boundObjectRef"]});
    let created = post(&server, BILLING, Some(MINTER), &request(&foreign))
        .await
        .json();
    let claims: Value = serde_json::from_str(&decode_part(
        created["status"]["token"].as_str().unwrap(),
        1,
    ))
    .unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3607
    );
    assert!(claims["kubernetes.io"].get("warnafter").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn a_max_expiration_outside_kubes_bounds_refuses_to_start() {
    let addr = "127.0.0.1:0".parse().unwrap();
    let options = ApiServerOptions {
        max_token_expiration: Some(60),
        ..ApiServerOptions::default()
    };
    assert!(ApiServer::start(addr, options).await.is_err());
    let error = ApiServer::start("0.0.0.0:0".parse().unwrap(), ApiServerOptions::default())
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("loopback"), "{error}");
}

#[tokio::test]
async fn a_body_over_three_mebibytes_is_413_but_only_after_authentication() {
    let server = start(options()).await;
    let huge = format!(r#"{{"spec":{{}},"pad":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
    let reply = post(&server, BILLING, Some(MINTER), &huge).await;
    assert_eq!(
        reply.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Request entity too large: limit is 3145728","reason":"RequestEntityTooLarge","code":413}"#
    );
    assert_eq!(post(&server, BILLING, None, &huge).await.status, 401);
    server.shutdown().await;
}
