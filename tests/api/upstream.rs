use std::time::{Duration, Instant};

use kube_standin::Fault;
use serde_json::json;

use test_support::app::{assert_error, spawn_app, webapp_claims};

#[tokio::test]
async fn a_missing_service_account_is_an_upstream_not_found() {
    let app = spawn_app().await;
    let id_token = app.id_token(json!({"sub": "ghost", "repository": "acme/ghost"}));
    let body = assert_error(app.post_token(&id_token, None).await, 502, "upstream_error").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("404 NotFound"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn rbac_refusal_is_an_upstream_forbidden() {
    let app = spawn_app().await;
    let id_token = app.id_token(json!({"sub": "other", "repository": "acme/other"}));
    let body = assert_error(app.post_token(&id_token, None).await, 502, "upstream_error").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("403 Forbidden"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_stalled_api_server_is_a_timeout_within_the_deadline() {
    let app = spawn_app().await;
    app.apiserver()
        .inject(Fault::Stall(Duration::from_secs(30)));
    let started = Instant::now();
    let response = app.post_token(&app.id_token(webapp_claims()), None).await;
    let elapsed = started.elapsed();
    assert_error(response, 504, "upstream_timeout").await;
    // The configured deadline is 2 s; the stall is 30 s. Generous bound: this checks the
    // deadline is enforced at all, not how fast the machine is.
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    app.stop().await;
}
