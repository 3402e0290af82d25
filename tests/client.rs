//! `tokenvend token`, the binary, against the real service, issuer and API stand-in: every ID
//! token source, kubectl with the exec plugin, and `--watch`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use base64::Engine as _;
use kube_standin::Fault;
use serde_json::{Value, json};

use test_support::app::{TestApp, spawn_app, webapp_claims};
use test_support::sandbox::{ChildGuard, TempDir, private_home, tool};

const DEPLOYER: &str = "system:serviceaccount:production:deployer";
const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// `tokenvend token --server APP`, with HOME (and so its default cache) inside `dir`.
fn tokenvend_token(app: &TestApp, dir: &TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenvend"));
    private_home(&mut command, &dir.home());
    command
        .args(["token", "--server", &app.address])
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("KUBERNETES_EXEC_INFO")
        .env_remove("RUST_LOG");
    command
}

async fn output_of(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode_of(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

async fn username(app: &TestApp, token: &str) -> Option<String> {
    app.review(token, &[API_AUDIENCE]).await.user?.username
}

#[tokio::test]
async fn a_token_comes_from_a_file_an_env_var_or_stdin() {
    let app = spawn_app().await;
    let dir = TempDir::new("client-sources");
    let file = dir.join("id-token");
    std::fs::write(&file, format!("{}\n", app.id_token(webapp_claims()))).unwrap();

    let mut from_file = tokenvend_token(&app, &dir);
    from_file.arg("--id-token-file").arg(&file);
    let mut from_env = tokenvend_token(&app, &dir);
    from_env
        .args(["--id-token-env", "CI_ID_TOKEN", "--output", "json"])
        .env("CI_ID_TOKEN", app.id_token(webapp_claims()));
    let mut from_stdin = tokenvend_token(&app, &dir);
    from_stdin.args(["--id-token-stdin", "-o", "exec-credential"]);

    let file_out = output_of(from_file).await;
    let env_out = output_of(from_env).await;
    let stdin_out = tokio::task::spawn_blocking({
        let id_token = app.id_token(webapp_claims());
        move || {
            use std::io::Write;
            let mut child = from_stdin
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(id_token.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        }
    })
    .await
    .unwrap();

    for output in [&file_out, &env_out, &stdin_out] {
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    let bare = text(&file_out.stdout);
    assert_eq!(
        username(&app, bare.trim_end()).await.as_deref(),
        Some(DEPLOYER)
    );
    let json: Value = serde_json::from_slice(&env_out.stdout).unwrap();
    assert_eq!(json["serviceAccount"]["name"], "deployer");
    let credential: Value = serde_json::from_slice(&stdin_out.stdout).unwrap();
    assert_eq!(credential["kind"], "ExecCredential");
    let token = credential["status"]["token"].as_str().unwrap();
    assert_eq!(username(&app, token).await.as_deref(), Some(DEPLOYER));
    // The exec credential was cached under the private HOME, not the developer's.
    let cached = std::fs::read_dir(dir.home().join(".cache").join("tokenvend"))
        .expect("a cache under the test's HOME")
        .count();
    assert_eq!(cached, 1);
    app.stop().await;
}

/// What the Actions ID-token endpoint stand-in saw.
#[derive(Default)]
struct ActionsSeen {
    audiences: Vec<String>,
}

/// An Actions ID-token endpoint: bearer request token, `audience` query, `{"value": ...}`.
async fn actions_endpoint(
    request_token: &'static str,
    id_token: String,
) -> (String, Arc<Mutex<ActionsSeen>>) {
    let seen = Arc::new(Mutex::new(ActionsSeen::default()));
    let state = (Arc::clone(&seen), id_token);
    let router = axum::Router::new()
        .route(
            "/_apis/token",
            get(
                move |State((seen, id_token)): State<(Arc<Mutex<ActionsSeen>>, String)>,
                      Query(query): Query<Vec<(String, String)>>,
                      headers: HeaderMap| async move {
                    let authorised = headers.get("authorization").is_some_and(|v| {
                        v.as_bytes() == format!("Bearer {request_token}").as_bytes()
                    });
                    if !authorised {
                        return Err(StatusCode::UNAUTHORIZED);
                    }
                    let mut seen = seen.lock().unwrap();
                    for (name, value) in query {
                        if name == "audience" {
                            seen.audiences.push(value);
                        }
                    }
                    Ok(axum::Json(json!({"count": 1, "value": id_token})))
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/_apis/token?api-version=2.0",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, seen)
}

#[tokio::test]
async fn the_github_actions_source_asks_for_the_audience_with_the_request_token() {
    let app = spawn_app().await;
    let dir = TempDir::new("client-actions");
    let (url, seen) = actions_endpoint("request-token", app.id_token(webapp_claims())).await;

    let mut command = tokenvend_token(&app, &dir);
    command
        .args(["--id-token-audience", "tokenvend"])
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token");
    let output = output_of(command).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let token = text(&output.stdout);
    assert_eq!(
        username(&app, token.trim_end()).await.as_deref(),
        Some(DEPLOYER)
    );
    assert_eq!(seen.lock().unwrap().audiences, ["tokenvend"]);

    let mut refused = tokenvend_token(&app, &dir);
    refused
        .arg("--github-actions")
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "wrong-request-token");
    let output = output_of(refused).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("wrong-request-token"), "{stderr}");
    app.stop().await;
}

/// A kubeconfig whose user is `tokenvend token` as an exec plugin.
fn exec_plugin_kubeconfig(app: &TestApp, id_token_file: &Path, cache_file: &Path) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(app.apiserver().ca_pem());
    let document = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stand-in", "cluster": {"server": app.apiserver().url(), "certificate-authority-data": ca}}],
        "users": [{"name": "deployer", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": env!("CARGO_BIN_EXE_tokenvend"),
            "args": ["token", "--server", app.address, "--id-token-file", id_token_file, "--cache-file", cache_file],
            "interactiveMode": "Never",
        }}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "deployer"}}],
        "current-context": "stand-in",
    });
    // JSON is YAML.
    document.to_string()
}

#[tokio::test]
async fn kubectl_with_the_exec_plugin_is_the_service_account_and_reuses_the_cached_credential() {
    let app = spawn_app().await;
    let dir = TempDir::new("client-exec");
    let id_token_file = dir.join("id-token");
    std::fs::write(&id_token_file, app.id_token(webapp_claims())).unwrap();
    let cache_file = dir.join("cache").join("credential.json");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        exec_plugin_kubeconfig(&app, &id_token_file, &cache_file),
    )
    .unwrap();

    for _ in 0..2 {
        let mut kubectl = tool("kubectl");
        private_home(&mut kubectl, &dir.home());
        kubectl
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ])
            .env_remove("KUBECONFIG");
        let output = output_of(kubectl).await;
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert_eq!(text(&output.stdout).trim(), DEPLOYER);
    }

    assert_eq!(
        app.apiserver().token_requests(),
        1,
        "the second run used the cache"
    );
    assert_eq!(mode_of(&cache_file), 0o600);
    app.stop().await;
}

/// `tokenvend token --watch --out DIR/token`, refreshing after 0.2% of the lifetime (~2 s).
fn start_watch(app: &TestApp, dir: &TempDir, id_token_file: &Path, out: &Path) -> ChildGuard {
    let mut command = tokenvend_token(app, dir);
    command
        .arg("--id-token-file")
        .arg(id_token_file)
        .arg("--out")
        .arg(out)
        .args(["--watch", "--refresh-fraction", "0.002"])
        .args(["--retry-initial", "200ms", "--retry-max", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildGuard::spawn(&mut command)
}

/// The file's token, asserting it is whole: one JWT and a newline.
fn read_whole_token(out: &Path) -> Option<String> {
    let contents = std::fs::read_to_string(out).ok()?;
    let token = contents
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("a torn write: {contents:?}"));
    assert_eq!(
        token.split('.').filter(|s| !s.is_empty()).count(),
        3,
        "{contents:?}"
    );
    Some(token.to_owned())
}

/// Polls the file until `done` says so, asserting on every read that it is whole.
async fn watch_file(out: &Path, limit: Duration, mut done: impl FnMut(Option<&str>) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        if done(read_whole_token(out).as_deref()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting on {}",
            out.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stop_with_sigterm(mut child: ChildGuard) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the watcher ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn watch_does_not_create_the_file_before_its_first_success() {
    let app = spawn_app().await;
    let dir = TempDir::new("client-watch-ready");
    let id_token_file = dir.join("id-token");
    std::fs::write(&id_token_file, app.id_token(webapp_claims())).unwrap();
    let out = dir.join("token");
    std::fs::write(&out, "left.over.by-an-earlier-run\n").unwrap();
    app.apiserver().inject(Fault::Status {
        code: 500,
        retry_after: None,
        times: 1000,
    });

    let child = start_watch(&app, &dir, &id_token_file, &out);
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.apiserver().token_requests() < 4 {
        assert!(Instant::now() < deadline, "the watcher did not retry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !out.exists(),
        "a file exists although no token was ever obtained"
    );

    app.apiserver().clear_faults();
    watch_file(&out, Duration::from_secs(20), |token| token.is_some()).await;
    let token = read_whole_token(&out).unwrap();
    assert_eq!(username(&app, &token).await.as_deref(), Some(DEPLOYER));
    assert_eq!(mode_of(&out), 0o600);
    stop_with_sigterm(child);
    app.stop().await;
}

#[tokio::test]
async fn watch_replaces_the_file_before_expiry_and_keeps_a_valid_token_through_an_outage() {
    let app = spawn_app().await;
    let dir = TempDir::new("client-watch");
    let id_token_file = dir.join("id-token");
    std::fs::write(&id_token_file, app.id_token(webapp_claims())).unwrap();
    let out = dir.join("token");
    let child = start_watch(&app, &dir, &id_token_file, &out);

    let mut first = None;
    watch_file(&out, Duration::from_secs(20), |t| {
        first = t.map(str::to_owned);
        first.is_some()
    })
    .await;
    let first = first.unwrap();
    // Refreshed long before the 15-minute token expires; the ID token file is re-read.
    std::fs::write(&id_token_file, app.id_token(webapp_claims())).unwrap();
    let mut second = None;
    watch_file(&out, Duration::from_secs(20), |t| {
        second = t.filter(|t| *t != first).map(str::to_owned);
        second.is_some()
    })
    .await;
    let second = second.unwrap();
    assert_eq!(username(&app, &second).await.as_deref(), Some(DEPLOYER));

    // An outage: three refreshes fail; the file keeps its still-valid token meanwhile.
    app.apiserver().inject(Fault::Status {
        code: 500,
        retry_after: None,
        times: 3,
    });
    let before = app.apiserver().token_requests();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Once the first failing call arrived, no earlier success can still be in flight.
    while app.apiserver().token_requests() == before {
        assert!(Instant::now() < deadline, "the watcher did not refresh");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = read_whole_token(&out).expect("the file survives the outage");
    while app.apiserver().token_requests() < before + 3 {
        let now_held = read_whole_token(&out).expect("the file survives the outage");
        assert_eq!(now_held, held, "replaced although every refresh failed");
        assert!(Instant::now() < deadline, "the watcher did not retry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(username(&app, &held).await.as_deref(), Some(DEPLOYER));
    watch_file(&out, Duration::from_secs(20), |t| {
        t.is_some_and(|t| t != held)
    })
    .await;
    let recovered = read_whole_token(&out).unwrap();
    assert_eq!(username(&app, &recovered).await.as_deref(), Some(DEPLOYER));
    assert_eq!(mode_of(&out), 0o600);

    stop_with_sigterm(child);
    assert!(out.exists(), "a clean stop leaves the valid token in place");
    app.stop().await;
}

/// A server that answers every `POST /v1/token` as an attacker would: its kubeconfig plants an
/// exec command and a second cluster; its JSON names the cluster and carries extra fields.
async fn malicious_server() -> String {
    let planted = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [
            {"name": "tokenvend", "cluster": {"server": "https://k8s.example.com"}},
            {"name": "evil", "cluster": {"server": "https://evil.example.com"}},
        ],
        "users": [{"name": "production/deployer", "user": {
            "token": "a.b.c",
            "exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh",
                     "args": ["-c", "touch /tmp/pwned"]},
        }}],
        "contexts": [{"name": "production/deployer", "context": {"cluster": "evil", "user": "production/deployer"}}],
        "current-context": "production/deployer",
    });
    let ca = base64::engine::general_purpose::STANDARD
        .encode("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    let document = json!({
        "token": "a.b.c",
        "expirationTimestamp": "2030-01-01T00:00:00Z",
        "serviceAccount": {"namespace": "production", "name": "deployer"},
        "audiences": [],
        "policy": "deploy",
        "cluster": {"server": "https://k8s.example.com", "certificateAuthorityData": ca},
        "users": planted["users"],
        "exec": {"command": "/bin/sh"},
    });
    let router = axum::Router::new().route(
        "/v1/token",
        axum::routing::post(move |Query(query): Query<Vec<(String, String)>>| {
            let kubeconfig = query
                .iter()
                .any(|(k, v)| k == "format" && v == "kubeconfig");
            let body = if kubeconfig {
                planted.to_string()
            } else {
                document.to_string()
            };
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

#[tokio::test]
async fn a_kubeconfig_is_built_from_the_json_answer_so_a_server_cannot_plant_exec_or_clusters() {
    let server = malicious_server().await;
    let dir = TempDir::new("client-planted");
    let out = dir.join("kubeconfig");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenvend"));
    command
        .args([
            "token",
            "--server",
            &server,
            "--id-token-env",
            "CI_ID_TOKEN",
        ])
        .args(["-o", "kubeconfig", "--out"])
        .arg(&out)
        .env("CI_ID_TOKEN", "x.y.z")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("KUBERNETES_EXEC_INFO");
    private_home(&mut command, &dir.home());
    let output = output_of(command).await;
    assert!(output.status.success(), "{}", text(&output.stderr));

    let written = std::fs::read_to_string(&out).unwrap();
    let parsed: Value = serde_saphyr::from_str(&written).unwrap();
    assert!(
        !written.contains("exec") && !written.contains("evil"),
        "{written}"
    );
    let clusters = parsed["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 1, "{written}");
    assert_eq!(clusters[0]["cluster"]["server"], "https://k8s.example.com");
    let users = parsed["users"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["user"], json!({"token": "a.b.c"}));
    assert_eq!(parsed["contexts"][0]["context"]["namespace"], "production");
}

#[tokio::test]
async fn plain_http_to_a_server_off_loopback_is_refused_before_any_connection() {
    // Every plain-HTTP connection would go through this proxy: it counts them.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let connections = Arc::new(Mutex::new(0usize));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((socket, _)) = proxy.accept().await {
            *counted.lock().unwrap() += 1;
            drop(socket);
        }
    });
    let dir = TempDir::new("client-plain-http");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenvend"));
    private_home(&mut command, &dir.home());
    command
        .args(["token", "--server", "http://tokenvend.example.com"])
        .args(["--id-token-env", "CI_ID_TOKEN"])
        .env("CI_ID_TOKEN", "x.y.z")
        .env("HTTP_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env("ALL_PROXY", &proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("KUBERNETES_EXEC_INFO");
    let output = output_of(command).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert_eq!(*connections.lock().unwrap(), 0, "{stderr}");
    assert!(
        stderr.contains("http://") && stderr.contains("https://"),
        "{stderr}"
    );
    assert!(!stderr.contains("x.y.z"), "{stderr}");
}

/// What a revocation endpoint stand-in saw: each request's content type and form fields.
#[derive(Default)]
struct RevocationsSeen {
    requests: Vec<(String, Vec<(String, String)>)>,
}

/// `POST /oauth2/revoke` that answers the queued statuses in turn (503 with `Retry-After: 1`
/// for a 503), then 200 with an empty body. Returns its base URL.
async fn revocation_endpoint(mut statuses: Vec<u16>, seen: Arc<Mutex<RevocationsSeen>>) -> String {
    statuses.reverse();
    let statuses = Arc::new(Mutex::new(statuses));
    let router = axum::Router::new().route(
        "/oauth2/revoke",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let fields: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
            seen.lock().unwrap().requests.push((content_type, fields));
            let status = statuses.lock().unwrap().pop().unwrap_or(200);
            async move {
                let mut headers = HeaderMap::new();
                if status == 503 {
                    headers.insert("retry-after", "1".parse().unwrap());
                }
                let body = if status == 400 {
                    r#"{"error":"invalid_request"}"#
                } else {
                    ""
                };
                (StatusCode::from_u16(status).unwrap(), headers, body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

fn tokenvend_revoke(server: &str, dir: &TempDir, file: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenvend"));
    private_home(&mut command, &dir.home());
    command
        .args(["token", "--server", server, "--revoke"])
        .arg(file)
        .env_remove("RUST_LOG");
    command
}

const REVOKED_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXZva2UtbWUifQ.c2lnbmF0dXJl";

#[tokio::test]
async fn revoke_posts_the_token_as_a_form_retries_a_503_once_and_never_prints_it() {
    let seen = Arc::new(Mutex::new(RevocationsSeen::default()));
    let server = revocation_endpoint(vec![503], seen.clone()).await;
    let dir = TempDir::new("client-revoke");
    // The exec-credential cache holds the JSON answer: revocable as it is.
    let file = dir.join("exec-credential-cache.json");
    std::fs::write(
        &file,
        json!({"token": REVOKED_TOKEN, "expirationTimestamp": "2030-01-01T00:00:00Z"}).to_string(),
    )
    .unwrap();
    let mut command = tokenvend_revoke(&server, &dir, &file);
    // A job sets these for its exchange step; they do not stand in the way of revoking.
    command
        .env("TOKENVEND_SERVICE_ACCOUNT", "production/deployer")
        .env("TOKENVEND_ID_TOKEN_FILE", dir.join("id-token"));
    let output = output_of(command).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    for stream in [&output.stdout, &output.stderr] {
        assert!(!text(stream).contains(REVOKED_TOKEN), "{}", text(stream));
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.requests.len(), 2, "one 503, then the retry");
    for (content_type, fields) in &seen.requests {
        assert_eq!(content_type, "application/x-www-form-urlencoded");
        assert_eq!(
            fields,
            &[
                ("token".to_owned(), REVOKED_TOKEN.to_owned()),
                ("token_type_hint".to_owned(), "access_token".to_owned()),
            ]
        );
    }
}

#[tokio::test]
async fn revoke_reads_stdin_and_a_refusal_is_an_error_without_the_token() {
    let seen = Arc::new(Mutex::new(RevocationsSeen::default()));
    let server = revocation_endpoint(vec![400], seen.clone()).await;
    let dir = TempDir::new("client-revoke-refused");
    let mut command = tokenvend_revoke(&server, &dir, Path::new("-"));
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{REVOKED_TOKEN}\n").as_bytes())
            .unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("400") && stderr.contains("invalid_request"),
        "{stderr}"
    );
    assert!(!stderr.contains(REVOKED_TOKEN) && !text(&output.stdout).contains(REVOKED_TOKEN));
    assert_eq!(
        seen.lock().unwrap().requests.len(),
        1,
        "a 400 is not retried"
    );
}

#[tokio::test]
async fn revoke_gives_up_after_a_bounded_number_of_503s() {
    let seen = Arc::new(Mutex::new(RevocationsSeen::default()));
    let server = revocation_endpoint(vec![503; 10], seen.clone()).await;
    let dir = TempDir::new("client-revoke-busy");
    let file = dir.join("token");
    std::fs::write(&file, REVOKED_TOKEN).unwrap();
    let output = output_of(tokenvend_revoke(&server, &dir, &file)).await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("not revoked"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(seen.lock().unwrap().requests.len(), 4);
}

#[tokio::test]
async fn revoke_refuses_plain_http_off_loopback_and_a_file_without_a_token() {
    let dir = TempDir::new("client-revoke-refusals");
    let file = dir.join("token");
    std::fs::write(&file, REVOKED_TOKEN).unwrap();
    let output = output_of(tokenvend_revoke(
        "http://tokenvend.example.com",
        &dir,
        &file,
    ))
    .await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("https://"),
        "{}",
        text(&output.stderr)
    );
    std::fs::write(&file, "{}").unwrap();
    let output = output_of(tokenvend_revoke("http://127.0.0.1:9", &dir, &file)).await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("no token found"),
        "{}",
        text(&output.stderr)
    );
}

/// `--revoke "$TOKEN"` (the token itself instead of a file): the error must not echo it.
#[tokio::test]
async fn revoke_given_the_token_instead_of_a_file_does_not_print_it() {
    let dir = TempDir::new("client-revoke-token-as-path");
    let output = output_of(tokenvend_revoke(
        "http://127.0.0.1:9",
        &dir,
        Path::new(REVOKED_TOKEN),
    ))
    .await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(!stderr.is_empty());
    for stream in [&output.stdout, &output.stderr] {
        let printed = text(stream);
        for part in REVOKED_TOKEN.split('.') {
            assert!(!printed.contains(part), "{printed}");
        }
    }
}
