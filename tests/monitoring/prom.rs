//! Running the real tools: `promtool` commands and `prometheus` servers, in scratch
//! directories removed on drop, with ports chosen at start, bounded waits, and children killed
//! on drop.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The path of `tool` on PATH; fails the test, naming the tool and how to install it, when it
/// is missing.
pub fn tool(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{tool}` is not on PATH: these tests run the real Prometheus tools. Install them \
             with .ci/ensure-prometheus (the Debian package `prometheus` ships `prometheus` \
             and `promtool`)"
        )
    })
}

/// A scratch directory, removed with everything in it on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tokenvend-monitoring-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` in the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `promtool ARGS` with `stdin`, off the async runtime, and returns its output.
pub async fn promtool(args: &[&str], stdin: Option<String>) -> Output {
    let mut command = Command::new(tool("promtool"));
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("promtool starts");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a tool run succeeded, showing its output when it did not.
pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {}\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// A child process killed (and reaped) on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `prometheus` server with its own scratch directory.
pub struct Prometheus {
    pub url: String,
    _child: ChildGuard,
    http: reqwest::Client,
    _dir: ScratchDir,
}

/// A port that was free a moment ago on 127.0.0.1 (prometheus binds it itself; a start that
/// lost the race is retried with another).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    /// Starts `prometheus` with this `prometheus.yml` and waits until it is ready.
    pub async fn start(config: &str) -> Self {
        let binary = tool("prometheus");
        let dir = ScratchDir::new("prometheus");
        let config_file = dir.write("prometheus.yml", config);
        let http = reqwest::Client::new();
        for _attempt in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
            let child = Command::new(&binary)
                .arg(format!("--config.file={}", config_file.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("prometheus starts");
            let mut child = ChildGuard(child);
            let url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if child.0.try_wait().unwrap().is_some() {
                    break; // exited, e.g. the port was taken meanwhile: try another
                }
                let ready = http
                    .get(format!("{url}/-/ready"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    return Self {
                        url,
                        _child: child,
                        http,
                        _dir: dir,
                    };
                }
                assert!(
                    Instant::now() < deadline,
                    "prometheus did not become ready: {}",
                    std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!(
            "prometheus did not start in 5 attempts: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        let response = self
            .http
            .get(format!("{}{path}?{query}", self.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "success", "{body}");
        body["data"].clone()
    }

    /// The instant vector of `expr`: each series' labels and value.
    pub async fn query(&self, expr: &str) -> Vec<(Value, f64)> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await;
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// The active target of `job`, once discovered: its `health` and `lastError`.
    async fn target(&self, job: &str) -> Option<(String, String)> {
        let data = self.api("/api/v1/targets", &[("state", "active")]).await;
        let target = data["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["labels"]["job"] == job)?
            .clone();
        Some((
            target["health"].as_str().unwrap().to_owned(),
            target["lastError"].as_str().unwrap_or_default().to_owned(),
        ))
    }

    /// Waits (at most 30 s) until the target of `job` is `health` with a last error
    /// containing `error`; returns the last error.
    pub async fn await_target(&self, job: &str, health: &str, error: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (now, last_error) = self
                .target(job)
                .await
                .unwrap_or_else(|| ("undiscovered".to_owned(), String::new()));
            if now == health && last_error.contains(error) {
                return last_error;
            }
            assert!(
                Instant::now() < deadline,
                "target {job} stayed {now} ({last_error:?}), expected {health} with {error:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Every metric name tokenvend exports, as a scrape shows them (histograms as their
/// `_bucket`, `_sum` and `_count` series), with every labelled family touched once.
pub fn exported_metric_names() -> BTreeSet<String> {
    use tokenvend::metrics::{Metrics, RateLimitScope};
    let metrics = Metrics::new();
    metrics.request_finished("token", "issued", 0.01);
    metrics.rejected("denied");
    metrics.token_issued("policy", 900.0);
    metrics.kube_request("201", 0.01);
    metrics.jwks_fetched("issuer", 1);
    metrics.jwks_fetch_failed("issuer");
    metrics.config_reload(true);
    metrics.config_reload(false);
    metrics.replay_rejected("issuer");
    metrics.rate_limited(RateLimitScope::Identity);
    metrics.kube_binding_request("create_secret", "success", 0.01);
    // Exported only by a service with `store:`.
    metrics.enable_store(
        tokenvend::store::Operation::ALL.map(tokenvend::store::Operation::as_str),
        tokenvend::store::OpResult::ALL.map(tokenvend::store::OpResult::as_str),
    );
    metrics.store_up(true);
    let mut names = BTreeSet::new();
    for line in metrics.render().lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "histogram" | "summary" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The metric names a PromQL expression selects: every identifier that is not a function,
/// keyword, label name (in braces or a grouping clause), string, number or duration.
pub fn metric_names_in(expr: &str) -> BTreeSet<String> {
    let strings = regex::Regex::new(r#""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'"#).unwrap();
    let braces = regex::Regex::new(r"\{[^}]*\}|\[[^\]]*\]").unwrap();
    let grouping =
        regex::Regex::new(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
            .unwrap();
    let identifier = regex::Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?").unwrap();
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "inf",
        "nan",
        "Inf",
        "NaN",
    ];
    let expr = strings.replace_all(expr, "\"\"");
    let expr = braces.replace_all(&expr, "");
    let expr = grouping.replace_all(&expr, "");
    let number = regex::Regex::new(r"\b[0-9][0-9.eE]*[a-z]*\b").unwrap();
    let expr = number.replace_all(&expr, "0");
    identifier
        .captures_iter(&expr)
        .filter(|c| c.get(1).is_none())
        .map(|c| c[0].to_owned())
        .filter(|name| !KEYWORDS.contains(&name.as_str()))
        .collect()
}
