//! The per-identity rate limit (429) and the in-flight cap (503), counted.

use std::time::Duration;

use kube_standin::Fault;
use serde_json::{Value, json};
use tokenvend::service::{LimitSettings, ServeOptions};

use crate::metrics::sample;
use test_support::app::{CONFIG, TestApp, assert_error, spawn_app_serving, webapp_claims};

async fn spawn_with_limits(limits: LimitSettings) -> TestApp {
    let options = ServeOptions {
        limits,
        ..ServeOptions::default()
    };
    spawn_app_serving(CONFIG, |_| {}, options).await
}

#[tokio::test]
async fn an_identity_over_its_budget_gets_429_and_others_are_unaffected() {
    let app = spawn_with_limits(LimitSettings {
        per_identity_rate: 0.01,
        per_identity_burst: 2,
        max_in_flight: 512,
        ..LimitSettings::default()
    })
    .await;
    let webapp = app.id_token(webapp_claims());
    for _ in 0..2 {
        assert_eq!(app.post_token(&webapp, None).await.status(), 200);
    }
    let refused = app.post_token(&webapp, None).await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=100).contains(&retry_after), "{retry_after}");
    assert_error(refused, 429, "rate_limited").await;
    // Another subject of the same issuer has its own budget; denied requests spend it too.
    let other = app.id_token(json!({"sub": "repo:acme/other-app", "repository": "acme/nothing"}));
    assert_eq!(app.post_token(&other, None).await.status(), 403);
    // Unverifiable tokens name no identity and are not charged to anyone.
    for _ in 0..3 {
        assert_eq!(app.post_token("garbage", None).await.status(), 401);
    }
    assert_eq!(app.apiserver().token_requests(), 2);

    let metrics = app.metrics().await;
    for (series, expected) in [
        (r#"tokenvend_rate_limited_total{scope="identity"}"#, 1.0),
        (r#"tokenvend_rate_limited_total{scope="in_flight"}"#, 0.0),
        (
            r#"tokenvend_requests_total{endpoint="token",outcome="issued"}"#,
            2.0,
        ),
        (
            r#"tokenvend_requests_total{endpoint="token",outcome="denied"}"#,
            2.0,
        ),
        (r#"tokenvend_rejections_total{reason="rate_limited"}"#, 1.0),
    ] {
        assert_eq!(
            sample(&metrics, series),
            Some(expected),
            "{series}\n{metrics}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_oauth_endpoint_shares_the_identity_budget() {
    let app = spawn_with_limits(LimitSettings {
        per_identity_rate: 0.01,
        per_identity_burst: 1,
        max_in_flight: 512,
        ..LimitSettings::default()
    })
    .await;
    let webapp = app.id_token(webapp_claims());
    assert_eq!(app.post_token(&webapp, None).await.status(), 200);
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", webapp.as_str()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            ),
        ])
        .finish();
    let response = app
        .http
        .post(format!("{}/oauth2/token", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn requests_over_the_in_flight_cap_are_shed_with_503_but_health_still_answers() {
    let app = spawn_with_limits(LimitSettings {
        max_in_flight: 1,
        ..LimitSettings::default()
    })
    .await;
    app.apiserver()
        .inject(Fault::Stall(Duration::from_secs(30)));
    let first = {
        let (http, url, token) = (
            app.http.clone(),
            format!("{}/v1/token", app.address),
            app.id_token(webapp_claims()),
        );
        tokio::spawn(async move { http.post(url).bearer_auth(token).send().await.unwrap() })
    };
    // Wait until the first request holds the only slot (it is stalled at the API server).
    for _ in 0..100 {
        if app.apiserver().token_requests() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.apiserver().token_requests(), 1);
    let shed = app.post_token("garbage", None).await;
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_error(shed, 503, "temporarily_unavailable").await;
    let health = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    assert_eq!(first.await.unwrap().status(), 504);
    app.apiserver().clear_faults();
    let after = app.post_token(&app.id_token(webapp_claims()), None).await;
    assert_eq!(after.status(), 200, "the slot was not released");
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_rate_limited_total{scope="in_flight"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    app.stop().await;
}
