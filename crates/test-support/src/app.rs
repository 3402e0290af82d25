//! tokenvend started in-process on loopback against the local OIDC issuer and the Kubernetes
//! API stand-in (with tokenvend's own credential and a reviewer allowed to create
//! TokenReviews), and what the tests ask of it: ID tokens, `POST /v1/token`, reviews of the
//! minted tokens, `/metrics`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::{Api, PostParams};
use kube_standin::{ApiServer, ApiServerOptions, RbacRule, SeedUser};
use local_issuer::LocalIssuer;
use serde_json::{Value, json};
use tokenvend::config::Config;
use tokenvend::dev::session::{kube_config_for, stand_in_options};
use tokenvend::service::{Application, Listen, ServeOptions, Sweeper};

/// The user that reviews tokens on the stand-in (like a cluster admin would).
const REVIEWER_TOKEN: &str = "reviewer-token";
const REVIEWER: &str = "reviewer";
/// tokenvend's own credential for the stand-in.
const SERVICE_TOKEN: &str = "service-token";

/// The default test config; `{issuer}` is replaced by the local issuer's URL.
pub const CONFIG: &str = r#"
kubernetes:
  requestTimeout: 2s
issuers:
  - name: local
    url: "{issuer}"
    audiences: [tokenvend]
    algorithms: [RS256, ES256]
    maxTokenLifetime: 1h
policies:
  - name: deploy
    issuer: local
    match:
      repository: acme/webapp
      ref: refs/heads/main
    grant:
      serviceAccounts: [production/deployer]
      audiences: [https://kubernetes.default.svc.cluster.local, https://vault.example.com]
      ttl: 15m
      maxTtl: 1h
  - name: ghost
    issuer: local
    match: {repository: acme/ghost}
    grant:
      serviceAccounts: [production/ghost]
  - name: unauthorised
    issuer: local
    match: {repository: acme/other}
    grant:
      serviceAccounts: [staging/deployer]
"#;

/// A revocable policy to append to [`CONFIG`]: `acme/release` gets tokens of
/// `production/releaser`, each bound to a Secret of its own.
pub const REVOCABLE_POLICY: &str = r#"
  - name: release
    issuer: local
    match: {repository: acme/release}
    grant:
      serviceAccounts: [production/releaser]
      audiences: [https://kubernetes.default.svc.cluster.local, https://vault.example.com]
      ttl: 15m
      maxTtl: 1h
      revocable: true
"#;

/// Claims of a release build of acme/release: the [`REVOCABLE_POLICY`]'s identity.
pub fn release_claims() -> Value {
    json!({"sub": "repo:acme/release:ref:refs/tags/v1", "repository": "acme/release"})
}

pub struct TestApp {
    pub address: String,
    pub admin_address: String,
    pub issuer: LocalIssuer,
    apiserver: Option<ApiServer>,
    pub http: reqwest::Client,
    reviewer: kube::Client,
    /// The service's sweeper of expired token bindings (tests sweep with their own clock).
    pub sweeper: std::sync::Arc<Sweeper>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts the issuer, the stand-in and the service with [`CONFIG`].
pub async fn spawn_app() -> TestApp {
    spawn_app_with(CONFIG, |_| {}).await
}

/// Starts everything with a config template and a hook to adjust the stand-in before it starts.
pub async fn spawn_app_with(template: &str, adjust: impl FnOnce(&mut ApiServerOptions)) -> TestApp {
    spawn(template, adjust, ServeOptions::default(), None).await
}

/// Starts everything with a config template, a hook for the stand-in, and serve options
/// (limits, TLS, grace period).
pub async fn spawn_app_serving(
    template: &str,
    adjust: impl FnOnce(&mut ApiServerOptions),
    serve_options: ServeOptions,
) -> TestApp {
    spawn(template, adjust, serve_options, None).await
}

/// Starts everything from a config file written from `template` into `dir`, reloaded when it
/// changes (checked every 100 ms) and on SIGHUP. Returns the app and the file's path.
pub async fn spawn_app_watching(template: &str, dir: &Path) -> (TestApp, std::path::PathBuf) {
    let path = dir.join("config.yaml");
    let app = spawn(
        template,
        |_| {},
        ServeOptions::default(),
        Some(path.clone()),
    )
    .await;
    (app, path)
}

async fn spawn(
    template: &str,
    adjust: impl FnOnce(&mut ApiServerOptions),
    serve_options: ServeOptions,
    watch: Option<std::path::PathBuf>,
) -> TestApp {
    serving::crypto::install_providers().unwrap();
    let issuer = LocalIssuer::start(loopback()).await.unwrap();
    let text = template.replace("{issuer}", issuer.url());
    if let Some(path) = &watch {
        std::fs::write(path, &text).unwrap();
    }
    let config = Config::parse(&text, Path::new("test.yaml")).unwrap();
    let mut options = stand_in_options(&config, SERVICE_TOKEN);
    // `production/ghost` is granted but does not exist; `staging/deployer` exists but RBAC does not cover it.
    options.service_accounts.retain(|sa| sa.name != "ghost");
    for rule in &mut options.rbac {
        if rule.namespace.as_deref() == Some("staging") {
            rule.resource_names = vec!["someone-else".into()];
        }
    }
    options.users.push(SeedUser::new(REVIEWER_TOKEN, REVIEWER));
    options.rbac.push(RbacRule::allow(
        REVIEWER,
        &["create"],
        &["authentication.k8s.io"],
        &["tokenreviews"],
    ));
    adjust(&mut options);
    let apiserver = ApiServer::start(loopback(), options).await.unwrap();
    let kube_config = kube_config_for(&apiserver, SERVICE_TOKEN, config.kubernetes.request_timeout)
        .await
        .unwrap();
    let reviewer_config = kube_config_for(&apiserver, REVIEWER_TOKEN, Duration::from_secs(10))
        .await
        .unwrap();
    let scheme = if serve_options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let app = Application::build_with(
        config,
        Listen {
            public: loopback(),
            admin: loopback(),
        },
        kube_config,
        serve_options,
    )
    .await
    .unwrap();
    let app = match watch {
        Some(path) => app.watch_config(path, Duration::from_millis(100)),
        None => app,
    };
    let sweeper = app.sweeper();
    let address = format!("{scheme}://{}", app.public_addr());
    let admin_address = format!("http://{}", app.admin_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        admin_address,
        issuer,
        apiserver: Some(apiserver),
        http: reqwest::Client::new(),
        reviewer: kube::Client::try_from(reviewer_config).unwrap(),
        sweeper,
        stop: Some(stop),
        served: Some(served),
    }
}

/// Claims of a main-branch build of acme/webapp: the `deploy` policy's identity.
pub fn webapp_claims() -> Value {
    json!({"sub": "repo:acme/webapp:ref:refs/heads/main", "repository": "acme/webapp", "ref": "refs/heads/main"})
}

impl TestApp {
    pub fn apiserver(&self) -> &ApiServer {
        self.apiserver.as_ref().expect("the stand-in is running")
    }

    /// Stops the Kubernetes API stand-in: its port then refuses connections.
    pub async fn stop_apiserver(&mut self) {
        if let Some(apiserver) = self.apiserver.take() {
            apiserver.shutdown().await;
        }
    }

    /// An RS256 ID token from the local issuer with the test audience and these claims.
    pub fn id_token(&self, claims: Value) -> String {
        let mut claims = claims;
        claims
            .as_object_mut()
            .unwrap()
            .entry("aud")
            .or_insert(json!("tokenvend"));
        self.issuer.mint(Algorithm::RS256, claims).unwrap()
    }

    /// `POST /v1/token` with a bearer token and an optional JSON body.
    pub async fn post_token(&self, id_token: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/v1/token", self.address))
            .bearer_auth(id_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// What the stand-in's TokenReview says of a token, for these audiences.
    pub async fn review(&self, token: &str, audiences: &[&str]) -> TokenReviewStatus {
        let reviews: Api<TokenReview> = Api::all(self.reviewer.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(audiences.iter().map(|a| (*a).to_owned()).collect()),
            },
            ..TokenReview::default()
        };
        reviews
            .create(&PostParams::default(), &review)
            .await
            .unwrap()
            .status
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin_address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the service and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.unwrap().unwrap();
        }
    }
}

/// Asserts tokenvend's error body (`error`, `error_description`, `request_id` and nothing
/// else; openapi.yaml's `Error`), with the status and error code given, and returns it.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let request_id = response
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    assert_eq!(body["request_id"], request_id.as_str());
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    body
}

/// The value of one series in a Prometheus text exposition, if present, e.g.
/// `tokenvend_requests_total{endpoint="token",outcome="issued"}`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
