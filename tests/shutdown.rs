//! `tokenvend serve` as a process: stopped with SIGTERM while a token request is in flight,
//! the request completes, new connections are refused, and the process exits 0; sent SIGHUP,
//! it reloads its config file.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use kube_standin::{ApiServer, Fault};
use local_issuer::LocalIssuer;
use serde_json::Value;
use tokenvend::config::Config;
use tokenvend::dev::session::stand_in_options;

use test_support::app::{CONFIG, webapp_claims};
use test_support::sandbox::{ChildGuard, TempDir};

const SERVICE_TOKEN: &str = "service-token";

/// The address of the public listener, from the `tokenvend serving` log line on stderr.
fn public_address(child: &mut Child) -> String {
    let stderr = child.stderr.take().unwrap();
    let (found_tx, found_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(json) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if json["message"] == "tokenvend serving" {
                let _ = found_tx.send(json["public"].as_str().unwrap().to_owned());
            }
        }
    });
    found_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("tokenvend serve did not start")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn exit_status(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "tokenvend did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_request_completes_it_refuses_new_connections_and_exits_zero() {
    serving::crypto::install_providers().unwrap();
    let issuer = LocalIssuer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // A deadline well above the stall, so that the in-flight request can succeed.
    let config_text = CONFIG
        .replace("{issuer}", issuer.url())
        .replace("requestTimeout: 2s", "requestTimeout: 30s");
    let config = Config::parse(&config_text, Path::new("test.yaml")).unwrap();
    let apiserver = ApiServer::start(
        "127.0.0.1:0".parse().unwrap(),
        stand_in_options(&config, SERVICE_TOKEN),
    )
    .await
    .unwrap();
    let dir = TempDir::new("shutdown");
    let config_path = write(dir.path(), "config.yaml", &config_text);
    let kubeconfig = write(
        dir.path(),
        "kubeconfig",
        &apiserver.kubeconfig(SERVICE_TOKEN),
    );

    let mut child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_tokenvend"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--shutdown-grace-period", "30s"])
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let address = public_address(&mut child);

    apiserver.inject(Fault::Stall(Duration::from_secs(3)));
    let mut claims = webapp_claims();
    claims["aud"] = "tokenvend".into();
    let id_token = issuer.mint(Algorithm::RS256, claims).unwrap();
    let in_flight = tokio::spawn({
        let url = format!("http://{address}/v1/token");
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(id_token)
                .send()
                .await
        }
    });
    let waiting = Instant::now();
    while apiserver.token_requests() == 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the request never reached the API"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // The listener closes at once: connecting is refused while the request is still draining.
    let refusing = Instant::now();
    loop {
        match tokio::net::TcpStream::connect(&address).await {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {}
        }
        assert!(
            refusing.elapsed() < Duration::from_secs(30),
            "new connections still accepted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request was dropped");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["serviceAccount"]["name"], "deployer");

    let status = exit_status(&mut child, Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "exit status {status}");
    apiserver.shutdown().await;
    issuer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file() {
    serving::crypto::install_providers().unwrap();
    // The issuer and the API stand-in listen on ports this test holds: no port is released and
    // handed to the child.
    let issuer = LocalIssuer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let config_text = CONFIG.replace("{issuer}", issuer.url());
    let config = Config::parse(&config_text, Path::new("test.yaml")).unwrap();
    let apiserver = ApiServer::start(
        "127.0.0.1:0".parse().unwrap(),
        stand_in_options(&config, SERVICE_TOKEN),
    )
    .await
    .unwrap();
    let dir = TempDir::new("sighup");
    let config_path = write(dir.path(), "config.yaml", &config_text);
    let kubeconfig = write(
        dir.path(),
        "kubeconfig",
        &apiserver.kubeconfig(SERVICE_TOKEN),
    );
    let mut child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_tokenvend"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--config-poll-interval", "1h"])
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let address = public_address(&mut child);
    let mut claims = webapp_claims();
    claims["aud"] = "tokenvend".into();
    let exchange = || {
        let id_token = issuer.mint(Algorithm::RS256, claims.clone()).unwrap();
        let url = format!("http://{address}/v1/token");
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(id_token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(exchange().await, 200);

    // The caller's policy goes; the file changes, and only SIGHUP makes it count.
    std::fs::write(
        &config_path,
        config_text.replacen("repository: acme/webapp", "repository: acme/nobody", 1),
    )
    .unwrap();
    assert_eq!(
        exchange().await,
        200,
        "reloaded without SIGHUP (the poll interval is an hour)"
    );
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while exchange().await != 403 {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the config"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(child);
    apiserver.shutdown().await;
    issuer.shutdown().await;
}
