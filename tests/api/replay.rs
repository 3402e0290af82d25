//! Replay records under `replayProtection`: shared out per granting policy, so that one
//! granted pipeline cannot turn its traffic into refusals for other policies.

use serde_json::json;
use tokenvend::service::ServeOptions;

use crate::metrics::sample;
use test_support::app::{CONFIG, assert_error, spawn_app_serving, webapp_claims};

const NIGHTLY: &str = r#"
  - name: nightly
    issuer: local
    match: {repository: acme/nightly}
    grant:
      serviceAccounts: [production/deployer]
"#;

#[tokio::test]
async fn a_pipeline_varying_sub_fills_only_its_own_policys_share() {
    let template = format!(
        "{}{NIGHTLY}",
        CONFIG.replacen(
            "maxTokenLifetime: 1h\n",
            "maxTokenLifetime: 1h\n    replayProtection: true\n",
            1,
        )
    );
    let options = ServeOptions {
        replay_share: 3,
        ..ServeOptions::default()
    };
    let app = spawn_app_serving(&template, |_| {}, options).await;
    let pipeline = |run: usize| {
        let mut claims = webapp_claims();
        claims["sub"] = json!(format!("repo:acme/webapp:environment:run-{run}"));
        app.id_token(claims)
    };
    let first = pipeline(0);
    assert_eq!(app.post_token(&first, None).await.status(), 200);
    for run in 1..3 {
        assert_eq!(app.post_token(&pipeline(run), None).await.status(), 200);
    }

    let over_share = app.post_token(&pipeline(3), None).await;
    assert!(over_share.headers().contains_key("retry-after"));
    let body = assert_error(over_share, 503, "temporarily_unavailable").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("under this policy"),
        "{body}"
    );

    let nightly = app.id_token(json!({"sub": "repo:acme/nightly", "repository": "acme/nightly"}));
    assert_eq!(
        app.post_token(&nightly, None).await.status(),
        200,
        "another policy keeps its own share"
    );
    assert_error(app.post_token(&first, None).await, 401, "invalid_token").await;

    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_rejections_total{reason="replay_share_full"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_replays_rejected_total{issuer="local"}"#
        ),
        Some(1.0)
    );
}
