//! The one HTTP error type (DESIGN §5). Every failure becomes
//! `{"error", "error_description", "request_id"}` with the right status and headers;
//! the status mapping is the single `match` in [`ApiError::status`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::k8s::MintError;
use crate::oidc::VerifyError;

/// Seconds a caller should wait before retrying a 503 when nothing better is known.
const RETRY_AFTER_SECS: u64 = 5;
/// Seconds a caller shed for overload should wait: the load is usually momentary.
const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;
/// The longest `Retry-After` passed on from the Kubernetes API.
const MAX_UPSTREAM_RETRY_AFTER_SECS: u64 = 60;

/// Everything a request can fail with, as the caller sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed body, headers or parameters (400). The text is ours, never caller input.
    #[error("{0}")]
    InvalidRequest(String),
    /// No credential was presented (401, bare `WWW-Authenticate: Bearer`).
    #[error("a bearer token is required")]
    MissingCredential,
    /// The token was refused (401), or its issuer's keys are unavailable (503).
    #[error("{}", .0.category())]
    InvalidToken(VerifyError),
    /// A valid identity that no policy grants (403). Says who asked for what, never why.
    #[error("{0}")]
    AccessDenied(String),
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// The request body did not arrive within the body deadline (408); the connection is
    /// closed, since the rest of the body could still arrive on it.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The Kubernetes API refused or failed (502), did not answer in time (504), or was still
    /// throttled or unavailable after the retries the deadline allowed (503).
    #[error("{}", upstream_description(.0))]
    Upstream(MintError),
    /// This identity's request budget is spent (429); a request fits again after this many
    /// seconds.
    #[error("too many requests for this identity; retry after {0}s")]
    RateLimited(u64),
    /// Too many requests are in flight; this one was shed unread (503).
    #[error("the service is overloaded; retry shortly")]
    Overloaded,
}

/// The JSON error body of DESIGN §5.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub error: &'static str,
    pub error_description: String,
    pub request_id: String,
}

/// Placed in the response's extensions; the request-context middleware turns it into the
/// body once the request id is known.
#[derive(Debug, Clone)]
pub struct PendingErrorBody {
    pub error: &'static str,
    pub error_description: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::MissingCredential => StatusCode::UNAUTHORIZED,
            Self::InvalidToken(error) if error.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::AccessDenied(_) => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Upstream(MintError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(error) if is_upstream_busy(error) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `error` code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidToken(error) if error.is_unavailable() => "temporarily_unavailable",
            Self::MissingCredential | Self::InvalidToken(_) => "invalid_token",
            Self::AccessDenied(_) => "access_denied",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Upstream(MintError::Timeout(_)) => "upstream_timeout",
            Self::Upstream(error) if is_upstream_busy(error) => "temporarily_unavailable",
            Self::Upstream(_) => "upstream_error",
            Self::RateLimited(_) => "rate_limited",
            Self::Overloaded => "temporarily_unavailable",
        }
    }

    /// Seconds after which a retry may succeed, for the `Retry-After` header.
    pub(super) fn retry_after(&self) -> Option<u64> {
        match self {
            Self::InvalidToken(error) if error.is_unavailable() => Some(RETRY_AFTER_SECS),
            Self::Upstream(
                error @ MintError::Api {
                    retry_after: upstream,
                    ..
                },
            ) if is_upstream_busy(error) => Some(upstream.map_or(RETRY_AFTER_SECS, |wait| {
                wait.as_secs().clamp(1, MAX_UPSTREAM_RETRY_AFTER_SECS)
            })),
            Self::RateLimited(seconds) => Some(*seconds),
            Self::Overloaded => Some(OVERLOADED_RETRY_AFTER_SECS),
            _ => None,
        }
    }
}

/// The API server is throttling (429) or unavailable (503): a condition that passes, so the
/// caller is told to come back rather than that the request failed.
fn is_upstream_busy(error: &MintError) -> bool {
    matches!(
        error,
        MintError::Api {
            code: 429 | 503,
            ..
        }
    )
}

fn upstream_description(error: &MintError) -> String {
    match error {
        MintError::Api { code, reason, .. } => {
            format!("the Kubernetes API refused the token request: {code} {reason}")
        }
        MintError::Timeout(deadline) => {
            format!(
                "the Kubernetes API did not answer within {}s",
                deadline.as_secs_f64()
            )
        }
        MintError::Transport(_) => "the Kubernetes API could not be reached".to_owned(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        let headers = response.headers_mut();
        match &self {
            Self::MissingCredential => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::InvalidToken(error) if !error.is_unavailable() => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            Self::RequestTimeout => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(PendingErrorBody {
            error: self.code(),
            error_description: self.to_string(),
        });
        response
    }
}
