//! `GET /v1/grants`: what the authenticated caller may request, and nothing about anyone else.
//! Recorded like an exchange (audit record, metrics), with the outcome `listed`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::context::RequestContext;
use super::error::ApiError;
use super::extract::BearerToken;
use super::format::no_store;
use crate::exchange::{Ended, Endpoint, Listed};

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
    /// Present (`true`) when this policy's tokens are revocable.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    revocable: bool,
}

#[derive(Debug, Serialize)]
struct Grants {
    issuer: String,
    subject: String,
    grants: Vec<CallerGrant>,
}

pub async fn list(
    State(app): State<AppState>,
    context: RequestContext,
    credential: Result<BearerToken, ApiError>,
) -> Response {
    let result = async {
        let BearerToken(token) = credential?;
        Ok::<_, ApiError>(app.exchange.list(&token).await?)
    }
    .await;
    let ended = match &result {
        Ok(listed) => Ended::Listed(listed),
        Err(error) => error.ended(),
    };
    app.exchange
        .record(&context.caller(), Endpoint::Grants, &ended);
    match result {
        Ok(listed) => {
            let mut response = Json(Grants::from(listed)).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(error) => error.into_response(),
    }
}

impl From<Listed> for Grants {
    fn from(listed: Listed) -> Self {
        let grants = listed
            .grants
            .into_iter()
            .map(|grant| CallerGrant {
                policy: grant.policy,
                service_accounts: grant.service_accounts,
                audiences: grant.audiences,
                ttl_seconds: grant.ttl_secs,
                max_ttl_seconds: grant.max_ttl_secs,
                revocable: grant.revocable,
            })
            .collect();
        Self {
            issuer: listed.identity.issuer,
            subject: listed.identity.registered.sub,
            grants,
        }
    }
}
