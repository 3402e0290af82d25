//! The HTTP surface: the public router (token exchange, health, the OpenAPI document) and the
//! admin router (metrics). Handlers are thin: they parse, call the core, and answer.

mod body;
mod context;
mod error;
mod exchange;
mod extract;
mod format;
mod grants;
mod health;
mod oauth;
mod token;

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};

pub use error::{ApiError, ErrorBody};
pub use extract::{BearerToken, bearer_token};
pub use format::{EXEC_CREDENTIAL_API_VERSION, ExecCredential, KubeconfigCluster, kubeconfig};
pub use health::OPENAPI_YAML;

use crate::k8s::{ApiContact, Minter};
use crate::limits::Limits;
use crate::metrics::{Metrics, RateLimitScope};
use crate::oidc::Verifier;
use crate::policy::PolicySet;

/// Largest request body accepted on the public listener.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The parts of the config in force, swapped whole on reload: a request takes one snapshot
/// and uses its verifier and policies together, so it never mixes two configs.
pub struct Snapshot {
    pub verifier: Arc<Verifier>,
    pub policies: Arc<PolicySet>,
    /// The issuers' periodic key refreshes; they stop when the snapshot is dropped.
    _refreshers: KeyRefreshers,
}

impl Snapshot {
    /// Wraps a verifier and policies, starting the verifier's periodic key refreshes.
    pub fn new(verifier: Arc<Verifier>, policies: PolicySet) -> Self {
        let refreshers = KeyRefreshers(
            verifier
                .issuers()
                .map(|issuer| {
                    let issuer = Arc::clone(issuer);
                    tokio::spawn(async move { issuer.keys().refresh_periodically().await })
                })
                .collect(),
        );
        Self {
            verifier,
            policies: Arc::new(policies),
            _refreshers: refreshers,
        }
    }
}

/// Background tasks aborted on drop.
struct KeyRefreshers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for KeyRefreshers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub minter: Arc<dyn Minter>,
    pub metrics: Arc<Metrics>,
    pub api_contact: Arc<ApiContact>,
    /// Where kubeconfig outputs point.
    pub kubeconfig_cluster: KubeconfigCluster,
    /// The per-identity rate limit and the in-flight cap.
    pub limits: Limits,
    current: RwLock<Arc<Snapshot>>,
    shutting_down: AtomicBool,
}

impl AppState {
    pub fn new(
        verifier: Arc<Verifier>,
        policies: PolicySet,
        minter: Arc<dyn Minter>,
        metrics: Arc<Metrics>,
        api_contact: Arc<ApiContact>,
        kubeconfig_cluster: KubeconfigCluster,
        limits: Limits,
    ) -> Self {
        Self(Arc::new(Shared {
            minter,
            metrics,
            api_contact,
            kubeconfig_cluster,
            limits,
            current: RwLock::new(Arc::new(Snapshot::new(verifier, policies))),
            shutting_down: AtomicBool::new(false),
        }))
    }
}

impl Shared {
    /// The config in force; a request keeps the snapshot it started with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Puts a new config in force for the requests that start from now on.
    pub fn replace(&self, snapshot: Snapshot) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot);
    }

    /// Marks the start of shutdown: readiness turns 503.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Every `(method, path)` that [`public_router`] serves; keep it in step with the `.route`
/// calls. openapi.yaml documents exactly these, which `tests/ship/openapi.rs` checks (and
/// probes each one over HTTP).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/token"),
    ("POST", "/oauth2/token"),
    ("GET", "/v1/grants"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.yaml"),
];

/// The public listener's routes. Only the token endpoints are subject to load shedding:
/// health probes must answer however busy the service is. A token request's body is read
/// (within its deadline) before the request takes an in-flight slot.
pub fn public_router(state: AppState) -> Router {
    let token_routes = Router::new()
        .route("/v1/token", post(token::issue))
        .route("/oauth2/token", post(oauth::exchange))
        .route("/v1/grants", get(grants::list))
        .route_layer(middleware::from_fn_with_state(state.clone(), shed_load))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            body::read_within_deadline,
        ));
    Router::new()
        .merge(token_routes)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.yaml", get(health::openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(reject_declared_oversize))
        .layer(middleware::from_fn(context::request_context))
        .with_state(state)
}

/// The admin listener's routes: metrics only.
pub fn admin_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(move || async move { metrics.render() }))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(context::request_context))
}

/// Refuses a body whose declared size is over the limit before any of it is read; undeclared
/// (chunked) bodies over the limit are caught while reading.
async fn reject_declared_oversize(request: Request, next: middleware::Next) -> Response {
    let headers = request.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    next.run(request).await
}

/// Refuses a request at once with 503 when the in-flight cap is reached, before its token is
/// read (its body has been read by then); otherwise holds a slot until the response is
/// produced.
async fn shed_load(
    State(app): State<AppState>,
    request: Request,
    next: middleware::Next,
) -> Response {
    let Some(_slot) = app.limits.enter() else {
        app.metrics.rate_limited(RateLimitScope::InFlight);
        tracing::debug!("in-flight limit reached; request shed");
        return ApiError::Overloaded.into_response();
    };
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
