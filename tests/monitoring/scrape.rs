//! tokenvend's live `/metrics`: lint-clean for `promtool check metrics`, and scraped by a real
//! Prometheus whose query API then counts the tokens issued.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::prom::{Prometheus, assert_success, promtool, text};
use test_support::app::{spawn_app, webapp_claims};

#[tokio::test]
async fn live_metrics_after_traffic_pass_promtool_check_metrics() {
    let app = spawn_app().await;
    let issued = app.post_token(&app.id_token(webapp_claims()), None).await;
    assert_eq!(issued.status(), 200);
    let denied = app
        .post_token(
            &app.id_token(json!({"sub": "x", "repository": "acme/nobody"})),
            None,
        )
        .await;
    assert_eq!(denied.status(), 403);
    let invalid = app.post_token("not-a-token", None).await;
    assert_eq!(invalid.status(), 401);
    let metrics = app.metrics().await;
    assert!(metrics.contains("tokenvend_tokens_issued_total{policy=\"deploy\"} 1"));
    let output = promtool(&["check", "metrics"], Some(metrics)).await;
    assert_success(&output, "promtool check metrics");
    assert_eq!(text(&output.stdout), "", "lint findings");
    app.stop().await;
}

#[tokio::test]
async fn a_real_prometheus_counts_the_tokens_issued() {
    const ISSUED: usize = 4;
    let app = spawn_app().await;
    for _ in 0..ISSUED {
        let response = app.post_token(&app.id_token(webapp_claims()), None).await;
        assert_eq!(response.status(), 200);
    }
    let target = app.admin_address.trim_start_matches("http://");
    let prometheus = Prometheus::start(&format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
         scrape_configs:\n  - job_name: tokenvend\n    static_configs: [{{targets: ['{target}']}}]\n"
    ))
    .await;
    prometheus.await_target("tokenvend", "up", "").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let counted = loop {
        let result = prometheus
            .query(r#"tokenvend_tokens_issued_total{job="tokenvend",policy="deploy"}"#)
            .await;
        if let [(_, value)] = result.as_slice() {
            break *value;
        }
        assert!(Instant::now() < deadline, "never scraped: {result:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    #[allow(clippy::cast_precision_loss, reason = "a handful")]
    let expected = ISSUED as f64;
    assert_eq!(counted, expected);
    // The alert for a missing tokenvend stays silent while it is scraped.
    assert_eq!(
        prometheus
            .query(r#"absent(up{job="tokenvend"} == 1)"#)
            .await,
        []
    );
    drop(prometheus);
    app.stop().await;
}
