use std::time::Duration;

use serde_json::json;

use crate::helpers::{CONFIG, TestApp, spawn_app_watching, webapp_claims};
use crate::support::TempDir;

fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

async fn reloads(app: &TestApp, result: &str) -> f64 {
    sample(
        &app.metrics().await,
        &format!("tokenvend_config_reloads_total{{result=\"{result}\"}}"),
    )
}

/// Waits (bounded) until the reload counter for `result` reaches `count`.
async fn await_reloads(app: &TestApp, result: &str, count: f64) {
    for _ in 0..100 {
        if reloads(app, result).await >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {result} reload #{count}: {}", app.metrics().await);
}

const NEWCOMER: &str = r#"
  - name: newcomer
    issuer: local
    match: {repository: acme/newcomer}
    grant:
      serviceAccounts: [production/deployer]
"#;

#[tokio::test]
async fn a_reload_swaps_policies_while_requests_are_in_flight_without_failing_any() {
    let dir = tempdir("reload-in-flight");
    let (app, path) = spawn_app_watching(CONFIG, dir.path()).await;
    let app = std::sync::Arc::new(app);
    let newcomer = app.id_token(json!({"sub": "n", "repository": "acme/newcomer"}));
    assert_eq!(app.post_token(&newcomer, None).await.status(), 403);

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load: Vec<_> = (0..4)
        .map(|worker| {
            let app = std::sync::Arc::clone(&app);
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !*stopped.borrow() {
                    // A subject per request, so that the per-identity rate limit stays out of it.
                    let mut claims = webapp_claims();
                    claims["sub"] = json!(format!("load-{worker}-{}", statuses.len()));
                    let token = app.id_token(claims);
                    statuses.push(app.post_token(&token, None).await.status().as_u16());
                }
                statuses
            })
        })
        .collect();
    let base = CONFIG.replace("{issuer}", app.issuer.url());
    for (round, ttl) in ["20m", "15m", "25m"].iter().enumerate() {
        let text = format!(
            "{}{NEWCOMER}",
            base.replacen("ttl: 15m", &format!("ttl: {ttl}"), 1)
        );
        std::fs::write(&path, text).unwrap();
        await_reloads(&app, "success", (round + 1) as f64).await;
    }
    stop.send(true).unwrap();
    let mut total = 0;
    for task in load {
        let statuses = task.await.unwrap();
        total += statuses.len();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    assert!(total > 0);
    assert_eq!(
        app.post_token(&newcomer, None).await.status(),
        200,
        "the new policy is in force"
    );
    let body: serde_json::Value = app
        .post_token(&app.id_token(webapp_claims()), None)
        .await
        .json()
        .await
        .unwrap();
    let expires: jiff::Timestamp = body["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let lifetime = expires.as_second() - jiff::Timestamp::now().as_second();
    assert!(
        (1495..=1500).contains(&lifetime),
        "ttl 25m in force: {lifetime}"
    );
}

#[tokio::test]
async fn an_invalid_reload_is_refused_and_counted_and_the_old_config_keeps_serving() {
    let dir = tempdir("reload-invalid");
    let (app, path) = spawn_app_watching(CONFIG, dir.path()).await;
    let good = std::fs::read_to_string(&path).unwrap();
    for (round, broken) in [
        good.replacen("ttl: 15m", "ttl: 5m", 1),
        good.replacen("issuer: local\n", "issuer: nowhere\n", 1),
        "issuers: [\n".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(&path, broken).unwrap();
        await_reloads(&app, "error", (round + 1) as f64).await;
        assert_eq!(
            app.post_token(&app.id_token(webapp_claims()), None)
                .await
                .status(),
            200
        );
    }
    assert_eq!(reloads(&app, "success").await, 0.0);
    let ready = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

fn tempdir(name: &str) -> TempDir {
    TempDir::new(name)
}
