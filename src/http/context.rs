//! Per-request context: the request id (always generated here, returned on every response and
//! written into every error body, log line and audit record), and the caller's own
//! `X-Request-Id`, kept beside it when well-formed so that callers can correlate.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::{ErrorBody, PendingErrorBody};
use crate::exchange::Caller;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const MAX_REQUEST_ID_LEN: usize = 64;

/// Who is asking, for logs and the audit record. Extracted from the request; never fails.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// The caller's `X-Request-Id`, if well-formed; never used as the request id, which a
    /// caller could otherwise set to another request's id and muddle the audit trail.
    pub client_request_id: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// When the handler took the request.
    pub started: Instant,
}

#[derive(Debug, Clone)]
struct RequestIds {
    own: String,
    client: Option<String>,
}

/// Assigns the request id, runs the request inside a span carrying it, and renders pending
/// error bodies with it.
pub async fn request_context(mut request: Request, next: Next) -> Response {
    let request_id = new_request_id();
    let client_request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_acceptable_request_id(id))
        .map(str::to_owned);
    let span = tracing::info_span!("request", request_id = %request_id, client_request_id = tracing::field::Empty, method = %request.method(), path = %request.uri().path());
    if let Some(client) = &client_request_id {
        span.record("client_request_id", client.as_str());
    }
    request.extensions_mut().insert(RequestIds {
        own: request_id.clone(),
        client: client_request_id,
    });
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    // Debug, not info: every token decision already has its audit record and every refusal its
    // own info line, and an info line per request (health probes and metrics scrapes included)
    // costs a formatted JSON line and a write per request on the hot path.
    tracing::debug!(parent: &span, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "request finished");
    if let Some(pending) = response.extensions_mut().remove::<PendingErrorBody>() {
        let body = ErrorBody {
            error: pending.error,
            error_description: pending.error_description,
            request_id: request_id.clone(),
        };
        let (parts, _) = response.into_parts();
        let rendered = Json(body).into_response();
        response = Response::from_parts(parts, rendered.into_body());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

/// A random (version 4) UUID drawn from aws-lc's generator, which runs in user space: unlike
/// `Uuid::new_v4`, no system call per request.
fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string(),
        Err(_) => uuid::Uuid::new_v4().to_string(),
    }
}

/// Up to 64 characters of `[A-Za-z0-9._-]`: safe in logs and headers as is.
fn is_acceptable_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl RequestContext {
    /// The caller, as the recorder writes it into the audit record.
    pub fn caller(&self) -> Caller {
        Caller {
            request_id: self.request_id.clone(),
            client_request_id: self.client_request_id.clone(),
            client_ip: self.client_ip.clone(),
            user_agent: self.user_agent.clone(),
            started: self.started,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let (request_id, client_request_id) = parts
            .extensions
            .get::<RequestIds>()
            .map(|ids| (ids.own.clone(), ids.client.clone()))
            .unwrap_or_default();
        let client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip().to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Self {
            request_id,
            client_request_id,
            client_ip,
            user_agent,
            started: Instant::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_request_ids_are_distinct_v4_uuids() {
        let first = uuid::Uuid::parse_str(&new_request_id()).unwrap();
        let second = uuid::Uuid::parse_str(&new_request_id()).unwrap();
        assert_eq!(first.get_version(), Some(uuid::Version::Random));
        assert_ne!(first, second);
    }

    #[test]
    fn only_short_plain_request_ids_are_accepted() {
        assert!(is_acceptable_request_id("abc-123_X.y"));
        assert!(is_acceptable_request_id(&"a".repeat(64)));
        for id in ["", "a b", "a\r\nb", "ä", "<script>", &"a".repeat(65)] {
            assert!(!is_acceptable_request_id(id), "{id:?}");
        }
    }
}
