use std::time::Duration;

use serde_json::json;

use test_support::app::{CONFIG, TestApp, assert_error, spawn_app_watching, webapp_claims};
use test_support::sandbox::TempDir;

/// A series' value, 0 while it is absent.
fn sample(metrics: &str, series: &str) -> f64 {
    test_support::app::sample(metrics, series).unwrap_or(0.0)
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

#[tokio::test]
async fn policies_and_issuers_a_reload_adds_are_exported_at_zero() {
    let dir = tempdir("reload-series");
    let (app, path) = spawn_app_watching(CONFIG, dir.path()).await;
    let second = local_issuer::LocalIssuer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = CONFIG.replace("{issuer}", app.issuer.url());
    let second_issuer = format!(
        "  - name: second\n    url: \"{}\"\n    audiences: [tokenvend]\npolicies:",
        second.url()
    );
    let text = format!(
        "{}{NEWCOMER}",
        base.replacen("policies:", &second_issuer, 1)
    );
    std::fs::write(&path, text).unwrap();
    await_reloads(&app, "success", 1.0).await;
    let metrics = app.metrics().await;
    for series in [
        r#"tokenvend_tokens_issued_total{policy="newcomer"}"#,
        r#"tokenvend_replays_rejected_total{issuer="second"}"#,
        r#"tokenvend_jwks_fetches_total{issuer="second",result="error"}"#,
        r#"tokenvend_config_reloads_total{result="error"}"#,
    ] {
        assert!(
            metrics.lines().any(|line| line == format!("{series} 0")),
            "{series} not at 0:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_token_exchanged_before_a_reload_that_changes_its_issuer_is_still_spent_after_it() {
    let dir = tempdir("reload-replay");
    let template = CONFIG.replacen(
        "maxTokenLifetime: 1h\n",
        "maxTokenLifetime: 1h\n    replayProtection: true\n",
        1,
    );
    let (app, path) = spawn_app_watching(&template, dir.path()).await;
    let token = app.id_token(webapp_claims());
    assert_eq!(app.post_token(&token, None).await.status(), 200);

    // Every setting of the issuer changes but its URL: a new verifier is built.
    let changed = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("maxTokenLifetime: 1h", "maxTokenLifetime: 2h", 1)
        .replacen("name: local", "name: renamed", 1)
        .replace("issuer: local", "issuer: renamed");
    std::fs::write(&path, changed).unwrap();
    await_reloads(&app, "success", 1.0).await;

    let body = assert_error(app.post_token(&token, None).await, 401, "invalid_token").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already been used"),
        "{body}"
    );
    let fresh = app.id_token(webapp_claims());
    assert_eq!(app.post_token(&fresh, None).await.status(), 200);
}

fn tempdir(name: &str) -> TempDir {
    TempDir::new(name)
}

async fn key_fetches(app: &TestApp) -> f64 {
    sample(
        &app.metrics().await,
        r#"tokenvend_jwks_fetches_total{issuer="local",result="success"}"#,
    )
}

/// The status of an exchange of a webapp token for `audience`.
async fn status_for(app: &TestApp, audience: &str) -> u16 {
    let mut claims = webapp_claims();
    claims["aud"] = json!(audience);
    let token = app.id_token(claims);
    app.post_token(&token, None).await.status().as_u16()
}

#[tokio::test]
async fn a_reload_that_changes_an_issuer_puts_its_new_settings_in_force() {
    let scratch = tempdir("reload-issuer");
    let (app, path) = spawn_app_watching(CONFIG, scratch.path()).await;
    assert_eq!(status_for(&app, "tokenvend").await, 200);
    assert_eq!(status_for(&app, "tokenvend-next").await, 401);
    assert_eq!(key_fetches(&app).await, 1.0);

    // Policies only: the issuer in force, and its keys, are kept.
    let base = CONFIG.replace("{issuer}", app.issuer.url());
    std::fs::write(&path, format!("{base}{NEWCOMER}")).unwrap();
    await_reloads(&app, "success", 1.0).await;
    assert_eq!(key_fetches(&app).await, 1.0, "keys fetched again");

    // The issuer's audiences change: it is rebuilt, its keys fetched, and only the new
    // audience is accepted.
    let moved = base.replacen("audiences: [tokenvend]", "audiences: [tokenvend-next]", 1);
    assert_ne!(moved, base);
    std::fs::write(&path, moved).unwrap();
    await_reloads(&app, "success", 2.0).await;
    assert_eq!(status_for(&app, "tokenvend-next").await, 200);
    assert_eq!(status_for(&app, "tokenvend").await, 401);
    assert_eq!(key_fetches(&app).await, 2.0);
    app.stop().await;
}

const TEAM_POLICY: &str = r#"
policies:
  - name: deploy
    issuer: local
    match: {repository: acme/payments}
    grant:
      serviceAccounts: [production/deployer]
      audiences: [https://kubernetes.default.svc.cluster.local]
      ttl: 15m
      maxTtl: 1h
"#;

#[tokio::test]
async fn a_team_file_broken_while_serving_keeps_its_last_good_version_until_fixed() {
    let dir = tempdir("reload-team");
    let teams = dir.path().join("teams");
    std::fs::create_dir_all(&teams).unwrap();
    let team_file = teams.join("deploy.yaml");
    std::fs::write(&team_file, TEAM_POLICY).unwrap();
    let config = format!(
        "{CONFIG}teams:\n  payments:\n    files: {}/*.yaml\n    ceiling:\n      issuers: [local]\n      \
         namespaces: [production]\n      audiences: [https://kubernetes.default.svc.cluster.local]\n      \
         maxTtl: 1h\n      match: {{repository_owner: acme}}\n",
        teams.display()
    );
    let (app, _path) = spawn_app_watching(&config, dir.path()).await;
    let payments = app
        .id_token(json!({"sub": "p", "repository": "acme/payments", "repository_owner": "acme"}));
    let grants = |expected: u16| {
        let app = &app;
        let payments = &payments;
        async move {
            let response = app.post_token(payments, None).await;
            assert_eq!(response.status(), expected);
            if expected == 200 {
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["policy"], "payments/deploy", "team-qualified name");
            }
        }
    };
    grants(200).await;
    // The ceiling's match holds even though the team's policy does not name the owner.
    let elsewhere = app
        .id_token(json!({"sub": "q", "repository": "acme/payments", "repository_owner": "evil"}));
    assert_eq!(app.post_token(&elsewhere, None).await.status(), 403);
    let refused = |metrics: &str| {
        sample(
            metrics,
            "tokenvend_team_files_refused_total{team=\"payments\"}",
        )
    };
    assert_eq!(refused(&app.metrics().await), 0.0, "exported at 0");

    // Broken: beyond the ceiling. The last good version keeps granting; the refusal is counted.
    std::fs::write(
        &team_file,
        TEAM_POLICY.replace("production/deployer", "kube-system/deployer"),
    )
    .unwrap();
    await_reloads(&app, "error", 1.0).await;
    grants(200).await;
    assert_eq!(refused(&app.metrics().await), 1.0);
    // Broken again, as YAML this time: still the last good version.
    std::fs::write(&team_file, "policies: [\n").unwrap();
    await_reloads(&app, "error", 2.0).await;
    grants(200).await;
    assert_eq!(refused(&app.metrics().await), 2.0);

    // Fixed: a clean reload, and the fixed version grants.
    std::fs::write(&team_file, TEAM_POLICY.replace("ttl: 15m", "ttl: 20m")).unwrap();
    await_reloads(&app, "success", 1.0).await;
    grants(200).await;
    // Removed: its policies go with it.
    std::fs::remove_file(&team_file).unwrap();
    await_reloads(&app, "success", 2.0).await;
    grants(403).await;
    assert_eq!(reloads(&app, "error").await, 2.0);
}
