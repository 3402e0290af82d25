//! Extractors that turn a request into typed, checked inputs before a handler runs.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use secrecy::SecretString;

use super::error::ApiError;

/// Query parameters that would carry a credential. A request naming one is refused before
/// anything else is read: a URL ends up in access logs (RFC 6750 §2.3).
const CREDENTIAL_PARAMETERS: &[&str] = &[
    "access_token",
    "token",
    "id_token",
    "subject_token",
    "jwt",
    "assertion",
];

/// The caller's single bearer credential: exactly one `Authorization: Bearer <token>` header
/// (scheme case-insensitive, one space, a token with no whitespace), and no credential elsewhere.
pub struct BearerToken(pub SecretString);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        bearer_token(&parts.headers, parts.uri.query()).map(Self)
    }
}

/// The single bearer credential of a request (see [`BearerToken`]).
pub fn bearer_token(headers: &HeaderMap, query: Option<&str>) -> Result<SecretString, ApiError> {
    reject_credential_parameters(query)?;
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return if headers.contains_key(header::AUTHORIZATION) {
            Err(ApiError::InvalidRequest(
                "exactly one Authorization header is allowed".into(),
            ))
        } else {
            Err(ApiError::MissingCredential)
        };
    };
    let value = value.to_str().map_err(|_| {
        ApiError::InvalidRequest("the Authorization header must be visible ASCII".into())
    })?;
    parse_bearer(value).map(SecretString::from)
}

/// `"Bearer" SP token` (RFC 6750 §2.1), with the scheme compared case-insensitively.
fn parse_bearer(value: &str) -> Result<String, ApiError> {
    let Some((scheme, token)) = value.split_once(' ') else {
        return Err(ApiError::InvalidRequest(
            "expected `Authorization: Bearer <token>`".into(),
        ));
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::InvalidRequest(
            "only the Bearer authorization scheme is accepted".into(),
        ));
    }
    if token.is_empty() || token.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::InvalidRequest(
            "expected exactly one token after `Bearer `".into(),
        ));
    }
    Ok(token.to_owned())
}

/// Refuses url-encoded parameters (a query string, a form body) that name a credential.
pub fn reject_credential_parameters(query: Option<&str>) -> Result<(), ApiError> {
    let Some(query) = query else { return Ok(()) };
    let carries_credential = form_urlencoded::parse(query.as_bytes()).any(|(name, _)| {
        CREDENTIAL_PARAMETERS
            .iter()
            .any(|p| name.eq_ignore_ascii_case(p))
    });
    if carries_credential {
        return Err(ApiError::InvalidRequest(
            "credentials are not accepted in the query string".into(),
        ));
    }
    Ok(())
}

/// A form body (`application/x-www-form-urlencoded`), parameters allowed.
pub fn is_form(headers: &HeaderMap) -> bool {
    has_media_type(headers, "application/x-www-form-urlencoded")
}

/// Whether `Content-Type` names this media type (case-insensitive), parameters allowed.
pub fn has_media_type(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_exact() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER abc.def.ghi",
        ] {
            assert_eq!(parse_bearer(value).unwrap(), "abc.def.ghi", "{value}");
        }
    }

    #[test]
    fn malformed_authorization_values_are_invalid_requests() {
        for value in [
            "Bearer",
            "Bearer ",
            "Bearer  abc",
            "Bearer\tabc",
            "Bearer abc ",
            "Bearer abc def",
            "Basic dXNlcjpwYXNz",
            "Token abc",
            "abc",
        ] {
            assert!(
                matches!(parse_bearer(value), Err(ApiError::InvalidRequest(_))),
                "{value:?}"
            );
        }
    }

    #[test]
    fn credentials_in_the_query_string_are_refused() {
        for query in [
            "access_token=x",
            "format=json&token=x",
            "ID_TOKEN=x",
            "a=1&subject_token=",
        ] {
            assert!(
                reject_credential_parameters(Some(query)).is_err(),
                "{query}"
            );
        }
        assert!(reject_credential_parameters(Some("format=json")).is_ok());
        assert!(reject_credential_parameters(None).is_ok());
    }
}
