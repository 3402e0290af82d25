//! `POST /oauth2/token`: RFC 8693 token exchange, its success shape and every error code.

use std::time::Duration;

use kube_standin::Fault;
use serde_json::{Value, json};

use test_support::app::{CONFIG, TestApp, spawn_app, spawn_app_with, webapp_claims};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// CONFIG plus a second service account for the webapp identity, so that `scope` must choose.
fn two_accounts_config() -> String {
    format!(
        "{CONFIG}  - name: reader\n    issuer: local\n    match: {{repository: acme/webapp}}\n    grant:\n      serviceAccounts: [tools/reader]\n"
    )
}

/// The mandatory parameters for this subject token, then `extra`.
fn exchange_form<'a>(
    subject_token: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", GRANT_TYPE),
        ("subject_token", subject_token),
        ("subject_token_type", ID_TOKEN_TYPE),
    ];
    form.extend_from_slice(extra);
    form
}

async fn post_form(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    app.http
        .post(format!("{}/oauth2/token", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Asserts an RFC 6749 §5.2 error response and returns its body.
async fn assert_oauth_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

#[tokio::test]
async fn a_token_exchange_returns_a_service_account_jwt() {
    let app = spawn_app().await;
    let id_token = app.id_token(webapp_claims());

    let response = post_form(&app, &exchange_form(&id_token, &[])).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["issued_token_type"], JWT_TYPE);
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!((890..=900).contains(&expires_in), "{expires_in}");
    assert!(body.get("scope").is_none(), "{body}");
    let review = app
        .review(body["access_token"].as_str().unwrap(), &[API_AUDIENCE])
        .await;
    assert_eq!(review.authenticated, Some(true));
    assert_eq!(
        review.user.unwrap().username.as_deref(),
        Some("system:serviceaccount:production:deployer")
    );
    app.stop().await;
}

#[tokio::test]
async fn repeated_audience_parameters_all_reach_the_minted_token() {
    let app = spawn_app().await;
    let id_token = app.id_token(webapp_claims());
    let extra = [
        ("audience", API_AUDIENCE),
        ("audience", "https://vault.example.com"),
        ("requested_token_type", JWT_TYPE),
        ("client_id", "ci"),
    ];

    let response = post_form(&app, &exchange_form(&id_token, &extra)).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    for audience in [API_AUDIENCE, "https://vault.example.com"] {
        let review = app.review(token, &[audience]).await;
        assert_eq!(review.authenticated, Some(true), "{audience}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_scope_selects_the_service_account_and_is_echoed() {
    let app = spawn_app_with(&two_accounts_config(), |_| {}).await;
    let id_token = app.id_token(webapp_claims());

    let ambiguous = post_form(&app, &exchange_form(&id_token, &[])).await;
    let body = assert_oauth_error(ambiguous, 400, "invalid_scope").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("tools/reader"),
        "{body}"
    );

    let id_token = app.id_token(webapp_claims());
    let extra = [("scope", "openid serviceaccount:tools/reader")];
    let response = post_form(&app, &exchange_form(&id_token, &extra)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "serviceaccount:tools/reader");
    let review = app
        .review(body["access_token"].as_str().unwrap(), &[API_AUDIENCE])
        .await;
    assert_eq!(
        review.user.unwrap().username.as_deref(),
        Some("system:serviceaccount:tools:reader")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_actor_token_is_refused_as_an_invalid_request() {
    let app = spawn_app().await;
    let id_token = app.id_token(webapp_claims());
    let extra = [("actor_token", "x.y.z"), ("actor_token_type", JWT_TYPE)];
    let response = post_form(&app, &exchange_form(&id_token, &extra)).await;
    let body = assert_oauth_error(response, 400, "invalid_request").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("actor_token")
    );
    assert_eq!(app.apiserver().token_requests(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_grant_type_is_unsupported() {
    let app = spawn_app().await;
    let id_token = app.id_token(webapp_claims());
    let form = [
        ("grant_type", "client_credentials"),
        ("subject_token", id_token.as_str()),
        ("subject_token_type", ID_TOKEN_TYPE),
    ];
    assert_oauth_error(post_form(&app, &form).await, 400, "unsupported_grant_type").await;
    app.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_invalid_requests() {
    let app = spawn_app().await;
    let id_token = app.id_token(webapp_claims());
    let forms: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token_type", ID_TOKEN_TYPE),
        ],
        vec![("grant_type", GRANT_TYPE), ("subject_token", &id_token)],
        exchange_form(&id_token, &[("subject_token_type", JWT_TYPE)]),
        exchange_form(&id_token, &[("requested_token_type", "urn:x")]),
        vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", &id_token),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
        ],
    ];
    for form in forms {
        assert_oauth_error(post_form(&app, &form).await, 400, "invalid_request").await;
    }
    let as_json = app
        .http
        .post(format!("{}/oauth2/token", app.address))
        .json(&json!({"grant_type": GRANT_TYPE, "subject_token": id_token}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(as_json, 400, "invalid_request").await;
    let in_query = app
        .http
        .post(format!(
            "{}/oauth2/token?subject_token={id_token}",
            app.address
        ))
        .send()
        .await
        .unwrap();
    assert_oauth_error(in_query, 400, "invalid_request").await;
    assert_eq!(app.apiserver().token_requests(), 0);
    app.stop().await;
}

#[tokio::test]
async fn an_unusable_subject_token_or_identity_is_an_invalid_grant() {
    let app = spawn_app().await;
    let expired = app.id_token(json!({"sub": "x", "repository": "acme/webapp", "ref": "refs/heads/main",
        "iat": jiff::Timestamp::now().as_second() - 1200, "exp": jiff::Timestamp::now().as_second() - 600}));
    let unknown = app.id_token(json!({"sub": "nobody", "repository": "acme/nothing"}));
    for subject_token in [expired.as_str(), unknown.as_str(), "not-a-jwt"] {
        let response = post_form(&app, &exchange_form(subject_token, &[])).await;
        assert_oauth_error(response, 400, "invalid_grant").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_service_account_or_audience_beyond_the_grant_is_invalid_scope_or_target() {
    let app = spawn_app().await;
    let id_token = app.id_token(webapp_claims());
    let scope = [("scope", "serviceaccount:production/other")];
    let response = post_form(&app, &exchange_form(&id_token, &scope)).await;
    assert_oauth_error(response, 400, "invalid_scope").await;

    let audience = [("audience", "https://elsewhere.example.com")];
    let response = post_form(&app, &exchange_form(&id_token, &audience)).await;
    assert_oauth_error(response, 400, "invalid_target").await;
    assert_eq!(app.apiserver().token_requests(), 0);
    app.stop().await;
}

#[tokio::test]
async fn kubernetes_failures_are_server_errors_and_timeouts_temporary() {
    let app = spawn_app().await;
    let ghost = app.id_token(json!({"sub": "g", "repository": "acme/ghost"}));
    let response = post_form(&app, &exchange_form(&ghost, &[])).await;
    assert_oauth_error(response, 502, "server_error").await;

    app.apiserver().inject(Fault::Stall(Duration::from_secs(5)));
    let id_token = app.id_token(webapp_claims());
    let response = post_form(&app, &exchange_form(&id_token, &[])).await;
    assert_oauth_error(response, 504, "temporarily_unavailable").await;
    app.apiserver().clear_faults();
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_token_exchange() {
    let app = spawn_app().await;
    let spec = app
        .http
        .get(format!("{}/openapi.yaml", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "/oauth2/token:",
        "TokenExchangeResponse:",
        "invalid_target",
        "exec-credential",
    ] {
        assert!(spec.contains(needle), "{needle} missing from openapi.yaml");
    }
    app.stop().await;
}
