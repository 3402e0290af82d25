//! The Kubernetes API stand-in: a real HTTPS server that answers the endpoints tokenvend uses
//! exactly as kube-apiserver does: TokenRequest, TokenReview, SelfSubjectReview,
//! service-account issuer discovery, API discovery, reads of ServiceAccounts, Secrets, Pods and
//! Nodes, Secret create, delete and deletecollection, and its own `/metrics`. Loopback only; for `tokenvend dev` and tests. The crate's
//! README.md says what it follows upstream and where it knowingly differs.
//!
//! The request flow mirrors kube-apiserver's filter chain: authentication ([`authn`]), fault
//! injection where the in-flight filters act ([`faults`]), authorization ([`rbac`]), body
//! decoding ([`decode`]), then the handler.

mod authn;
mod binding;
mod claims;
mod cluster;
mod counts;
mod decode;
mod discovery;
mod errors;
mod faults;
mod listing;
mod metrics;
mod options;
mod rbac;
mod reads;
mod request_info;
mod reviews;
mod secrets;
mod selectors;
mod state;
mod status;
mod token_request;
mod user;
mod validation;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::Algorithm;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::cluster::Cluster;
pub use self::faults::{Fault, FaultTarget};
pub use self::options::{
    ApiServerOptions, DEFAULT_ISSUER, DEFAULT_TOKEN_SUCCESS_CACHE_TTL,
    SERVICE_ACCOUNT_NAME_ANNOTATION, SERVICE_ACCOUNT_TOKEN_TYPE, SERVICE_ACCOUNT_UID_ANNOTATION,
    SeedNode, SeedPod, SeedSecret, SeedServiceAccount, SeedUser,
};
pub use self::rbac::RbacRule;
use self::state::ApiState;
pub use self::user::UserInfo;
use dev_pki::keys::SigningKey;
use dev_pki::tls::{DevCa, serve_tls};

/// Why the stand-in could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the API server stand-in binds loopback addresses only, not {0}")]
    NotLoopback(SocketAddr),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the service-account-max-token-expiration must be between 1 hour and 2^32 seconds")]
    MaxTokenExpiration,
}

/// A running stand-in. Dropping it without [`ApiServer::shutdown`] leaves the server task
/// running until the runtime ends.
pub struct ApiServer {
    state: Arc<ApiState>,
    ca_pem: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl ApiServer {
    /// Starts serving HTTPS on `addr` (loopback; port 0 picks a free port) with a fresh CA, a
    /// certificate for `127.0.0.1`, `localhost` and `::1`, and a fresh RS256 signing key.
    ///
    /// # Errors
    /// A non-loopback address, a failed bind, or a `max_token_expiration` outside
    /// [1 h, 2^32 s], which kube-apiserver refuses at startup too (0 means no cap, as there).
    pub async fn start(addr: SocketAddr, options: ApiServerOptions) -> anyhow::Result<ApiServer> {
        if !addr.ip().is_loopback() {
            return Err(StartError::NotLoopback(addr).into());
        }
        if options
            .max_token_expiration
            .is_some_and(|max| max != 0 && !(3600..=1 << 32).contains(&max))
        {
            return Err(StartError::MaxTokenExpiration.into());
        }
        let ca = DevCa::generate("tokenvend dev Kubernetes CA")?;
        let config = ca
            .issue_server_cert(&["127.0.0.1", "localhost", "::1"])?
            .server_config()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let url = format!("https://{}", listener.local_addr()?);
        let key = SigningKey::generate(Algorithm::RS256)?;
        let cluster = Cluster::seed(&options, ca.cert_pem(), &key, Timestamp::now());
        let state = Arc::new(ApiState {
            api_audiences: options.effective_api_audiences(),
            issuer: options.issuer,
            max_token_expiration: options.max_token_expiration,
            url,
            key,
            cluster: RwLock::new(cluster),
            users: options.users,
            rbac: RwLock::new(options.rbac),
            faults: faults::Faults::default(),
            token_requests: AtomicU64::new(0),
            secret_writes: AtomicU64::new(0),
            token_cache: state::TokenCache::new(options.token_success_cache_ttl),
            requests: counts::RequestCounts::default(),
            list_page_size_default: options.list_page_size_default,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_tls(
            listener,
            config,
            router(Arc::clone(&state)),
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(ApiServer {
            state,
            ca_pem: ca.cert_pem().to_owned(),
            stop,
            task,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.state.url
    }

    /// The CA certificate (PEM) that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The key that signs service-account tokens; its JWK is served at `/openid/v1/jwks`.
    pub fn signing_key(&self) -> &SigningKey {
        &self.state.key
    }

    /// The `--service-account-issuer`.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// Mints an unbound token for service account `namespace/name` in-process, as a
    /// TokenRequest with these audiences (the API audiences when empty) and lifetime would,
    /// without counting as a TokenRequest call. For tests that need a caller identity.
    ///
    /// # Errors
    /// The service account does not exist.
    pub fn mint_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[&str],
        expiration_seconds: u64,
    ) -> anyhow::Result<String> {
        let state = &self.state;
        let account = state
            .cluster()
            .service_account(namespace, name)
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!("serviceaccounts {name:?} not found in {namespace:?}")
            })?;
        let audiences: Vec<String> = if audiences.is_empty() {
            state.api_audiences.clone()
        } else {
            audiences.iter().map(|a| (*a).to_owned()).collect()
        };
        let spec = claims::TokenSpec {
            issuer: &state.issuer,
            namespace,
            service_account: claims::ObjectRef {
                name: name.to_owned(),
                uid: cluster::uid(&account.metadata).to_owned(),
            },
            audiences: &audiences,
            lifetime: expiration_seconds,
            warn_after: None,
            binding: claims::Binding::default(),
        };
        state.key.sign(None, &claims::build(&spec, state.now()))
    }

    /// A kubeconfig (cluster with `certificate-authority-data`, a user with `token`, one
    /// context, `current-context`) for a static user token.
    pub fn kubeconfig(&self, user_token: &str) -> String {
        // JSON strings are valid YAML double-quoted scalars, which keeps any token intact.
        let quote = |text: &str| serde_json::to_string(text).expect("strings serialise");
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: tokenvend-dev\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: tokenvend-dev\n  user:\n    token: {token}\ncontexts:\n- name: tokenvend-dev\n  context:\n    cluster: tokenvend-dev\n    user: tokenvend-dev\ncurrent-context: tokenvend-dev\n",
            server = quote(self.url()),
            ca = STANDARD.encode(self.ca_pem.as_bytes()),
            token = quote(user_token),
        )
    }

    /// Injects a fault into the next TokenRequest calls: `inject_for(FaultTarget::TokenRequest,
    /// fault)`.
    pub fn inject(&self, fault: Fault) {
        self.inject_for(FaultTarget::TokenRequest, fault);
    }

    /// Injects a fault into the next calls of `target`; [`FaultTarget::Any`] is the whole
    /// API server down or overloaded.
    pub fn inject_for(&self, target: FaultTarget, fault: Fault) {
        self.state.faults.inject(target, fault);
    }

    /// Removes every injected fault, of every target.
    pub fn clear_faults(&self) {
        self.state.faults.clear();
    }

    /// How many TokenRequest calls arrived, whatever their outcome.
    pub fn token_requests(&self) -> u64 {
        self.state.token_requests.load(Ordering::Relaxed)
    }

    /// How many Secret creates, deletes and deletecollections arrived, whatever their
    /// outcome.
    pub fn secret_writes(&self) -> u64 {
        self.state.secret_writes.load(Ordering::Relaxed)
    }

    /// A snapshot of every Secret, all namespaces, in namespace/name order: the seeded ones
    /// and those created through the API, without the deleted ones.
    pub fn secrets(&self) -> Vec<k8s_openapi::api::core::v1::Secret> {
        self.state.cluster().all_secrets()
    }

    /// Grants one more permission, effective for the next request.
    pub fn add_rbac_rule(&self, rule: RbacRule) {
        self.state.rbac.write().expect("rbac lock").push(rule);
    }

    /// Replaces all configured permissions (the built-in grants stay).
    pub fn set_rbac(&self, rules: Vec<RbacRule>) {
        *self.state.rbac.write().expect("rbac lock") = rules;
    }

    /// Stops accepting, lets in-flight requests finish (a few seconds at most), and waits.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(
            "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            post(token_request::create),
        )
        .route(
            "/api/v1/namespaces/{namespace}/secrets",
            get(reads::fallback)
                .post(secrets::create)
                .delete(secrets::delete_collection),
        )
        .route(
            "/api/v1/namespaces/{namespace}/secrets/{name}",
            get(reads::fallback).delete(secrets::delete),
        )
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(reviews::token_review),
        )
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            post(reviews::self_subject_review),
        )
        .route(
            "/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route("/openid/v1/jwks", get(discovery::jwks))
        .route("/metrics", get(metrics::metrics))
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::api_discovery))
        .route("/api/v1", get(discovery::api_discovery))
        .route("/apis", get(discovery::api_discovery))
        .route("/apis/authentication.k8s.io", get(discovery::api_discovery))
        .route(
            "/apis/authentication.k8s.io/v1",
            get(discovery::api_discovery),
        )
        .fallback(reads::fallback)
        .method_not_allowed_fallback(reads::method_not_allowed)
        .layer(DefaultBodyLimit::max(decode::MAX_REQUEST_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            metrics::count,
        ))
        .with_state(state)
}
