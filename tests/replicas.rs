//! More than one replica: `tokenvend serve` processes sharing one real `redis-server`
//! (`store:`). An ID token with replay protection is exchanged once across replicas and
//! restarts; one identity's rate limit is one budget; a store that dies or stalls makes
//! replay-protected issuers answer 503 (and nothing else), and the service recovers when it
//! returns; a wrong store setting is refused at load or start, naming the key, and the
//! password never reaches a log line.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use kube_standin::ApiServer;
use local_issuer::LocalIssuer;
use serde_json::Value;
use tokenvend::config::Config;
use tokenvend::dev::session::stand_in_options;

use test_support::app::{sample, webapp_claims};
use test_support::redis::{RedisServer, Reply};
use test_support::sandbox::TempDir;

const SERVICE_TOKEN: &str = "service-token";

/// `local` has replay protection; `plain` does not. `{store}` is the `store:` block or nothing.
const CONFIG: &str = r#"
kubernetes:
  requestTimeout: 2s
{store}
issuers:
  - name: local
    url: "{issuer}"
    audiences: [tokenvend]
    algorithms: [RS256]
    maxTokenLifetime: 1h
    replayProtection: true
  - name: plain
    url: "{plain}"
    audiences: [tokenvend]
    algorithms: [RS256]
    maxTokenLifetime: 1h
policies:
  - name: deploy
    issuer: local
    match: {repository: acme/webapp, ref: refs/heads/main}
    grant:
      serviceAccounts: [production/deployer]
  - name: plain-deploy
    issuer: plain
    match: {repository: acme/webapp, ref: refs/heads/main}
    grant:
      serviceAccounts: [production/deployer]
"#;

/// The two issuers and the API stand-in, in this process.
struct Upstreams {
    issuer: LocalIssuer,
    plain: LocalIssuer,
    apiserver: ApiServer,
}

impl Upstreams {
    async fn start() -> Self {
        serving::crypto::install_providers().unwrap();
        let any = || "127.0.0.1:0".parse().unwrap();
        let issuer = LocalIssuer::start(any()).await.unwrap();
        let plain = LocalIssuer::start(any()).await.unwrap();
        let text = config_text(&issuer, &plain, "");
        let config = Config::parse(&text, Path::new("test.yaml")).unwrap();
        let apiserver = ApiServer::start(any(), stand_in_options(&config, SERVICE_TOKEN))
            .await
            .unwrap();
        Self {
            issuer,
            plain,
            apiserver,
        }
    }

    /// The config text with `store` (a YAML block, or "") in it.
    fn config(&self, store: &str) -> String {
        config_text(&self.issuer, &self.plain, store)
    }

    /// A fresh ID token (its own `jti`) from the replay-protected issuer.
    fn id_token(&self) -> String {
        let mut claims = webapp_claims();
        claims["aud"] = "tokenvend".into();
        self.issuer.mint(Algorithm::RS256, claims).unwrap()
    }

    /// An ID token from the issuer without replay protection.
    fn plain_token(&self) -> String {
        let mut claims = webapp_claims();
        claims["aud"] = "tokenvend".into();
        self.plain.mint(Algorithm::RS256, claims).unwrap()
    }
}

fn config_text(issuer: &LocalIssuer, plain: &LocalIssuer, store: &str) -> String {
    CONFIG
        .replace("{store}", store)
        .replace("{issuer}", issuer.url())
        .replace("{plain}", plain.url())
}

/// The `store:` block for `redis`, with `extra` lines. Unless they set one, the timeout is
/// generous: on a busy test machine a loopback answer may take longer than the default 250 ms,
/// and only the tests about a slow or dead store want to see that.
fn store_block(redis: &RedisServer, extra: &str) -> String {
    let timeout = if extra.contains("timeout:") {
        ""
    } else {
        "  timeout: 5s\n"
    };
    format!("store:\n  url: {}\n{extra}{timeout}", redis.url())
}

/// A running `tokenvend serve`, killed when dropped.
struct Serve {
    child: Child,
    public: String,
    admin: String,
    log: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

impl Serve {
    fn command(scratch: &TempDir, upstreams: &Upstreams, config: &str) -> Command {
        let path = scratch.join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let kubeconfig = scratch.join("kubeconfig");
        std::fs::write(&kubeconfig, upstreams.apiserver.kubeconfig(SERVICE_TOKEN)).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokenvend"));
        command
            .args(["serve", "--config"])
            .arg(&path)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            // Every connection comes from 127.0.0.1.
            .args(["--max-connections-per-peer", "0"])
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", scratch.home())
            .env("RUST_LOG", "info,tokenvend=debug")
            .env_remove("TOKENVEND_STORE_PASSWORD")
            .env_remove("POD_NAME")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Starts `serve` and waits until it says it is serving.
    fn start(mut command: Command) -> Self {
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (serving_tx, serving_rx) = std::sync::mpsc::channel();
        std::thread::spawn({
            let log = Arc::clone(&log);
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(json) = serde_json::from_str::<Value>(&line)
                        && json["message"] == "tokenvend serving"
                    {
                        let _ = serving_tx.send((
                            json["public"].as_str().unwrap().to_owned(),
                            json["admin"].as_str().unwrap().to_owned(),
                        ));
                    }
                    log.lock().unwrap().push(line);
                }
            }
        });
        let Ok((public, admin)) = serving_rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("tokenvend serve did not start: {:?}", log.lock().unwrap());
        };
        Self {
            child,
            public,
            admin,
            log,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    async fn exchange(&self, id_token: &str) -> reqwest::Response {
        self.http
            .post(format!("http://{}/v1/token", self.public))
            .bearer_auth(id_token)
            .send()
            .await
            .expect("an answer, not a hung or dropped connection")
    }

    async fn status(&self, id_token: &str) -> u16 {
        self.exchange(id_token).await.status().as_u16()
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn readyz(&self) -> (u16, Value) {
        let response = self
            .http
            .get(format!("http://{}/readyz", self.public))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// How many log lines so far say `message`.
    fn logged(&self, message: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| {
                serde_json::from_str::<Value>(line).is_ok_and(|json| json["message"] == message)
            })
            .count()
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `serve` expecting it to refuse to start (within a generous limit); returns its stderr.
fn refused(mut command: Command) -> String {
    let mut child = test_support::sandbox::ChildGuard::spawn(&mut command);
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "serve started instead of refusing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.into_inner().wait_with_output().unwrap();
    assert!(!output.status.success(), "serve exited 0");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Polls `check` (generously) until it holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const DOWN: &str = "shared store down: replay-protected issuers answer 503, rate limits fall back to this replica's own";
const UP: &str = "shared store reachable again; replay-protected issuers answer again, rate limits are shared again";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_is_exchanged_once_across_two_replicas_and_a_restart() {
    let redis = RedisServer::start();
    let upstreams = Upstreams::start().await;
    let config = upstreams.config(&store_block(&redis, ""));
    let (dir_a, dir_b) = (TempDir::new("replica-a"), TempDir::new("replica-b"));
    let start = |dir: &TempDir| {
        let mut command = Serve::command(dir, &upstreams, &config);
        // One subject for every token: the rate limit is another test's business.
        command.args(["--rate-limit", "0"]);
        Serve::start(command)
    };
    let a = Arc::new(start(&dir_a));
    let b = Arc::new(start(&dir_b));

    let tokens: Vec<String> = (0..200).map(|_| upstreams.id_token()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(16));
    for (index, token) in tokens.iter().cloned().enumerate() {
        let (a, b, slots) = (Arc::clone(&a), Arc::clone(&b), Arc::clone(&slots));
        tasks.spawn(async move {
            let _slot = slots.acquire().await.unwrap();
            // The same token presented to both replicas at once.
            let (one, other) = tokio::join!(a.status(&token), b.status(&token));
            (index, one, other)
        });
    }
    let mut issued = 0;
    while let Some(result) = tasks.join_next().await {
        let (index, one, other) = result.unwrap();
        let mut pair = [one, other];
        pair.sort_unstable();
        assert_eq!(
            pair,
            [200, 401],
            "token {index}: one 200, one refusal as replayed"
        );
        issued += 1;
    }
    assert_eq!(issued, 200);
    let replayed = sample(
        &a.metrics().await,
        "tokenvend_replays_rejected_total{issuer=\"local\"}",
    )
    .unwrap()
        + sample(
            &b.metrics().await,
            "tokenvend_replays_rejected_total{issuer=\"local\"}",
        )
        .unwrap();
    assert_eq!(replayed, 200.0);

    // A replica restarted (a new process) still refuses every spent token.
    drop(a);
    let a = start(&dir_a);
    for token in tokens.iter().step_by(20) {
        let response = a.exchange(token).await;
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(
            body["error_description"], "the token has already been used",
            "{body}"
        );
    }
    assert_eq!(a.status(&upstreams.id_token()).await, 200, "a fresh token");
    // What Redis holds is digests, not claims.
    let keys = redis.keys("tokenvend:replay:");
    assert_eq!(keys.len(), 201);
    assert!(
        keys.iter()
            .all(|k| k.len() == "tokenvend:replay:".len() + 64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_has_one_rate_budget_across_two_replicas() {
    let redis = RedisServer::start();
    let upstreams = Upstreams::start().await;
    let config = upstreams.config(&store_block(&redis, ""));
    let (dir_a, dir_b) = (TempDir::new("rate-a"), TempDir::new("rate-b"));
    let start = |dir: &TempDir| {
        let mut command = Serve::command(dir, &upstreams, &config);
        // A budget of 10 that refills once in 1000 s: what one test run spends stays spent.
        command.args(["--rate-limit", "0.001", "--rate-limit-burst", "10"]);
        Serve::start(command)
    };
    let (a, b) = (start(&dir_a), start(&dir_b));
    // One identity (issuer `plain`, one subject; no replay protection, so one token will do).
    let token = upstreams.plain_token();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(a.status(&token).await);
        let response = b.exchange(&token).await;
        if response.status() == 429 {
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry_after >= 1);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "rate_limited");
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (10, 6), "{statuses:?}");
    let limited_total = |metrics: &str| {
        sample(metrics, "tokenvend_rate_limited_total{scope=\"identity\"}").unwrap()
    };
    assert_eq!(
        limited_total(&a.metrics().await) + limited_total(&b.metrics().await),
        6.0
    );
    let script_calls = sample(
        &a.metrics().await,
        "tokenvend_store_operations_total{operation=\"rate_limit\",result=\"ok\"}",
    )
    .unwrap();
    assert_eq!(script_calls, 8.0);
    // Another identity has its own budget.
    let mut other = webapp_claims();
    other["aud"] = "tokenvend".into();
    other["sub"] = "repo:acme/other:ref:refs/heads/main".into();
    let other = upstreams.plain.mint(Algorithm::RS256, other).unwrap();
    assert_eq!(b.status(&other).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_store_fails_replay_protected_issuers_closed_and_recovers_without_a_restart() {
    let mut redis = RedisServer::start();
    let upstreams = Upstreams::start().await;
    let dir = TempDir::new("store-down");
    let serve = Serve::start(Serve::command(
        &dir,
        &upstreams,
        &upstreams.config(&store_block(&redis, "  timeout: 250ms\n")),
    ));
    let metrics = serve.metrics().await;
    assert_eq!(sample(&metrics, "tokenvend_store_up"), Some(1.0));
    for series in [
        "tokenvend_store_operations_total{operation=\"replay_reserve\",result=\"timeout\"}",
        "tokenvend_store_operations_total{operation=\"rate_limit\",result=\"skipped\"}",
        "tokenvend_store_operation_duration_seconds_count{operation=\"replay_check\"}",
    ] {
        assert_eq!(
            sample(&metrics, series),
            Some(0.0),
            "{series} at 0 from the start"
        );
    }
    assert_eq!(serve.status(&upstreams.id_token()).await, 200);

    redis.kill();
    let refused = upstreams.id_token();
    for _ in 0..5 {
        let response = serve.exchange(&refused).await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    }
    // The RFC 8693 endpoint fails closed the same way.
    let form = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", refused.as_str()),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:id_token",
        ),
    ];
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let response = serve
        .http
        .post(format!("http://{}/oauth2/token", serve.public))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    // An issuer without replay protection is not affected; its rate limit falls back.
    assert_eq!(serve.status(&upstreams.plain_token()).await, 200);
    let metrics = serve.metrics().await;
    assert_eq!(sample(&metrics, "tokenvend_store_up"), Some(0.0));
    // Listed, but the replica stays ready.
    let (status, body) = serve.readyz().await;
    assert_eq!(status, 200, "{body}");
    let store = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "store")
        .unwrap();
    assert_eq!(store["ok"], false, "{body}");
    assert_eq!(
        serve.logged(DOWN),
        1,
        "one line per change, not per request"
    );

    redis.restart();
    eventually("the store is seen up again", async || {
        sample(&serve.metrics().await, "tokenvend_store_up") == Some(1.0)
    })
    .await;
    // The token refused during the outage was not spent.
    assert_eq!(serve.status(&refused).await, 200);
    assert_eq!(serve.status(&refused).await, 401);
    assert_eq!(serve.logged(DOWN), 1);
    assert_eq!(serve.logged(UP), 1);
    let (status, body) = serve.readyz().await;
    assert_eq!(status, 200);
    assert!(
        body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "store" && c["ok"] == true),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_slower_than_its_timeout_answers_503_instead_of_hanging() {
    let redis = Arc::new(RedisServer::start());
    let upstreams = Upstreams::start().await;
    let dir = TempDir::new("store-slow");
    let serve = Serve::start(Serve::command(
        &dir,
        &upstreams,
        &upstreams.config(&store_block(&redis, "  timeout: 250ms\n")),
    ));
    assert_eq!(serve.status(&upstreams.id_token()).await, 200);
    // Redis runs one command at a time: DEBUG SLEEP from another connection stalls it.
    let sleeping = tokio::task::spawn_blocking({
        let redis = Arc::clone(&redis);
        move || redis.command(&["DEBUG", "SLEEP", "3"])
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(serve.status(&upstreams.id_token()).await);
    }
    assert!(!sleeping.is_finished(), "the store was still asleep");
    assert_eq!(answers, [503, 503, 503]);
    assert_eq!(sleeping.await.unwrap(), Reply::Status("OK".into()));
    // Whichever came first, a request or the probe, saw the timeout and marked the store down.
    let metrics = serve.metrics().await;
    let timeouts: f64 = ["replay_check", "replay_reserve", "ping"]
        .iter()
        .map(|op| {
            let series = format!(
                "tokenvend_store_operations_total{{operation=\"{op}\",result=\"timeout\"}}"
            );
            sample(&metrics, &series).unwrap()
        })
        .sum();
    let store_lines: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("tokenvend_store_operations_total"))
        .collect();
    assert!(timeouts >= 1.0, "{store_lines:#?}");
    eventually("the store answers again", async || {
        serve.status(&upstreams.id_token()).await == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_store_settings_are_refused_naming_the_key_and_the_password_stays_out_of_logs() {
    const PASSWORD: &str = "pw-7f3a9c1e-never-logged";
    let redis = RedisServer::start_with_password(PASSWORD);
    let upstreams = Upstreams::start().await;
    let dir = TempDir::new("store-bad");

    // At load (serve and check alike): the scheme, a password in the URL.
    for (url, key) in [
        ("http://127.0.0.1:6379".to_owned(), "store.url: scheme"),
        (
            format!("redis://:{PASSWORD}@127.0.0.1:{}", redis.port()),
            "store.url: a password in the URL is refused",
        ),
    ] {
        let config = upstreams.config(&format!("store:\n  url: {url}\n"));
        let stderr = refused(Serve::command(&dir, &upstreams, &config));
        assert!(stderr.contains(key), "{stderr}");
        assert!(!stderr.contains(PASSWORD), "{stderr}");
        let check = Command::new(env!("CARGO_BIN_EXE_tokenvend"))
            .args(["check", "--config"])
            .arg(dir.join("config.yaml"))
            .output()
            .unwrap();
        assert!(!check.status.success());
        let text = String::from_utf8_lossy(&check.stderr);
        assert!(text.contains(key), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }

    // At start: an unreadable password file, a wrong password.
    let missing = dir.join("no-such-password");
    let config = upstreams.config(&store_block(
        &redis,
        &format!("  passwordFile: {}\n", missing.display()),
    ));
    let stderr = refused(Serve::command(&dir, &upstreams, &config));
    assert!(
        stderr.contains("store.passwordFile: cannot read"),
        "{stderr}"
    );

    let password_file: PathBuf = dir.join("password");
    std::fs::write(&password_file, "not-the-password\n").unwrap();
    let config = upstreams.config(&store_block(
        &redis,
        &format!("  passwordFile: {}\n", password_file.display()),
    ));
    let stderr = refused(Serve::command(&dir, &upstreams, &config));
    assert!(
        stderr.contains("store: the store refused the credentials"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");

    // The right one, from the file (one trailing newline ignored) and from the environment.
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let serve = Serve::start(Serve::command(&dir, &upstreams, &config));
    assert_eq!(serve.status(&upstreams.id_token()).await, 200);
    assert!(!serve.log_text().contains(PASSWORD));
    drop(serve);
    let mut command = Serve::command(
        &dir,
        &upstreams,
        &upstreams.config(&store_block(&redis, "")),
    );
    command.env("TOKENVEND_STORE_PASSWORD", PASSWORD);
    let serve = Serve::start(command);
    let token = upstreams.id_token();
    assert_eq!(serve.status(&token).await, 200);
    assert_eq!(serve.status(&token).await, 401);
    assert!(!serve.log_text().contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_when_replay_protection_runs_without_a_store_in_a_deployment_pod() {
    let upstreams = Upstreams::start().await;
    let dir = TempDir::new("no-store");
    let warning = "replay protection without `store:` holds per replica: with several replicas an ID token can be exchanged once per replica and again after a restart, and each replica has its own rate budget; configure `store:` (README, \"More than one replica\")";
    let mut command = Serve::command(&dir, &upstreams, &upstreams.config(""));
    command.env("POD_NAME", "tokenvend-7d9f8b6c5d-x2x7q");
    let serve = Serve::start(command);
    assert_eq!(serve.logged(warning), 1);
    assert!(
        sample(&serve.metrics().await, "tokenvend_store_up").is_none(),
        "no store metrics without a store"
    );
    let mut command = Serve::command(&dir, &upstreams, &upstreams.config(""));
    command.env("POD_NAME", "laptop");
    let serve = Serve::start(command);
    assert_eq!(serve.logged(warning), 0);
}

#[test]
fn dev_with_store_charges_rate_limits_in_redis_and_refuses_a_password_in_the_url() {
    let redis = RedisServer::start();
    let mut bash = test_support::sandbox::tool("bash");
    test_support::sandbox::tool("curl");
    let dir = TempDir::new("dev-store");
    let dev = |store: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokenvend"));
        command
            .args([
                "dev",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args([
                "--issuer-listen",
                "127.0.0.1:0",
                "--apiserver-listen",
                "127.0.0.1:0",
            ])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--store", store])
            .env("RUST_LOG", "warn")
            .env("HOME", dir.home())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let stderr = refused(dev(&format!(
        "redis://:secret-pw@127.0.0.1:{}",
        redis.port()
    )));
    assert!(
        stderr.contains("--store: a password in the URL is refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret-pw"), "{stderr}");

    let mut child = test_support::sandbox::ChildGuard::spawn(&mut dev(&redis.url()));
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut commands = Vec::new();
    while commands.len() < 2 {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("dev prints its banner");
        let line = line.trim();
        if line.starts_with("ID_TOKEN=") || line.starts_with("curl -s -X POST") {
            commands.push(line.to_owned());
        }
    }
    let script = format!("set -eu\n{}\n{}\n", commands[0], commands[1]);
    let output = test_support::sandbox::private_home(&mut bash, &dir.home())
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let exchanged: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!("{}", String::from_utf8_lossy(&output.stdout));
    });
    assert_eq!(exchanged["serviceAccount"]["name"], "deployer");
    assert_eq!(
        redis.keys("tokenvend:rate:").len(),
        1,
        "the identity's bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_mint_releases_the_shared_record_so_the_caller_may_retry_on_another_replica() {
    let redis = RedisServer::start();
    let upstreams = Upstreams::start().await;
    let config = upstreams.config(&store_block(&redis, ""));
    let (dir_a, dir_b) = (TempDir::new("release-a"), TempDir::new("release-b"));
    let a = Serve::start(Serve::command(&dir_a, &upstreams, &config));
    let b = Serve::start(Serve::command(&dir_b, &upstreams, &config));
    upstreams.apiserver.inject(kube_standin::Fault::Status {
        code: 500,
        retry_after: None,
        times: 1,
    });
    let token = upstreams.id_token();
    assert_eq!(
        a.status(&token).await,
        502,
        "the API server failed the mint"
    );
    assert!(redis.keys("tokenvend:replay:").is_empty(), "released");
    assert_eq!(
        b.status(&token).await,
        200,
        "the retry, on the other replica"
    );
    assert_eq!(a.status(&token).await, 401, "and only once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_is_verified_against_ca_file() {
    let ca = dev_pki::tls::DevCa::generate("tokenvend test store CA").unwrap();
    let cert = ca.issue_server_cert(&["127.0.0.1"]).unwrap();
    let redis = RedisServer::start_tls(&cert.cert_pem, &cert.key_pem);
    let upstreams = Upstreams::start().await;
    let dir = TempDir::new("store-tls");
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();

    let trusted = format!(
        "store:\n  url: {}\n  caFile: {}\n  timeout: 5s\n",
        redis.tls_url(),
        ca_file.display()
    );
    let serve = Serve::start(Serve::command(
        &dir,
        &upstreams,
        &upstreams.config(&trusted),
    ));
    let token = upstreams.id_token();
    assert_eq!(serve.status(&token).await, 200);
    assert_eq!(serve.status(&token).await, 401);
    assert_eq!(
        redis.keys("tokenvend:replay:").len(),
        1,
        "recorded over TLS"
    );
    drop(serve);

    // Without the CA the certificate is not trusted: the store is down, and fails closed.
    let untrusted = format!("store:\n  url: {}\n", redis.tls_url());
    let serve = Serve::start(Serve::command(
        &dir,
        &upstreams,
        &upstreams.config(&untrusted),
    ));
    assert_eq!(serve.status(&upstreams.id_token()).await, 503);
    assert_eq!(
        sample(&serve.metrics().await, "tokenvend_store_up"),
        Some(0.0)
    );
}

/// The store operations a replica has sent so far (the probe's pings left out).
fn store_round_trips(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("tokenvend_store_operations_total{")
                && !line.contains("operation=\"ping\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_protected_exchange_costs_one_store_round_trip_and_a_denial_spends_nothing() {
    let redis = RedisServer::start();
    let upstreams = Upstreams::start().await;
    let config = upstreams.config(&store_block(&redis, ""));
    let dir = TempDir::new("one-trip");
    // The per-identity limit on (its default): the replay record and the bucket in one trip.
    let serve = Serve::start(Serve::command(&dir, &upstreams, &config));

    let before = store_round_trips(&serve.metrics().await);
    assert_eq!(serve.status(&upstreams.id_token()).await, 200);
    let after = store_round_trips(&serve.metrics().await);
    assert_eq!(after - before, 1.0, "store round trips of one issuance");

    // A request no policy grants reserves nothing: the token may be presented again.
    let token = upstreams.id_token();
    let denied = serve
        .http
        .post(format!("http://{}/v1/token", serve.public))
        .bearer_auth(&token)
        .json(&serde_json::json!({"serviceAccount": "kube-system/admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let spent = redis.keys("tokenvend:replay:");
    assert_eq!(
        spent.len(),
        1,
        "only the first token is recorded: {spent:?}"
    );
    assert_eq!(serve.status(&token).await, 200, "a retry is not a replay");
    assert_eq!(serve.status(&token).await, 401, "and only once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_token_is_not_charged_and_a_rate_limited_one_is_not_recorded() {
    let redis = RedisServer::start();
    let upstreams = Upstreams::start().await;
    let config = upstreams.config(&store_block(&redis, ""));
    let dir = TempDir::new("one-trip-order");
    let mut command = Serve::command(&dir, &upstreams, &config);
    // A budget of 2 that refills once in 1000 s; every token names the same subject.
    command.args(["--rate-limit", "0.001", "--rate-limit-burst", "2"]);
    let serve = Serve::start(command);
    let first = upstreams.id_token();
    assert_eq!(serve.status(&first).await, 200);
    assert_eq!(serve.status(&first).await, 401, "replayed, and not charged");
    assert_eq!(
        serve.status(&upstreams.id_token()).await,
        200,
        "the budget's second"
    );
    let limited = upstreams.id_token();
    assert_eq!(serve.status(&limited).await, 429);
    assert_eq!(
        redis.keys("tokenvend:replay:").len(),
        2,
        "the 429 recorded nothing"
    );
    assert_eq!(
        serve.status(&limited).await,
        429,
        "still over budget, not a replay"
    );
}
