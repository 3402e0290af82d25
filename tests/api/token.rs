use jsonwebtoken::Algorithm;
use local_issuer::LocalIssuer;
use serde_json::{Value, json};

use test_support::app::{assert_error, spawn_app, webapp_claims};

const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn expires_in(body: &Value) -> i64 {
    let at: jiff::Timestamp = body["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    at.as_second() - now()
}

#[tokio::test]
async fn a_minted_token_authenticates_as_the_service_account_with_the_requested_audiences() {
    let app = spawn_app().await;
    let id_token = app.id_token(webapp_claims());
    let body = json!({"serviceAccount": "production/deployer", "audiences": [API_AUDIENCE, "https://vault.example.com"]});

    let response = app.post_token(&id_token, Some(body)).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["serviceAccount"],
        json!({"namespace": "production", "name": "deployer"})
    );
    assert_eq!(
        body["audiences"],
        json!([API_AUDIENCE, "https://vault.example.com"])
    );
    assert_eq!(body["policy"], "deploy");
    let token = body["token"].as_str().unwrap();
    let review = app.review(token, &["https://vault.example.com"]).await;
    assert_eq!(review.authenticated, Some(true));
    let user = review.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:production:deployer")
    );
    let credential_id = &user.extra.unwrap()["authentication.kubernetes.io/credential-id"];
    assert_eq!(
        credential_id,
        &vec![format!("JTI={}", body["tokenId"].as_str().unwrap())]
    );
    assert_eq!(
        review.audiences,
        Some(vec!["https://vault.example.com".to_owned()])
    );
    app.stop().await;
}

#[tokio::test]
async fn the_service_account_and_audience_default_from_the_single_granting_policy() {
    let app = spawn_app().await;
    let response = app.post_token(&app.id_token(webapp_claims()), None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["serviceAccount"]["name"], "deployer");
    assert_eq!(body["audiences"], json!([API_AUDIENCE]));
    let review = app
        .review(body["token"].as_str().unwrap(), &[API_AUDIENCE])
        .await;
    assert_eq!(review.authenticated, Some(true));
    app.stop().await;
}

#[tokio::test]
async fn the_ttl_is_the_default_the_request_or_the_policy_maximum() {
    let app = spawn_app().await;
    let id_token = app.id_token(webapp_claims());
    // (requested, expected lifetime, reduced?)
    for (requested, expected, reduced) in [
        (None, 900, false),
        (Some(1800), 1800, false),
        (Some(7200), 3600, true),
    ] {
        let body = requested.map(|secs| json!({"expirationSeconds": secs}));
        let response = app.post_token(&id_token, body).await;
        assert_eq!(response.status(), 200);
        let warning = response
            .headers()
            .get("warning")
            .map(|w| w.to_str().unwrap().to_owned());
        assert_eq!(warning.is_some(), reduced, "{warning:?}");
        if let Some(warning) = warning {
            assert!(
                warning.contains("7200 seconds reduced to 3600 seconds"),
                "{warning}"
            );
        }
        let body: Value = response.json().await.unwrap();
        let lifetime = expires_in(&body);
        assert!(
            (expected - 5..=expected).contains(&lifetime),
            "asked {requested:?}: lifetime {lifetime}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_expiration_reported_is_the_api_servers_when_it_caps_the_ttl() {
    // The policy allows two hours and two hours are asked; the API server caps at one (its
    // lowest cap), so only its answer can say 3600.
    let config = test_support::app::CONFIG.replacen("maxTtl: 1h", "maxTtl: 2h", 1);
    let app = test_support::app::spawn_app_with(&config, |options| {
        options.max_token_expiration = Some(3600);
    })
    .await;
    let response = app
        .post_token(
            &app.id_token(webapp_claims()),
            Some(json!({"expirationSeconds": 7200})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let lifetime = expires_in(&body);
    assert!((3595..=3600).contains(&lifetime), "expires in {lifetime}");
    app.stop().await;
}

#[tokio::test]
async fn a_ttl_under_ten_minutes_is_an_invalid_request() {
    let app = spawn_app().await;
    let response = app
        .post_token(
            &app.id_token(webapp_claims()),
            Some(json!({"expirationSeconds": 599})),
        )
        .await;
    assert_error(response, 400, "invalid_request").await;
    app.stop().await;
}

#[tokio::test]
async fn an_identity_no_policy_grants_is_denied_without_saying_why() {
    let app = spawn_app().await;
    let claims = json!({"sub": "repo:acme/webapp:ref:refs/heads/feature", "repository": "acme/webapp", "ref": "refs/heads/feature"});
    let response = app.post_token(&app.id_token(claims), None).await;
    let body = assert_error(response, 403, "access_denied").await;
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains("repo:acme/webapp:ref:refs/heads/feature"),
        "{description}"
    );
    assert!(
        !description.contains("deploy") && !description.contains("refs/heads/main"),
        "{description}"
    );

    let asked_other = json!({"serviceAccount": "production/admin"});
    let response = app
        .post_token(&app.id_token(webapp_claims()), Some(asked_other))
        .await;
    assert_error(response, 403, "access_denied").await;
    app.stop().await;
}

#[tokio::test]
async fn refused_tokens_get_the_same_401_whatever_the_cause() {
    let app = spawn_app().await;
    let stranger = LocalIssuer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let valid = app.id_token(webapp_claims());
    let (header, rest) = valid.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let mut forged_claims = webapp_claims();
    forged_claims["iss"] = json!(app.issuer.url());
    forged_claims["repository"] = json!("acme/other");
    let forged_payload = {
        use base64::Engine;
        let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(&valid).unwrap();
        let mut claims = claims;
        claims["repository"] = json!("evil/app");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown issuer",
            stranger
                .mint(Algorithm::RS256, with_aud(webapp_claims()))
                .unwrap(),
            "issuer is not trusted",
        ),
        (
            "expired",
            app.id_token(with(
                webapp_claims(),
                &json!({"iat": now() - 700, "nbf": now() - 700, "exp": now() - 100}),
            )),
            "expired",
        ),
        (
            "wrong audience",
            app.id_token(with(webapp_claims(), &json!({"aud": "someone-else"}))),
            "audience is not accepted",
        ),
        (
            "bad signature",
            format!("{header}.{forged_payload}.{signature}"),
            "signature could not be verified",
        ),
        (
            "foreign key, our issuer",
            stranger
                .mint(Algorithm::RS256, with_aud(forged_claims))
                .unwrap(),
            "signature could not be verified",
        ),
        ("not a JWT", "not-a-jwt".to_owned(), "malformed"),
    ];
    for (case, token, category) in cases {
        let response = app.post_token(&token, None).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer error="invalid_token""#,
            "{case}"
        );
        let body = assert_error(response, 401, "invalid_token").await;
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(category), "{case}: {description}");
        assert!(
            !description.contains(&token) && !description.contains(app.issuer.url()),
            "{case}: {description}"
        );
    }
    stranger.shutdown().await;
    app.stop().await;
}

#[tokio::test]
async fn es256_tokens_are_accepted_when_the_issuer_allows_them() {
    let app = spawn_app().await;
    let mut claims = webapp_claims();
    claims["aud"] = json!("tokenvend");
    let id_token = app.issuer.mint(Algorithm::ES256, claims).unwrap();
    assert_eq!(app.post_token(&id_token, None).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn no_credential_is_a_bare_bearer_challenge() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/v1/token", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_error(response, 401, "invalid_token").await;
    app.stop().await;
}

#[tokio::test]
async fn a_token_in_the_query_string_is_refused_before_it_is_read() {
    let app = spawn_app().await;
    let id_token = app.id_token(webapp_claims());
    let url = format!("{}/v1/token?access_token={id_token}", app.address);
    let response = app
        .http
        .post(url)
        .bearer_auth(&id_token)
        .send()
        .await
        .unwrap();
    let body = assert_error(response, 400, "invalid_request").await;
    assert!(!body.to_string().contains(&id_token));
    app.stop().await;
}

#[tokio::test]
async fn the_bare_token_format_is_text() {
    let app = spawn_app().await;
    let url = format!("{}/v1/token?format=token", app.address);
    let response = app
        .http
        .post(url)
        .bearer_auth(app.id_token(webapp_claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let token = response.text().await.unwrap();
    assert_eq!(token.trim_end().split('.').count(), 3);
    assert!(
        app.review(token.trim_end(), &[API_AUDIENCE])
            .await
            .authenticated
            == Some(true)
    );
    app.stop().await;
}

fn with(mut claims: Value, extra: &Value) -> Value {
    for (key, value) in extra.as_object().unwrap() {
        claims[key] = value.clone();
    }
    claims
}

fn with_aud(claims: Value) -> Value {
    with(claims, &json!({"aud": "tokenvend"}))
}
