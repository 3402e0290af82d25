//! The HTTP surface: the public router (token exchange, revocation, grants, health, the
//! OpenAPI document) and the admin router (metrics). Handlers are thin: extractors parse,
//! [`crate::exchange`] decides, the handler answers and hands the typed result to the one
//! recorder.
//! docs/architecture.md says where to add an endpoint.

mod body;
mod context;
mod error;
mod extract;
mod format;
mod grants;
mod health;
mod oauth;
mod state;
mod token;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};

pub use error::{ApiError, ErrorBody};
pub use extract::{BearerToken, bearer_token};
pub use health::OPENAPI_YAML;
pub use state::AppState;

use crate::metrics::{Metrics, RateLimitScope};

/// Largest request body accepted on the public listener.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Every `(method, path)` that [`public_router`] serves; keep it in step with the `.route`
/// calls. openapi.yaml documents exactly these, which `tests/ship/openapi.rs` checks (and
/// probes each one over HTTP).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/token"),
    ("POST", "/oauth2/token"),
    ("POST", "/oauth2/revoke"),
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
        .route("/oauth2/revoke", post(oauth::revoke))
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
    let Some(_slot) = app.exchange.limits().enter() else {
        app.exchange
            .metrics()
            .rate_limited(RateLimitScope::InFlight);
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
