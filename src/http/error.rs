//! The one HTTP error type. Every failure becomes `{"error", "error_description",
//! "request_id"}` (README.md, "Errors"; openapi.yaml `Error`) with the right status and
//! headers; status, code and `Retry-After` come from the single `match` in `ApiError::class`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::exchange::{Ended, ExchangeError, Outcome, Refusal};
use crate::k8s::MintError;
use crate::oidc::VerifiedToken;
use crate::policy::{Denial, Request};

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
    /// Too many requests are in flight; this one was shed unread (503).
    #[error("the service is overloaded; retry shortly")]
    Overloaded,
    /// The exchange ran and issued nothing: a refused token (401, or 503 when its issuer's
    /// keys are unavailable), a spent request budget (429), a policy denial (403; 400 when
    /// the caller must name one of several service accounts), or the Kubernetes API refusing
    /// (502), not answering in time (504) or still busy after the retries the deadline
    /// allowed (503).
    #[error("{}", describe(.0, "in serviceAccount"))]
    Exchange(Box<ExchangeError>),
}

impl From<ExchangeError> for ApiError {
    fn from(error: ExchangeError) -> Self {
        Self::Exchange(Box::new(error))
    }
}

/// How [`ApiError`] answers: status, `error` code and `Retry-After`.
struct Class {
    status: StatusCode,
    code: &'static str,
    retry_after: Option<u64>,
}

/// The JSON error body (openapi.yaml `Error`).
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
    /// The one classification of every failure: status, code and `Retry-After`.
    fn class(&self) -> Class {
        let class = |status, code| Class {
            status,
            code,
            retry_after: None,
        };
        match self {
            Self::InvalidRequest(_) => class(StatusCode::BAD_REQUEST, "invalid_request"),
            Self::MissingCredential => class(StatusCode::UNAUTHORIZED, "invalid_token"),
            Self::UnsupportedMediaType => {
                class(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::PayloadTooLarge => class(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::RequestTimeout => class(StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::NotFound => class(StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => class(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Overloaded => Class {
                retry_after: Some(OVERLOADED_RETRY_AFTER_SECS),
                ..class(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            },
            Self::Exchange(error) => exchange_class(error),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.class().status
    }

    /// The `error` code of the body.
    pub fn code(&self) -> &'static str {
        self.class().code
    }

    /// How the request ended, for the recorder.
    pub(super) fn ended(&self) -> Ended<'_> {
        let refused = |outcome, reason| {
            Ended::Refused(Refusal {
                outcome,
                reason,
                detail: self.to_string(),
            })
        };
        match self {
            Self::Exchange(error) => Ended::Failed(error),
            Self::MissingCredential => refused(Outcome::InvalidToken, "missing_credential"),
            _ => refused(Outcome::InvalidRequest, self.code()),
        }
    }
}

/// The classification of a failed exchange: the `Exchange` arm of `ApiError::class`.
fn exchange_class(error: &ExchangeError) -> Class {
    use ExchangeError as E;
    let class = |status, code| Class {
        status,
        code,
        retry_after: None,
    };
    match error {
        E::Token(error) | E::NotReserved { error, .. } if error.is_unavailable() => Class {
            retry_after: Some(RETRY_AFTER_SECS),
            ..class(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        },
        E::Token(_) | E::NotReserved { .. } => class(StatusCode::UNAUTHORIZED, "invalid_token"),
        E::RateLimited { retry_after, .. } => Class {
            retry_after: Some(*retry_after),
            ..class(StatusCode::TOO_MANY_REQUESTS, "rate_limited")
        },
        E::Denied {
            denial: Denial::AmbiguousServiceAccount(_),
            ..
        } => class(StatusCode::BAD_REQUEST, "invalid_request"),
        E::Denied { .. } => class(StatusCode::FORBIDDEN, "access_denied"),
        E::Mint {
            error: MintError::Timeout(_),
            ..
        } => class(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
        E::Mint { error, .. } => match upstream_busy(error) {
            Some(retry_after) => Class {
                retry_after: Some(retry_after),
                ..class(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            },
            None => class(StatusCode::BAD_GATEWAY, "upstream_error"),
        },
    }
}

/// The API server is throttling (429) or unavailable (503): a condition that passes, so the
/// caller is told to come back (after this many seconds) rather than that the request failed.
pub(super) fn upstream_busy(error: &MintError) -> Option<u64> {
    match error {
        MintError::Api {
            code: 429 | 503,
            retry_after,
            ..
        } => Some(retry_after.map_or(RETRY_AFTER_SECS, |wait| {
            wait.as_secs().clamp(1, MAX_UPSTREAM_RETRY_AFTER_SECS)
        })),
        _ => None,
    }
}

/// A token refused for what it is (not because keys or replay records are unavailable): the
/// answer carries `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3).
fn is_refused_token(error: &ExchangeError) -> bool {
    match error {
        ExchangeError::Token(error) | ExchangeError::NotReserved { error, .. } => {
            !error.is_unavailable()
        }
        _ => false,
    }
}

/// `Retry-After` for a failed exchange, for endpoints with their own error format.
pub(super) fn retry_after(error: &ExchangeError) -> Option<u64> {
    exchange_class(error).retry_after
}

/// The caller's view of a failed exchange: who asked for what, never which rule nearly
/// matched. `naming` says how this endpoint's caller names a service account.
pub(super) fn describe(error: &ExchangeError, naming: &str) -> String {
    match error {
        ExchangeError::Token(error) | ExchangeError::NotReserved { error, .. } => {
            error.category().to_owned()
        }
        ExchangeError::RateLimited { retry_after, .. } => {
            format!("too many requests for this identity; retry after {retry_after}s")
        }
        ExchangeError::Denied {
            denial: Denial::AmbiguousServiceAccount(choices),
            ..
        } => {
            let list: Vec<String> = choices.iter().map(ToString::to_string).collect();
            format!(
                "several service accounts are granted; name one {naming}: {}",
                list.join(", ")
            )
        }
        ExchangeError::Denied {
            identity, request, ..
        } => denied(identity, request),
        ExchangeError::Mint { error, .. } => upstream_description(error),
    }
}

fn denied(identity: &VerifiedToken, request: &Request) -> String {
    let mut asked = match request.service_account() {
        Some(sa) => format!("a token for service account {sa}"),
        None => "a token".to_owned(),
    };
    if let Some(audiences) = request.audiences() {
        asked.push_str(&format!(" with audiences {audiences:?}"));
    }
    let subject: String = identity.registered.sub.chars().take(256).collect();
    format!(
        "subject {subject:?} of issuer {:?} may not obtain {asked}",
        identity.issuer
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
            Self::Exchange(error) if is_refused_token(error) => {
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
        let class = self.class();
        if let Some(seconds) = class.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(PendingErrorBody {
            error: class.code,
            error_description: self.to_string(),
        });
        response
    }
}
