//! Authentication: who a bearer token belongs to. Static user tokens and the stand-in's own
//! bound service-account tokens are accepted; a request without a token is anonymous only on
//! the paths anonymous access is configured for, and unauthorized everywhere else.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::claims::{self, Authenticated};
use super::state::ApiState;
use super::status::Status;
use super::user::UserInfo;

/// Paths where a request without credentials proceeds as `system:anonymous` (to be authorized,
/// and usually forbidden) instead of failing with 401, as with an `anonymous` authentication
/// configuration limited to these endpoints.
const ANONYMOUS_PATHS: &[&str] = &[
    "/.well-known/openid-configuration",
    "/openid/v1/jwks",
    "/version",
    "/healthz",
    "/livez",
    "/readyz",
];

impl ApiState {
    /// Authenticates a token for `audiences` (the API audiences when empty), as the
    /// authenticator chain does for requests and for TokenReview: through the success cache,
    /// so a token that stopped being valid (its bound Secret deleted) may still pass for up
    /// to the cache's TTL after its last checked success.
    ///
    /// `Ok(None)`: no authenticator recognised the token. `Err`: one did and rejected it.
    pub fn authenticate_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Option<Authenticated>, String> {
        let targets = if audiences.is_empty() {
            self.api_audiences.as_slice()
        } else {
            audiences
        };
        if let Some(cached) = self.token_cache.get(token, targets) {
            return Ok(Some(cached));
        }
        let result = self.authenticate_uncached(token, targets);
        if let Ok(Some(authenticated)) = &result {
            self.token_cache.put(token, targets, authenticated);
        }
        result
    }

    fn authenticate_uncached(
        &self,
        token: &str,
        targets: &[String],
    ) -> Result<Option<Authenticated>, String> {
        if let Some(user) = self.users.iter().find(|user| user.token == token) {
            // Static tokens are audience-agnostic: kube's wrapper accepts them for the API
            // audiences and leaves them unhandled for any other.
            let audiences: Vec<String> = targets
                .iter()
                .filter(|a| self.api_audiences.contains(a))
                .cloned()
                .collect();
            if audiences.is_empty() {
                return Ok(None);
            }
            let info = UserInfo {
                username: user.username.clone(),
                groups: user.groups.clone(),
                ..UserInfo::default()
            };
            return Ok(Some(Authenticated {
                user: info.with_authenticated_group(),
                audiences,
            }));
        }
        let validated = claims::validate(
            token,
            &self.issuer,
            &self.key,
            &self.cluster(),
            targets,
            self.now(),
        )?;
        Ok(validated.map(|mut authenticated| {
            authenticated.user = authenticated.user.with_authenticated_group();
            authenticated
        }))
    }

    /// Authenticates a request from its `Authorization` header.
    ///
    /// # Errors
    /// The 401 Status for a missing (outside [`ANONYMOUS_PATHS`]), unknown or invalid token.
    pub fn authenticate_request(
        &self,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<UserInfo, Status> {
        let Some(token) = bearer_token(headers) else {
            return if ANONYMOUS_PATHS.contains(&path) {
                Ok(UserInfo::anonymous())
            } else {
                Err(Status::unauthorized())
            };
        };
        match self.authenticate_token(token, &[]) {
            Ok(Some(authenticated)) => Ok(authenticated.user),
            Ok(None) | Err(_) => Err(Status::unauthorized()),
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive); `None` when the
/// header is absent, another scheme, or empty, which kube treats as no credential.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The authenticated caller of a request; rejects with 401.
#[derive(Debug, Clone)]
pub struct Caller(pub UserInfo);

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = Status;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        state
            .authenticate_request(&parts.headers, parts.uri.path())
            .map(Caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", value.parse().unwrap());
        headers
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(&headers("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("Bearer  abc ")), Some("abc"));
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_no_credential() {
        assert_eq!(bearer_token(&headers("Basic abc")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
