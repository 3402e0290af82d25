//! `POST /oauth2/revoke` (RFC 7009): the holder of a revocable token destroys it, e.g. at the
//! end of a CI job. The answer is 200 with an empty body whatever the token was (RFC 7009
//! §2.2), 400 `invalid_request` only for a malformed request, and 503
//! `temporarily_unavailable` with `Retry-After` when the Kubernetes API could not be asked
//! (nothing was deleted; the same request can be sent again).

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;

use super::super::AppState;
use super::super::context::RequestContext;
use super::super::error::PendingErrorBody;
use super::super::format::no_store;
use super::{OAuthError, form_body};
use crate::exchange::{Ended, Endpoint, RevokeUnavailable, Unavailable};

/// A parsed revocation request.
pub struct RevokeForm {
    token: SecretString,
}

impl<S: Send + Sync> FromRequest<S> for RevokeForm {
    type Rejection = OAuthError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), state).await;
        parse_revoke_form(&form_body(
            &parts.uri,
            &parts.headers,
            body,
            "send the token to revoke as the token parameter, not as a bearer credential",
        )?)
    }
}

/// `token` (required, once) and `token_type_hint` (optional, once; any value: RFC 7009 lets
/// the server ignore a hint it does not use). Other parameters (`client_id`, ...) are ignored.
fn parse_revoke_form(body: &[u8]) -> Result<RevokeForm, OAuthError> {
    let pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = form_urlencoded::parse(body).collect();
    for (name, _) in &pairs {
        if pairs.iter().filter(|(other, _)| other == name).count() > 1 {
            return Err(OAuthError::InvalidRequest(format!(
                "{} must not be given more than once",
                if matches!(name.as_ref(), "token" | "token_type_hint") {
                    name.as_ref()
                } else {
                    "a parameter"
                }
            )));
        }
    }
    match pairs.iter().find(|(name, _)| name == "token") {
        Some((_, token)) if !token.is_empty() => Ok(RevokeForm {
            token: SecretString::from(token.clone().into_owned()),
        }),
        _ => Err(OAuthError::InvalidRequest("token is required".into())),
    }
}

pub async fn revoke(
    State(app): State<AppState>,
    context: RequestContext,
    form: Result<RevokeForm, OAuthError>,
) -> Response {
    let form = match form {
        Ok(form) => form,
        Err(error) => {
            app.exchange
                .record(&context.caller(), Endpoint::Revoke, &error.ended());
            return error.into_response();
        }
    };
    match app.exchange.revoke(&form.token).await {
        Ok(revoked) => {
            app.exchange.record(
                &context.caller(),
                Endpoint::Revoke,
                &Ended::Revoke(&revoked),
            );
            let mut response = StatusCode::OK.into_response();
            no_store(response.headers_mut());
            response
        }
        Err(failure) => {
            app.exchange.record(
                &context.caller(),
                Endpoint::Revoke,
                &Ended::RevokeFailed(&failure),
            );
            unavailable(&failure)
        }
    }
}

/// 503 `temporarily_unavailable` with `Retry-After`: nothing was deleted.
fn unavailable(failure: &RevokeUnavailable) -> Response {
    let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
    no_store(response.headers_mut());
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(failure.retry_after));
    let error_description = match failure.cause {
        Unavailable::Api(_) => {
            "the Kubernetes API could not be reached; nothing was revoked, retry"
        }
        Unavailable::Busy => "too many revocations are under way; nothing was revoked, retry",
    };
    response.extensions_mut().insert(PendingErrorBody {
        error: "temporarily_unavailable",
        error_description: error_description.to_owned(),
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(body: &str) -> bool {
        parse_revoke_form(body.as_bytes()).is_ok()
    }

    #[test]
    fn only_a_malformed_request_is_refused() {
        assert!(accepted("token=a.b.c"));
        assert!(accepted("token=garbage&token_type_hint=access_token"));
        assert!(accepted(
            "token=x&token_type_hint=refresh_token&client_id=ci"
        ));
        for bad in [
            "",
            "token=",
            "token_type_hint=access_token",
            "token=a&token=b",
            "token=a&token_type_hint=x&token_type_hint=y",
            "token=a&client_id=x&client_id=y",
        ] {
            assert!(!accepted(bad), "{bad:?}");
        }
    }
}
