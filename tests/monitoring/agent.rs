//! The monitoring-agent story end to end: `tokenvend token --watch --out FILE` keeps a token
//! for the `monitoring/metrics-reader` service account, and a real Prometheus scrapes the
//! Kubernetes API stand-in's `/metrics` with `authorization.credentials_file: FILE`, as
//! deploy/examples/prometheus-agent.yaml does. Without the file, with an expired token or once
//! the account lost its permission, the target is down.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kube_standin::RbacRule;
use serde_json::{Value, json};

use crate::prom::{ChildGuard, Prometheus, ScratchDir};
use test_support::app::{CONFIG, TestApp, spawn_app_with};

const READER: &str = "system:serviceaccount:monitoring:metrics-reader";

/// The test config plus a policy granting the metrics reader to the monitoring repository.
fn config() -> String {
    format!(
        "{CONFIG}  - name: metrics-reader\n    issuer: local\n    match: {{repository: acme/monitoring}}\n    grant:\n      serviceAccounts: [monitoring/metrics-reader]\n      audiences: [https://kubernetes.default.svc.cluster.local]\n      ttl: 15m\n"
    )
}

fn start_watch(app: &TestApp, id_token_file: &Path, out: &Path) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_tokenvend"))
        .args(["token", "--server", &app.address])
        .arg("--id-token-file")
        .arg(id_token_file)
        .args(["--service-account", "monitoring/metrics-reader"])
        .args(["--output", "token", "--watch"])
        .arg("--out")
        .arg(out)
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ChildGuard(child)
}

/// The same token with `exp` an hour ago, signed by the stand-in's key: expired, otherwise valid.
fn expired_copy(app: &TestApp, token: &str) -> String {
    let payload = URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    let mut claims: Value = serde_json::from_slice(&payload).unwrap();
    let now = jiff::Timestamp::now().as_second();
    claims["iat"] = json!(now - 7200);
    claims["nbf"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    app.apiserver().signing_key().sign(None, &claims).unwrap()
}

#[tokio::test]
async fn prometheus_scrapes_the_api_with_the_watched_token_file_and_fails_without_a_valid_one() {
    let app = spawn_app_with(&config(), |options| {
        options
            .rbac
            .push(RbacRule::non_resource(READER, &["get"], &["/metrics"]));
    })
    .await;
    let dir = ScratchDir::new("agent");
    let id_token_file = dir.write(
        "id-token",
        &app.id_token(json!({"sub": "repo:acme/monitoring", "repository": "acme/monitoring"})),
    );
    let out = dir.path().join("token");
    let watcher = start_watch(&app, &id_token_file, &out);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !out.exists() {
        assert!(Instant::now() < deadline, "the watcher wrote no token");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ca = dir.write("ca.crt", app.apiserver().ca_pem());
    let target = app.apiserver().url().trim_start_matches("https://");
    let prometheus = Prometheus::start(&format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
         scrape_configs:\n  - job_name: apiserver\n    scheme: https\n    \
         authorization: {{type: Bearer, credentials_file: '{}'}}\n    \
         tls_config: {{ca_file: '{}'}}\n    static_configs: [{{targets: ['{target}']}}]\n",
        out.display(),
        ca.display()
    ))
    .await;

    // Up with the watched token, and the stand-in's series are there.
    prometheus.await_target("apiserver", "up", "").await;
    let served = prometheus
        .query(r#"apiserver_request_total{job="apiserver",resource="serviceaccounts",subresource="token",code="201"}"#)
        .await;
    assert!(
        served.first().is_some_and(|(_, count)| *count >= 1.0),
        "{served:?}"
    );

    // The watcher stops; its valid token stays. Then the file goes: down.
    drop(watcher);
    let valid = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    let error = prometheus
        .await_target("apiserver", "down", "credentials")
        .await;
    assert!(
        !error.contains(valid.trim()),
        "the token in an error: {error}"
    );

    // An expired token: 401, down.
    std::fs::write(&out, expired_copy(&app, valid.trim())).unwrap();
    prometheus.await_target("apiserver", "down", "401").await;

    // The valid token again: up.
    std::fs::write(&out, &valid).unwrap();
    prometheus.await_target("apiserver", "up", "").await;

    // The account's permission revoked: 403, down.
    app.apiserver().set_rbac(Vec::new());
    prometheus.await_target("apiserver", "down", "403").await;

    drop(prometheus);
    drop(dir);
    app.stop().await;
}
