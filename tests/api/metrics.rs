use serde_json::json;

use crate::helpers::{spawn_app, webapp_claims};

/// The value of one sample line, e.g. `tokenvend_requests_total{endpoint="token",outcome="issued"}`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn counters_follow_each_outcome_exactly() {
    let app = spawn_app().await;
    let good = app.id_token(webapp_claims());
    for _ in 0..2 {
        assert_eq!(app.post_token(&good, None).await.status(), 200);
    }
    assert_eq!(app.post_token("garbage", None).await.status(), 401);
    let denied = app.id_token(json!({"sub": "x", "repository": "nobody/else"}));
    assert_eq!(app.post_token(&denied, None).await.status(), 403);
    let missing = app.id_token(json!({"sub": "ghost", "repository": "acme/ghost"}));
    assert_eq!(app.post_token(&missing, None).await.status(), 502);

    let metrics = app.metrics().await;
    let rows = [
        (
            r#"tokenvend_requests_total{endpoint="token",outcome="issued"}"#,
            2.0,
        ),
        (
            r#"tokenvend_requests_total{endpoint="token",outcome="invalid_token"}"#,
            1.0,
        ),
        (
            r#"tokenvend_requests_total{endpoint="token",outcome="denied"}"#,
            1.0,
        ),
        (
            r#"tokenvend_requests_total{endpoint="token",outcome="error"}"#,
            1.0,
        ),
        (r#"tokenvend_tokens_issued_total{policy="deploy"}"#, 2.0),
        (r#"tokenvend_kube_token_requests_total{code="201"}"#, 2.0),
        (r#"tokenvend_kube_token_requests_total{code="404"}"#, 1.0),
        (
            r#"tokenvend_request_duration_seconds_count{endpoint="token"}"#,
            5.0,
        ),
        ("tokenvend_issued_token_ttl_seconds_count", 2.0),
        (
            r#"tokenvend_jwks_fetches_total{issuer="local",result="success"}"#,
            1.0,
        ),
        (r#"tokenvend_jwks_keys{issuer="local"}"#, 2.0),
        (r#"tokenvend_build_info{version="0.1.0"}"#, 1.0),
    ];
    for (series, expected) in rows {
        assert_eq!(
            sample(&metrics, series),
            Some(expected),
            "{series}\n{metrics}"
        );
    }
    assert!(
        metrics.contains("process_resident_memory_bytes"),
        "process metrics missing"
    );
    // Label values come from config and fixed sets only: nothing the caller sent appears.
    for caller_value in ["garbage", "nobody/else", "acme/ghost", "repo:acme/webapp"] {
        assert!(
            !metrics.contains(caller_value),
            "{caller_value} leaked into metrics"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn metrics_are_served_on_the_admin_listener_only() {
    let app = spawn_app().await;
    let public = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let admin = app
        .http
        .get(format!("{}/metrics", app.admin_address))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    app.stop().await;
}
