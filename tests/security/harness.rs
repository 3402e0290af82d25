//! Scripted issuers, a service wired to two of them, and a token forge.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dev_pki::keys::{SigningKey, jwk_set};
use dev_pki::tls::{DevCa, serve_tls};
use jsonwebtoken::Algorithm;
use kube_standin::ApiServer;
use serde_json::{Value, json};
use test_support::logs::warnings;
use tokenvend::config::Config;
use tokenvend::dev::session::{kube_config_for, stand_in_options};
use tokenvend::service::{Application, Listen};

pub const AUDIENCE: &str = "tokenvend";

/// Waits (up to 20 s) for a logged line holding every one of `parts`.
pub async fn logged(parts: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = warnings();
        if text
            .lines()
            .any(|line| parts.iter().all(|part| line.contains(part)))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(body: &Value) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn redirect(location: &str) -> Self {
        Self {
            status: 302,
            headers: vec![("location".into(), location.into())],
            body: Vec::new(),
        }
    }
}

#[derive(Default)]
struct Script {
    replies: Mutex<HashMap<String, Reply>>,
    hits: Mutex<HashMap<String, usize>>,
}

/// A real OIDC issuer whose every answer the test decides, counting the requests it gets.
pub struct ScriptedIssuer {
    pub url: String,
    pub rsa: SigningKey,
    pub ec: SigningKey,
    /// The CA of an HTTPS issuer.
    pub ca_pem: Option<String>,
    script: Arc<Script>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn answer(State(script): State<Arc<Script>>, uri: Uri) -> Response {
    let path = uri.path().to_owned();
    *script.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let Some(reply) = script.replies.lock().unwrap().get(&path).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &reply.headers {
        headers.insert(
            HeaderName::try_from(name.as_str()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    (
        StatusCode::from_u16(reply.status).unwrap(),
        headers,
        reply.body,
    )
        .into_response()
}

impl ScriptedIssuer {
    /// An issuer over plain HTTP on loopback, serving a discovery document and a JWKS of its
    /// RSA and EC keys.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// The same over HTTPS, with a certificate from a fresh CA.
    pub async fn start_tls() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> Self {
        serving::crypto::install_providers().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let script = Arc::new(Script::default());
        let router = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&script));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let (url, ca_pem) = if tls {
            let ca = DevCa::generate("scripted issuer CA").unwrap();
            let config = ca
                .issue_server_cert(&["127.0.0.1"])
                .unwrap()
                .server_config()
                .unwrap();
            tokio::spawn(serve_tls(listener, config, router, shutdown));
            (format!("https://{addr}"), Some(ca.cert_pem().to_owned()))
        } else {
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .unwrap();
            });
            (format!("http://{addr}"), None)
        };
        let issuer = Self {
            url,
            rsa: SigningKey::generate(Algorithm::RS256).unwrap(),
            ec: SigningKey::generate(Algorithm::ES256).unwrap(),
            ca_pem,
            script,
            stop: Some(stop),
        };
        issuer.serve_discovery(&issuer.discovery_document());
        issuer.serve_jwks(&[&issuer.rsa, &issuer.ec]);
        issuer
    }

    pub fn discovery_document(&self) -> Value {
        json!({
            "issuer": self.url,
            "jwks_uri": format!("{}/jwks", self.url),
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
        })
    }

    pub fn reply(&self, path: &str, reply: Reply) {
        self.script
            .replies
            .lock()
            .unwrap()
            .insert(path.to_owned(), reply);
    }

    pub fn serve_discovery(&self, document: &Value) {
        self.reply("/.well-known/openid-configuration", Reply::json(document));
    }

    pub fn serve_jwks(&self, keys: &[&SigningKey]) {
        let body = jwk_set(keys);
        self.reply(
            "/jwks",
            Reply {
                status: 200,
                headers: vec![("content-type".into(), "application/jwk-set+json".into())],
                body: body.into_bytes(),
            },
        );
    }

    /// Serves a JWKS made of these raw JWK values.
    pub fn serve_jwk_values(&self, keys: &[Value]) {
        self.reply("/jwks", Reply::json(&json!({ "keys": keys })));
    }

    pub fn hits(&self, path: &str) -> usize {
        self.script
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or_default()
    }

    /// Claims our policy grants, for this issuer.
    pub fn claims(&self) -> Value {
        let now = now();
        json!({
            "iss": self.url, "sub": "repo:acme/webapp:ref:refs/heads/main", "aud": AUDIENCE,
            "iat": now, "nbf": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string(),
            "repository": "acme/webapp", "ref": "refs/heads/main",
        })
    }

    /// A correctly signed RS256 token with these claims.
    pub fn token(&self, claims: &Value) -> String {
        forge(
            &self.rsa,
            Algorithm::RS256,
            &header(&self.rsa, "RS256"),
            claims,
        )
    }
}

impl Drop for ScriptedIssuer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn now() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_second()).unwrap()
}

pub fn header(key: &SigningKey, alg: &str) -> Value {
    json!({"alg": alg, "kid": key.kid(), "typ": "JWT"})
}

/// Signs this header and these claims (as JSON text) with `key` using `algorithm`.
pub fn forge(key: &SigningKey, algorithm: Algorithm, header: &Value, claims: &Value) -> String {
    key.sign_compact(
        algorithm,
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
    )
    .unwrap()
}

/// Signs raw header and payload text (anything at all).
pub fn forge_raw(key: &SigningKey, algorithm: Algorithm, header: &str, payload: &str) -> String {
    key.sign_compact(algorithm, header.as_bytes(), payload.as_bytes())
        .unwrap()
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The service with issuers `alpha` and `beta` (each with its own policy) and the API stand-in.
pub struct Service {
    pub address: String,
    pub admin: String,
    pub http: reqwest::Client,
    _apiserver: ApiServer,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Config for two issuers; `extra_alpha` is appended to alpha's entry (YAML lines, 4-space indented).
pub fn config(alpha: &ScriptedIssuer, beta: &ScriptedIssuer, extra_alpha: &str) -> String {
    format!(
        r#"
kubernetes:
  requestTimeout: 3s
issuers:
  - name: alpha
    url: "{alpha}"
    audiences: [{AUDIENCE}]
    algorithms: [RS256, ES256]
    maxTokenLifetime: 1h
{extra_alpha}
  - name: beta
    url: "{beta}"
    audiences: [{AUDIENCE}]
policies:
  - name: webapp
    issuer: alpha
    match:
      repository: acme/webapp
      ref: refs/heads/main
    grant:
      serviceAccounts: [production/deployer]
  - name: beta-app
    issuer: beta
    match:
      repository: beta/app
    grant:
      serviceAccounts: [beta/app]
"#,
        alpha = alpha.url,
        beta = beta.url,
    )
}

impl Service {
    pub async fn start(alpha: &ScriptedIssuer, beta: &ScriptedIssuer) -> Self {
        Self::start_with_config(&config(alpha, beta, "")).await
    }

    pub async fn start_with_config(text: &str) -> Self {
        serving::crypto::install_providers().unwrap();
        warnings();
        let config = Config::parse(text, Path::new("security.yaml")).unwrap();
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let apiserver = ApiServer::start(loopback, stand_in_options(&config, "service-token"))
            .await
            .unwrap();
        let kube = kube_config_for(
            &apiserver,
            "service-token",
            config.kubernetes.request_timeout,
        )
        .await
        .unwrap();
        let app = Application::build(
            config,
            Listen {
                public: loopback,
                admin: loopback,
            },
            kube,
        )
        .await
        .unwrap();
        let address = format!("http://{}", app.public_addr());
        let admin = format!("http://{}", app.admin_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            address,
            admin,
            http: reqwest::Client::new(),
            _apiserver: apiserver,
            stop: Some(stop),
        }
    }

    /// `POST /v1/token` with `Authorization: Bearer <token>`.
    pub async fn exchange(&self, token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/token", self.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `tokenvend_rejections_total` by reason.
    pub async fn rejections(&self) -> HashMap<String, u64> {
        self.metrics()
            .await
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("tokenvend_rejections_total{reason=\"")?;
                let (reason, count) = rest.split_once("\"} ")?;
                Some((reason.to_owned(), count.trim().parse().ok()?))
            })
            .collect()
    }

    /// Exchanges `token` and checks the answer against `expect`; a rejection must also be
    /// counted once, under its own reason, in `rejections_total`.
    pub async fn expect(&self, case: &str, token: &str, expect: Expect) {
        let before = self.rejections().await;
        check(case, self.exchange(token).await, expect, token).await;
        self.check_counted(case, &before, expect).await;
    }

    /// Asserts what `rejections_total` counted since `before`: one under the row's reason for
    /// a rejection, nothing otherwise.
    pub async fn check_counted(&self, case: &str, before: &HashMap<String, u64>, expect: Expect) {
        let after = self.rejections().await;
        let counted: Vec<(String, u64)> = after
            .into_iter()
            .filter_map(|(reason, count)| {
                let grew = count - before.get(&reason).copied().unwrap_or_default();
                (grew > 0).then_some((reason, grew))
            })
            .collect();
        let want = match expect {
            Expect::Rejected(why) => vec![(why.reason().to_owned(), 1)],
            _ => Vec::new(),
        };
        assert_eq!(counted, want, "{case}: rejections_total");
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Why a token is refused: the category a caller reads in `error_description`, and the finer
/// reason the `rejections_total{reason}` metric counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Not a JWT, or a header or claim of the wrong shape.
    Malformed,
    /// Well formed, but a claim's value is refused (`sub`, `jti`, a claim over its limits).
    Claims,
    /// A claim holds control characters.
    ControlCharacters,
    /// `exp - iat` over the issuer's `maxTokenLifetime`.
    Lifetime,
    Issuer,
    /// An algorithm the issuer is not configured for.
    Algorithm,
    /// No key with this `kid` in the issuer's JWKS.
    Kid,
    Signature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    Audience,
    Replayed,
}

impl Why {
    /// The `error_description`, as the README lists the categories.
    pub fn category(self) -> &'static str {
        match self {
            Self::Malformed | Self::Claims | Self::ControlCharacters | Self::Lifetime => {
                "the token is malformed"
            }
            Self::Issuer => "the token's issuer is not trusted",
            Self::Algorithm | Self::Kid | Self::Signature => {
                "the token's signature could not be verified"
            }
            Self::Expired => "the token has expired",
            Self::NotYetValid | Self::IssuedInFuture => "the token is not yet valid",
            Self::Audience => "the token's audience is not accepted",
            Self::Replayed => "the token has already been used",
        }
    }

    /// The `reason` label of `tokenvend_rejections_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Claims => "invalid_claims",
            Self::ControlCharacters => "control_characters",
            Self::Lifetime => "lifetime_too_long",
            Self::Issuer => "unknown_issuer",
            Self::Algorithm => "alg_not_allowed",
            Self::Kid => "unknown_kid",
            Self::Signature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "iat_in_future",
            Self::Audience => "audience_mismatch",
            Self::Replayed => "replayed",
        }
    }
}

/// What a row expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// 200 with a token.
    Issued,
    /// 401 `invalid_token` with `WWW-Authenticate: Bearer error="invalid_token"`, and the
    /// category of this reason as `error_description`.
    Rejected(Why),
    /// 400 `invalid_request`.
    BadRequest,
    /// 403 `access_denied`.
    Denied,
    /// 503 `temporarily_unavailable` with `Retry-After`.
    Unavailable,
}

/// Checks a response against the row's expectation and the error contract: exact status,
/// code and headers, an opaque request id, and no echo of the token.
pub async fn check(case: &str, response: reqwest::Response, expect: Expect, token: &str) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let (want_status, want_code) = match expect {
        Expect::Issued => (200, None),
        Expect::Rejected(_) => (401, Some("invalid_token")),
        Expect::BadRequest => (400, Some("invalid_request")),
        Expect::Denied => (403, Some("access_denied")),
        Expect::Unavailable => (503, Some("temporarily_unavailable")),
    };
    assert_eq!(status, want_status, "{case}: {text}");
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{case}: not JSON: {text}"));
    match want_code {
        None => assert!(body["token"].is_string(), "{case}: {body}"),
        Some(code) => {
            assert_eq!(body["error"], code, "{case}: {body}");
            if let Expect::Rejected(why) = expect {
                assert_eq!(body["error_description"], why.category(), "{case}: {body}");
            }
            assert_eq!(body.as_object().unwrap().len(), 3, "{case}: {body}");
            assert!(
                !token.is_empty() && !text.contains(token),
                "{case}: the token is echoed"
            );
            for segment in token.split('.').filter(|s| s.len() >= 8) {
                assert!(!text.contains(segment), "{case}: a token segment is echoed");
            }
        }
    }
    let www = headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    match expect {
        Expect::Rejected(_) => assert_eq!(
            www.as_deref(),
            Some(r#"Bearer error="invalid_token""#),
            "{case}"
        ),
        Expect::Unavailable => assert!(headers.contains_key("retry-after"), "{case}"),
        _ => assert_eq!(www, None, "{case}"),
    }
}

/// Two issuers and the service trusting both.
pub async fn setup() -> (ScriptedIssuer, ScriptedIssuer, Service) {
    let alpha = ScriptedIssuer::start().await;
    let beta = ScriptedIssuer::start().await;
    let service = Service::start(&alpha, &beta).await;
    (alpha, beta, service)
}

pub use test_support::app::sample;
