//! `GET /v1/grants`: what the authenticated caller may request, and nothing about anyone else.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use super::extract::BearerToken;

/// One policy that applies to the caller.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CallerGrant {
    policy: String,
    /// NAMESPACE/NAME, templates rendered for this caller.
    service_accounts: Vec<String>,
    /// The audiences the caller may ask for (the first is the default); `null`: only the API
    /// server's own audiences.
    audiences: Option<Vec<String>>,
    ttl_seconds: u64,
    max_ttl_seconds: u64,
}

#[derive(Debug, Serialize)]
struct Grants {
    issuer: String,
    subject: String,
    grants: Vec<CallerGrant>,
}

pub async fn list(
    State(app): State<AppState>,
    credential: Result<BearerToken, ApiError>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let BearerToken(token) = credential?;
        let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or_default();
        // Listing is not an exchange: with replay protection, nothing is reserved.
        let snapshot = app.snapshot();
        let verified = snapshot
            .verifier
            .verify(token.expose_secret(), now)
            .await
            .map_err(ApiError::InvalidToken)?;
        let grants = snapshot
            .policies
            .applicable(&verified.issuer, &verified.claims, &mut None)
            .into_iter()
            .map(|applicable| CallerGrant {
                policy: applicable.policy.name.clone(),
                service_accounts: applicable
                    .service_accounts
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                audiences: applicable.policy.grant.audiences.clone(),
                ttl_seconds: applicable.policy.grant.ttl_secs,
                max_ttl_seconds: applicable.policy.grant.max_ttl_secs,
            })
            .collect();
        Ok::<_, ApiError>(Grants {
            issuer: verified.issuer.clone(),
            subject: verified.registered.sub,
            grants,
        })
    }
    .await;
    let outcome = match &result {
        Ok(_) => "listed",
        Err(ApiError::InvalidToken(error)) if error.is_unavailable() => "error",
        Err(ApiError::InvalidToken(_) | ApiError::MissingCredential) => "invalid_token",
        Err(_) => "invalid_request",
    };
    app.metrics
        .request_finished("grants", outcome, started.elapsed().as_secs_f64());
    match result {
        Ok(grants) => ([(header::CACHE_CONTROL, "no-store")], Json(grants)).into_response(),
        Err(error) => error.into_response(),
    }
}
