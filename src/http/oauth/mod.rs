//! `POST /oauth2/token`: RFC 8693 token exchange over the same verify → policy → mint flow
//! as `POST /v1/token`. The subject token is the caller's OIDC ID token; the issued
//! token is the service-account JWT. Errors use RFC 6749 §5.2 / RFC 8693 §2.2.2 codes.

mod form;
mod revoke;

pub use revoke::revoke;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Serialize;

use super::AppState;
use super::context::RequestContext;
use super::error::{PendingErrorBody, describe, retry_after, upstream_busy};
use super::extract::is_form;
use super::format::{no_store, reduction_warning};
use crate::exchange::{Ended, Endpoint, ExchangeError, Issued, Outcome, Refusal};
use crate::k8s::MintError;
use crate::policy::Denial;
use form::{ExchangeForm, parse_form};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The scope prefix that selects a service account: `serviceaccount:NAMESPACE/NAME`.
const SERVICE_ACCOUNT_SCOPE: &str = "serviceaccount:";

/// A token-endpoint failure, as RFC 6749 §5.2 names it.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// Malformed or unsupported parameters (400 `invalid_request`). The text is ours.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("grant_type must be {TOKEN_EXCHANGE}")]
    UnsupportedGrantType,
    /// A malformed `serviceaccount:` scope (400 `invalid_scope`).
    #[error("{0}")]
    InvalidScope(String),
    /// The exchange ran and issued nothing.
    #[error("{}", describe(.0, "with scope serviceaccount:NAMESPACE/NAME"))]
    Exchange(Box<ExchangeError>),
}

impl From<ExchangeError> for OAuthError {
    fn from(error: ExchangeError) -> Self {
        Self::Exchange(Box::new(error))
    }
}

/// The RFC 8693 §2.2.1 success response.
#[derive(Serialize)]
struct TokenExchangeResponse<'a> {
    access_token: &'a str,
    issued_token_type: &'static str,
    token_type: &'static str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

pub async fn exchange(
    State(app): State<AppState>,
    context: RequestContext,
    form: Result<ExchangeForm, OAuthError>,
) -> Response {
    let result = async {
        let form = form?;
        let issued = app
            .exchange
            .issue(&form.subject_token, &form.request)
            .await?;
        Ok::<_, OAuthError>((issued, form.scoped))
    }
    .await;
    let ended = match &result {
        Ok((issued, _)) => Ended::Issued(issued),
        Err(error) => error.ended(),
    };
    app.exchange
        .record(&context.caller(), Endpoint::OAuth, &ended);
    match result {
        Ok((issued, scoped)) => success(&issued, scoped),
        Err(error) => error.into_response(),
    }
}

impl<S: Send + Sync> FromRequest<S> for ExchangeForm {
    type Rejection = OAuthError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), state).await;
        read_form(&parts.uri, &parts.headers, body)
    }
}

/// Checks where the parameters came from, then parses them.
fn read_form(
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<ExchangeForm, OAuthError> {
    parse_form(&form_body(
        uri,
        headers,
        body,
        "send the ID token as subject_token, not as a bearer credential",
    )?)
}

/// The form body of an OAuth endpoint, once its transport is checked: parameters in the body
/// only (not the query string), no bearer credential, `application/x-www-form-urlencoded`,
/// within the size limit. `bearer_refusal` tells a client that sent a bearer credential where
/// its token belongs.
fn form_body(
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    bearer_refusal: &str,
) -> Result<Bytes, OAuthError> {
    if uri.query().is_some_and(|q| !q.is_empty()) {
        return Err(OAuthError::InvalidRequest(
            "parameters belong in the form body, not the query string".into(),
        ));
    }
    if has_bearer_credential(headers) {
        return Err(OAuthError::InvalidRequest(bearer_refusal.to_owned()));
    }
    if !is_form(headers) {
        return Err(OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded".into(),
        ));
    }
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => OAuthError::InvalidRequest("the body is too large".into()),
        _ => OAuthError::InvalidRequest("the request body could not be read".into()),
    })
}

/// A client may authenticate with HTTP Basic (ignored: the subject token is the grant), but a
/// bearer credential would be a second, competing token.
fn has_bearer_credential(headers: &HeaderMap) -> bool {
    headers.get_all(header::AUTHORIZATION).iter().any(|value| {
        value
            .as_bytes()
            .get(..6)
            .is_none_or(|scheme| !scheme.eq_ignore_ascii_case(b"basic "))
    })
}

fn success(issued: &Issued, scoped: bool) -> Response {
    let expires_in = issued.minted.expiration.as_second() - jiff::Timestamp::now().as_second();
    let body = TokenExchangeResponse {
        access_token: issued.minted.token.expose_secret(),
        issued_token_type: TYPE_JWT,
        token_type: "Bearer",
        expires_in: expires_in.max(0),
        scope: scoped.then(|| format!("{SERVICE_ACCOUNT_SCOPE}{}", issued.grant.service_account)),
    };
    let mut response = axum::Json(body).into_response();
    no_store(response.headers_mut());
    if let Some(warning) = reduction_warning(&issued.grant) {
        response.headers_mut().insert(header::WARNING, warning);
    }
    response
}

impl OAuthError {
    /// The status and RFC 6749 code: the one mapping for this endpoint. An unusable subject
    /// token is `invalid_grant` (the subject token is the grant, as RFC 6749 §5.2 and common
    /// STS practice use it); a policy denial says which part of the request it concerns.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ExchangeError as E;
        let bad = StatusCode::BAD_REQUEST;
        let unavailable = (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
        match self {
            Self::InvalidRequest(_) => (bad, "invalid_request"),
            Self::UnsupportedGrantType => (bad, "unsupported_grant_type"),
            Self::InvalidScope(_) => (bad, "invalid_scope"),
            Self::Exchange(error) => match &**error {
                E::Token(error) | E::NotReserved { error, .. } if error.is_unavailable() => {
                    unavailable
                }
                E::Token(_) | E::NotReserved { .. } => (bad, "invalid_grant"),
                E::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable"),
                E::Denied { denial, .. } => match denial {
                    Denial::AmbiguousServiceAccount(_) | Denial::ServiceAccountNotGranted(_) => {
                        (bad, "invalid_scope")
                    }
                    Denial::AudienceNotAllowed(_) => (bad, "invalid_target"),
                    Denial::NoPolicyMatched => (bad, "invalid_grant"),
                },
                E::Mint {
                    error: MintError::Timeout(_),
                    ..
                } => (StatusCode::GATEWAY_TIMEOUT, "temporarily_unavailable"),
                E::Mint { error, .. } if upstream_busy(error).is_some() => unavailable,
                E::Mint { .. } => (StatusCode::BAD_GATEWAY, "server_error"),
            },
        }
    }

    /// `Retry-After`, as `POST /v1/token` would send it for the same failure.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Exchange(error) => retry_after(error),
            _ => None,
        }
    }

    /// How the request ended, for the recorder.
    fn ended(&self) -> Ended<'_> {
        match self {
            Self::Exchange(error) => Ended::Failed(error),
            other => Ended::Refused(Refusal {
                outcome: Outcome::InvalidRequest,
                reason: "invalid_request",
                detail: other.to_string(),
            }),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut response = status.into_response();
        no_store(response.headers_mut());
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        // The request-context middleware renders `{error, error_description, request_id}`:
        // RFC 6749's two members plus the request id.
        response.extensions_mut().insert(PendingErrorBody {
            error: code,
            error_description: self.to_string(),
        });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_basic_client_credential_is_tolerated_but_a_bearer_one_is_not() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic Y2k6"),
        );
        assert!(!has_bearer_credential(&headers));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(has_bearer_credential(&headers));
    }
}
