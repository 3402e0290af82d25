use serde_json::json;

use test_support::app::{spawn_app, webapp_claims};

pub use test_support::app::sample;

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

/// Every series whose labels are known at start: an alert on `rate()` or `increase()` of any
/// of them has a series to work on before the first event.
fn series_known_at_start() -> Vec<String> {
    let mut series = Vec::new();
    for (endpoint, outcomes) in [
        (
            "token",
            &[
                "issued",
                "dry_run",
                "denied",
                "invalid_token",
                "invalid_request",
                "error",
            ][..],
        ),
        (
            "oauth",
            &[
                "issued",
                "denied",
                "invalid_token",
                "invalid_request",
                "error",
            ][..],
        ),
        (
            "grants",
            &["listed", "invalid_token", "invalid_request", "error"][..],
        ),
        (
            "revoke",
            &["revoked", "invalid_token", "invalid_request", "error"][..],
        ),
    ] {
        for outcome in outcomes {
            series.push(format!(
                r#"tokenvend_requests_total{{endpoint="{endpoint}",outcome="{outcome}"}}"#
            ));
        }
        series.push(format!(
            r#"tokenvend_request_duration_seconds_count{{endpoint="{endpoint}"}}"#
        ));
    }
    for result in ["success", "error"] {
        series.push(format!(
            r#"tokenvend_config_reloads_total{{result="{result}"}}"#
        ));
    }
    for scope in ["identity", "in_flight"] {
        series.push(format!(
            r#"tokenvend_rate_limited_total{{scope="{scope}"}}"#
        ));
    }
    for policy in ["deploy", "ghost", "unauthorised"] {
        series.push(format!(
            r#"tokenvend_tokens_issued_total{{policy="{policy}"}}"#
        ));
    }
    for via in ["oauth2", "expired"] {
        series.push(format!(r#"tokenvend_revocations_total{{via="{via}"}}"#));
    }
    series.push(r#"tokenvend_jwks_fetches_total{issuer="local",result="error"}"#.to_owned());
    series.push(r#"tokenvend_replays_rejected_total{issuer="local"}"#.to_owned());
    series
}

#[tokio::test]
async fn every_series_with_labels_known_at_start_is_exported_at_zero_before_any_request() {
    let app = spawn_app().await;
    let metrics = app.metrics().await;
    let missing: Vec<String> = series_known_at_start()
        .into_iter()
        .filter(|series| sample(&metrics, series) != Some(0.0))
        .collect();
    assert!(missing.is_empty(), "not at 0: {missing:#?}\n{metrics}");
    // The issuer's keys were fetched once at start.
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_jwks_fetches_total{issuer="local",result="success"}"#
        ),
        Some(1.0)
    );
    app.stop().await;
}
