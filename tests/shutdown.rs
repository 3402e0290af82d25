//! `tokenvend serve` as a process, stopped with SIGTERM while a token request is in flight:
//! the request completes, new connections are refused, and the process exits 0.

#[allow(
    dead_code,
    reason = "shared with the api tests; this binary uses part of it"
)]
#[path = "api/helpers.rs"]
mod helpers;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::Value;
use tokenvend::config::Config;
use tokenvend::dev::apiserver::{ApiServer, Fault};
use tokenvend::dev::issuer::LocalIssuer;
use tokenvend::dev::session::stand_in_options;

use crate::helpers::{CONFIG, webapp_claims};

const SERVICE_TOKEN: &str = "service-token";

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
    tokenvend::crypto::install_providers().unwrap();
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
    let dir = std::env::temp_dir().join(format!("tokenvend-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _scratch = Scratch(dir.clone());
    let config_path = write(&dir, "config.yaml", &config_text);
    let kubeconfig = write(&dir, "kubeconfig", &apiserver.kubeconfig(SERVICE_TOKEN));

    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenvend"))
        .args(["serve", "--config"])
        .arg(&config_path)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--shutdown-grace-period", "30s"])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
