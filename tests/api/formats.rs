//! `POST /v1/token?format=kubeconfig|exec-credential`: what kubectl consumes, checked with the
//! real kubectl against the API stand-in.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use test_support::app::{CONFIG, TestApp, assert_error, spawn_app, spawn_app_with, webapp_claims};
use test_support::sandbox::{TempDir, private_home, tool};

const DEPLOYER: &str = "system:serviceaccount:production:deployer";

async fn post_format(app: &TestApp, format: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/v1/token?format={format}", app.address))
        .bearer_auth(app.id_token(webapp_claims()))
        .send()
        .await
        .unwrap()
}

/// `kubectl --kubeconfig FILE auth whoami`, its stdout, and whether it succeeded.
pub(crate) async fn kubectl_whoami(kubeconfig: PathBuf, home: PathBuf) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let mut kubectl = tool("kubectl");
        let output = private_home(&mut kubectl, &home)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ])
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn kubectl_with_the_minted_kubeconfig_is_the_service_account() {
    let app = spawn_app().await;
    let response = post_format(&app, "kubeconfig").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/yaml");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let kubeconfig = response.text().await.unwrap();
    let dir = TempDir::new("kubeconfig");
    std::fs::write(dir.join("config"), &kubeconfig).unwrap();

    let (ok, whoami) = kubectl_whoami(dir.join("config"), dir.home()).await;

    assert!(ok, "kubectl auth whoami:\n{whoami}");
    assert_eq!(whoami.trim(), DEPLOYER);
    let parsed: Value = serde_saphyr::from_str(&kubeconfig).unwrap();
    assert_eq!(parsed["current-context"], "production/deployer");
    assert_eq!(parsed["contexts"][0]["context"]["namespace"], "production");
    assert_eq!(
        parsed["clusters"][0]["cluster"]["server"],
        app.apiserver().url()
    );
    app.stop().await;
}

#[tokio::test]
async fn the_kubeconfig_server_and_ca_come_from_the_config_when_set_and_the_json_names_them_too() {
    let dir = TempDir::new("kubeconfig-ca");
    let ca_file = dir.join("cluster-ca.crt");
    let ca_pem = "-----BEGIN CERTIFICATE-----\nMIIBconfigured\n-----END CERTIFICATE-----\n";
    std::fs::write(&ca_file, ca_pem).unwrap();
    let template = CONFIG.replace(
        "requestTimeout: 2s",
        &format!(
            "requestTimeout: 2s\n  kubeconfigServer: https://k8s.example.com:6443\n  kubeconfigCAFile: {}",
            ca_file.display()
        ),
    );
    let app = spawn_app_with(&template, |_| {}).await;

    let kubeconfig = post_format(&app, "kubeconfig").await.text().await.unwrap();

    let parsed: Value = serde_saphyr::from_str(&kubeconfig).unwrap();
    let cluster = &parsed["clusters"][0]["cluster"];
    assert_eq!(cluster["server"], "https://k8s.example.com:6443");
    let ca = cluster["certificate-authority-data"].as_str().unwrap();
    assert_eq!(STANDARD.decode(ca).unwrap(), ca_pem.as_bytes());

    let json: Value = post_format(&app, "json").await.json().await.unwrap();
    assert_eq!(
        json["cluster"],
        serde_json::json!({"server": "https://k8s.example.com:6443", "certificateAuthorityData": ca}),
        "the same cluster, as plain data"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_exec_credential_carries_the_token_and_its_expiry() {
    let app = spawn_app().await;
    let response = post_format(&app, "exec-credential").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let credential: Value = response.json().await.unwrap();

    assert_eq!(credential["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(credential["kind"], "ExecCredential");
    let token = credential["status"]["token"].as_str().unwrap();
    let review = app
        .review(token, &["https://kubernetes.default.svc.cluster.local"])
        .await;
    assert_eq!(review.user.unwrap().username.as_deref(), Some(DEPLOYER));
    let expires: jiff::Timestamp = credential["status"]["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let remaining = expires.as_second() - jiff::Timestamp::now().as_second();
    assert!((800..=900).contains(&remaining), "{remaining}");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_format_is_an_invalid_request() {
    let app = spawn_app().await;
    let response = post_format(&app, "yaml").await;
    assert_error(response, 400, "invalid_request").await;
    assert_eq!(app.apiserver().token_requests(), 0);
    app.stop().await;
}
