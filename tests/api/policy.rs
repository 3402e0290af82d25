use serde_json::{Value, json};

use test_support::app::{assert_error, spawn_app, webapp_claims};

#[tokio::test]
async fn a_dry_run_decides_fully_and_mints_nothing() {
    let app = spawn_app().await;
    let before = app.apiserver().token_requests();
    let url = format!("{}/v1/token?dryRun=true", app.address);
    let response = app
        .http
        .post(&url)
        .bearer_auth(app.id_token(webapp_claims()))
        .json(&json!({"expirationSeconds": 7200, "audiences": ["https://vault.example.com"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A decision about the caller is no more cacheable than a token (RFC 6749 §5.1).
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"dryRun": true, "decision": "allow", "policy": "deploy",
               "serviceAccount": {"namespace": "production", "name": "deployer"},
               "audiences": ["https://vault.example.com"], "expirationSeconds": 3600,
               "requestedExpirationSeconds": 7200})
    );
    assert_eq!(
        app.apiserver().token_requests(),
        before,
        "a dry run minted a token"
    );
    let denied = app
        .http
        .post(&url)
        .bearer_auth(app.id_token(json!({"sub": "x", "repository": "nobody"})))
        .send()
        .await
        .unwrap();
    assert_error(denied, 403, "access_denied").await;
    app.stop().await;
}

#[tokio::test]
async fn grants_list_only_the_callers_own() {
    let app = spawn_app().await;
    let url = format!("{}/v1/grants", app.address);
    let response = app
        .http
        .get(&url)
        .bearer_auth(app.id_token(webapp_claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["issuer"], "local");
    assert_eq!(body["subject"], "repo:acme/webapp:ref:refs/heads/main");
    assert_eq!(
        body["grants"],
        json!([{"policy": "deploy", "serviceAccounts": ["production/deployer"],
                "audiences": ["https://kubernetes.default.svc.cluster.local", "https://vault.example.com"],
                "ttlSeconds": 900, "maxTtlSeconds": 3600}])
    );
    // Another identity sees its own grants, and none of the deploy policy's.
    let other = app
        .http
        .get(&url)
        .bearer_auth(app.id_token(json!({"sub": "o", "repository": "acme/other"})))
        .send()
        .await
        .unwrap();
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["grants"].as_array().unwrap().len(), 1);
    assert_eq!(body["grants"][0]["policy"], "unauthorised");
    let nobody = app
        .http
        .get(&url)
        .bearer_auth(app.id_token(json!({"sub": "n", "repository": "x/y"})))
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.json::<Value>().await.unwrap()["grants"], json!([]));
    let anonymous = app.http.get(&url).send().await.unwrap();
    assert_error(anonymous, 401, "invalid_token").await;
    app.stop().await;
}

const TEAMS: &str = r#"
issuers:
  - {name: local, url: "{issuer}", audiences: [tokenvend], maxTokenLifetime: 1h}
policies:
  - name: teams
    issuer: local
    match: {repository: {glob: "acme/*"}}
    grant: {serviceAccounts: ["team-${claims.team}/deployer"]}
"#;

#[tokio::test]
async fn a_template_never_renders_into_the_namespace_tokenvend_runs_in() {
    let options = tokenvend::service::ServeOptions {
        own_namespace: Some("team-ops".to_owned()),
        ..tokenvend::service::ServeOptions::default()
    };
    let app = test_support::app::spawn_app_serving(TEAMS, |_| {}, options).await;
    let decide = |team: &str| {
        let token = app.id_token(json!({"sub": "ci", "repository": "acme/app", "team": team}));
        let url = format!("{}/v1/token?dryRun=true", app.address);
        app.http
            .post(url)
            .bearer_auth(token)
            .json(&json!({}))
            .send()
    };
    assert_eq!(decide("apps").await.unwrap().status(), 200);
    assert_error(decide("ops").await.unwrap(), 403, "access_denied").await;
}
