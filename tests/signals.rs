//! `tokenvend serve` as a process, and the signals it is sent in production: SIGHUP reloads
//! its config file (and a config that does not load is refused); SIGTERM lets a request in
//! flight finish, refuses new connections and exits 0, or cuts a request that outlasts the
//! grace period; and running out of file descriptors does not end it.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use kube_standin::{ApiServer, Fault};
use local_issuer::LocalIssuer;
use serde_json::Value;
use tokenvend::config::Config;
use tokenvend::dev::session::stand_in_options;

use test_support::app::{CONFIG, webapp_claims};
use test_support::sandbox::TempDir;

const SERVICE_TOKEN: &str = "service-token";

/// Writes `text` to `name` in `dir`; returns its path.
fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The local issuer and the API stand-in, in this process.
struct Upstreams {
    issuer: LocalIssuer,
    apiserver: ApiServer,
    config_text: String,
}

impl Upstreams {
    /// `request_timeout` replaces the test config's 2 s deadline.
    async fn start(request_timeout: &str) -> Self {
        serving::crypto::install_providers().unwrap();
        let issuer = LocalIssuer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let config_text = CONFIG.replace("{issuer}", issuer.url()).replace(
            "requestTimeout: 2s",
            &format!("requestTimeout: {request_timeout}"),
        );
        let config = Config::parse(&config_text, Path::new("test.yaml")).unwrap();
        let apiserver = ApiServer::start(
            "127.0.0.1:0".parse().unwrap(),
            stand_in_options(&config, SERVICE_TOKEN),
        )
        .await
        .unwrap();
        Self {
            issuer,
            apiserver,
            config_text,
        }
    }

    fn id_token(&self) -> String {
        let mut claims = webapp_claims();
        claims["aud"] = "tokenvend".into();
        self.issuer.mint(Algorithm::RS256, claims).unwrap()
    }
}

/// A running `tokenvend serve`, killed if the test ends before it exits.
struct Serve {
    child: Child,
    public: String,
    admin: String,
    /// Its log lines (JSON, stderr) so far, read by `reader`.
    log: Arc<Mutex<Vec<Value>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    http: reqwest::Client,
}

impl Serve {
    /// Starts `serve` on the scratch directory's config.yaml, with HOME in the scratch directory.
    fn start(scratch: &TempDir, upstreams: &Upstreams, flags: &[&str]) -> Self {
        Self::start_with_fd_limit(scratch, upstreams, flags, None)
    }

    /// As [`Serve::start`], under `prlimit --nofile=N` when a limit is given.
    fn start_with_fd_limit(
        scratch: &TempDir,
        upstreams: &Upstreams,
        flags: &[&str],
        fd_limit: Option<u32>,
    ) -> Self {
        let config = write(scratch, "config.yaml", &upstreams.config_text);
        let kubeconfig = write(
            scratch,
            "kubeconfig",
            &upstreams.apiserver.kubeconfig(SERVICE_TOKEN),
        );
        let mut command = match fd_limit {
            None => Command::new(env!("CARGO_BIN_EXE_tokenvend")),
            Some(limit) => {
                let mut prlimit = test_support::sandbox::tool("prlimit");
                prlimit
                    .arg(format!("--nofile={limit}:{limit}"))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_tokenvend"));
                prlimit
            }
        };
        let mut child = command
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(flags)
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", scratch.home())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (serving_tx, serving_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn({
            let log = Arc::clone(&log);
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let Ok(json) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if json["message"] == "tokenvend serving" {
                        let _ = serving_tx.send((
                            json["public"].as_str().unwrap().to_owned(),
                            json["admin"].as_str().unwrap().to_owned(),
                        ));
                    }
                    log.lock().unwrap().push(json);
                }
            }
        });
        let mut serve = Self {
            child,
            public: String::new(),
            admin: String::new(),
            log,
            reader: Some(reader),
            http: reqwest::Client::new(),
        };
        (serve.public, serve.admin) = serving_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("tokenvend serve did not start");
        serve
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    async fn exchange(&self, id_token: &str) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("http://{}/v1/token", self.public))
            .bearer_auth(id_token)
            .send()
            .await
    }

    async fn reloads(&self, result: &str) -> f64 {
        let metrics = self
            .http
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = format!("tokenvend_config_reloads_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits (within a generous limit) until `result` reloads number `count`.
    async fn await_reloads(&self, result: &str, count: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.reloads(result).await < count {
            assert!(
                Instant::now() < deadline,
                "no {result} reload #{count}; log: {:?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (within a generous limit) until a log line at `level` says `message`.
    async fn await_log(&self, level: &str, message: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let logged = || {
            let log = self.log.lock().unwrap();
            log.iter()
                .any(|line| line["level"] == level && line["message"] == message)
        };
        while !logged() {
            assert!(
                Instant::now() < deadline,
                "not logged: {level} {message:?}; log: {:?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// After the process exited: whether a line at `level` said `message`.
    fn logged_before_exit(&mut self, level: &str, message: &str) -> bool {
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        let log = self.log.lock().unwrap();
        log.iter()
            .any(|line| line["level"] == level && line["message"] == message)
    }

    /// The exit status, if the process ends within `limit`.
    async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_config_that_does_not_load_is_logged_counted_and_ignored() {
    let upstreams = Upstreams::start("2s").await;
    let scratch = TempDir::new("sighup");
    // Polling the file is slower than the test: only SIGHUP can make it reload.
    let mut serve = Serve::start(&scratch, &upstreams, &["--config-poll-interval", "1h"]);
    assert_eq!(
        serve
            .exchange(&upstreams.id_token())
            .await
            .unwrap()
            .status(),
        200
    );

    write(&scratch, "config.yaml", "issuers: [\n");
    serve.signal("HUP");
    serve.await_reloads("error", 1.0).await;
    assert_eq!(
        serve.exit_within(Duration::ZERO).await,
        None,
        "SIGHUP ended the process"
    );
    assert_eq!(
        serve
            .exchange(&upstreams.id_token())
            .await
            .unwrap()
            .status(),
        200,
        "the config in force stopped serving"
    );
    let ready = serve
        .http
        .get(format!("http://{}/readyz", serve.public))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    serve
        .await_log("ERROR", "config reload refused; the config in force stays")
        .await;

    // A loadable config on the next SIGHUP is put in force.
    write(&scratch, "config.yaml", &upstreams.config_text);
    serve.signal("HUP");
    serve.await_reloads("success", 1.0).await;
    assert_eq!(serve.reloads("error").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cuts_a_request_that_outlasts_the_grace_period_and_exits_zero() {
    // The API server stalls for 30 s and the deadline would wait for it: only the 1 s grace
    // period can end the request.
    let upstreams = Upstreams::start("30s").await;
    let scratch = TempDir::new("grace");
    let mut serve = Serve::start(&scratch, &upstreams, &["--shutdown-grace-period", "1s"]);
    upstreams
        .apiserver
        .inject(Fault::Stall(Duration::from_secs(30)));
    let in_flight = tokio::spawn({
        let request = serve
            .http
            .post(format!("http://{}/v1/token", serve.public))
            .bearer_auth(upstreams.id_token());
        async move { request.send().await }
    });
    let waiting = Instant::now();
    while upstreams.apiserver.token_requests() == 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the request never reached the API server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    serve.signal("TERM");
    // Generous, yet well short of the stall: the grace period, not the API server, ended it.
    let status = serve
        .exit_within(Duration::from_secs(15))
        .await
        .expect("tokenvend outlived its grace period");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    let outcome = in_flight.await.unwrap();
    assert!(
        outcome.is_err(),
        "the in-flight request got an answer: {outcome:?}"
    );
    assert!(serve.logged_before_exit(
        "WARN",
        "drain timeout: closing connections with requests still in flight"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_pauses_accepting_instead_of_ending_the_service() {
    let upstreams = Upstreams::start("2s").await;
    let scratch = TempDir::new("fd-limit");
    let serve = Serve::start_with_fd_limit(&scratch, &upstreams, &[], Some(96));
    let public: std::net::SocketAddr = serve.public.parse().unwrap();
    // More connections than the process has descriptors for, from five addresses so that the
    // per-peer cap (64) is not what refuses them; held open until accepting has failed.
    let mut held = Vec::new();
    for i in 0..200u8 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 20 + i % 5], 0)))
            .unwrap();
        if let Ok(stream) = socket.connect(public).await {
            held.push(stream);
        }
    }
    serve
        .await_log(
            "WARN",
            "out of file descriptors or memory; accepting again shortly",
        )
        .await;
    drop(held);
    // The service goes on: once the held connections are gone it answers again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let exchanged = serve.exchange(&upstreams.id_token()).await;
        if matches!(&exchanged, Ok(response) if response.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 200 after the descriptors were freed: {exchanged:?}; log: {:?}",
            serve.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_request_completes_it_refuses_new_connections_and_exits_zero() {
    // A deadline well above the stall, so that the in-flight request can succeed.
    let upstreams = Upstreams::start("30s").await;
    let scratch = TempDir::new("shutdown");
    let mut serve = Serve::start(&scratch, &upstreams, &["--shutdown-grace-period", "30s"]);
    upstreams
        .apiserver
        .inject(Fault::Stall(Duration::from_secs(3)));
    let in_flight = tokio::spawn({
        let request = serve
            .http
            .post(format!("http://{}/v1/token", serve.public))
            .bearer_auth(upstreams.id_token());
        async move { request.send().await }
    });
    let waiting = Instant::now();
    while upstreams.apiserver.token_requests() == 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the request never reached the API"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    serve.signal("TERM");
    // The listener closes at once: connecting is refused while the request is still draining.
    let refusing = Instant::now();
    loop {
        match tokio::net::TcpStream::connect(&serve.public).await {
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
    let status = serve
        .exit_within(Duration::from_secs(30))
        .await
        .expect("tokenvend did not exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file() {
    let upstreams = Upstreams::start("2s").await;
    let scratch = TempDir::new("sighup-reload");
    let serve = Serve::start(&scratch, &upstreams, &["--config-poll-interval", "1h"]);
    let status = || async {
        let response = serve.exchange(&upstreams.id_token()).await.unwrap();
        response.status().as_u16()
    };
    assert_eq!(status().await, 200);

    // The caller's policy goes; the file changes, and only SIGHUP makes it count.
    write(
        &scratch,
        "config.yaml",
        &upstreams
            .config_text
            .replacen("repository: acme/webapp", "repository: acme/nobody", 1),
    );
    assert_eq!(
        status().await,
        200,
        "reloaded without SIGHUP (the poll interval is an hour)"
    );
    serve.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while status().await != 403 {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the config"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
