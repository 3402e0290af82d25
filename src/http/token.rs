//! `POST /v1/token`: run the exchange (or, with `dryRun=true`, only the decision) and answer
//! in the format asked for (README.md, "API"; openapi.yaml).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::context::RequestContext;
use super::error::ApiError;
use super::extract::{BearerToken, has_media_type, is_form, reject_credential_parameters};
use super::format::{Format, ServiceAccountName, no_store, render};
use crate::exchange::{Decision, Ended, Endpoint, Issued};
use crate::policy::{Grant, Request, ServiceAccountRef};

/// The optional JSON body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TokenBody {
    service_account: Option<String>,
    audiences: Option<Vec<String>>,
    expiration_seconds: Option<u64>,
}

/// Query parameters; anything else is refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenParams {
    #[serde(default)]
    format: Format,
    /// The full decision, and no token minted.
    #[serde(default, rename = "dryRun")]
    dry_run: bool,
}

/// What `dryRun=true` answers: the decision a real request would get.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DryRunResponse<'a> {
    dry_run: bool,
    decision: &'static str,
    policy: &'a str,
    service_account: ServiceAccountName<'a>,
    /// Empty: the API server's own audiences.
    audiences: &'a [String],
    expiration_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    requested_expiration_seconds: Option<u64>,
    /// Present (`true`) when the token would be bound to a Secret of its own.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    revocable: bool,
}

pub async fn issue(
    State(app): State<AppState>,
    context: RequestContext,
    credential: Result<BearerToken, ApiError>,
    params: Result<TokenParams, ApiError>,
    request: Result<TokenRequest, ApiError>,
) -> Response {
    // In this order: a token in the query string is refused before anything else.
    let result = async {
        let BearerToken(credential) = credential?;
        let params = params?;
        let TokenRequest(request) = request?;
        if params.dry_run {
            let decision = app.exchange.decide(&credential, &request).await?;
            return Ok(Answer::DryRun(decision));
        }
        let issued = app.exchange.issue(&credential, &request).await?;
        Ok::<_, ApiError>(Answer::Issued(issued, params.format))
    }
    .await;
    let ended = match &result {
        Ok(Answer::Issued(issued, _)) => Ended::Issued(issued),
        Ok(Answer::DryRun(decision)) => Ended::DryRun(decision),
        Err(error) => error.ended(),
    };
    app.exchange
        .record(&context.caller(), Endpoint::Token, &ended);
    match result {
        Ok(Answer::Issued(issued, format)) => render(&issued, format, &app.kubeconfig_cluster),
        Ok(Answer::DryRun(decision)) => dry_run_response(&decision.grant),
        Err(error) => error.into_response(),
    }
}

/// What one `POST /v1/token` produced.
enum Answer {
    Issued(Issued, Format),
    DryRun(Decision),
}

impl<S: Send + Sync> FromRequestParts<S> for TokenParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::<Self>::try_from_uri(&parts.uri)
            .map(|Query(params)| params)
            .map_err(|_| ApiError::InvalidRequest("unknown or malformed query parameter".into()))
    }
}

/// The parsed request of a `POST /v1/token` body: empty, or JSON.
pub struct TokenRequest(Request);

impl<S: Send + Sync> FromRequest<S> for TokenRequest {
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let body =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
                    _ => ApiError::InvalidRequest("the request body could not be read".into()),
                })?;
        parse_body(&headers, &body).map(Self)
    }
}

fn dry_run_response(grant: &Grant) -> Response {
    let body = DryRunResponse {
        dry_run: true,
        decision: "allow",
        policy: &grant.policy,
        service_account: ServiceAccountName {
            namespace: grant.service_account.namespace(),
            name: grant.service_account.name(),
        },
        audiences: &grant.audiences,
        expiration_seconds: grant.expiration_secs,
        requested_expiration_seconds: grant.reduced_from_secs,
        revocable: grant.revocable,
    };
    let mut response = axum::Json(body).into_response();
    no_store(response.headers_mut());
    response
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Request, ApiError> {
    let parsed = if body.is_empty() {
        TokenBody::default()
    } else {
        if !is_json(headers) {
            // A form body carrying a credential is a second credential (RFC 6750 §2).
            if is_form(headers)
                && reject_credential_parameters(std::str::from_utf8(body).ok()).is_err()
            {
                return Err(ApiError::InvalidRequest(
                    "exactly one credential is allowed".into(),
                ));
            }
            return Err(ApiError::UnsupportedMediaType);
        }
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidRequest(body_error(&e)))?
    };
    let service_account = parsed
        .service_account
        .as_deref()
        .map(|text| {
            ServiceAccountRef::parse(text)
                .map_err(|m| ApiError::InvalidRequest(format!("serviceAccount: {m}")))
        })
        .transpose()?;
    Request::new(service_account, parsed.audiences, parsed.expiration_seconds)
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

/// `application/json`, parameters (a charset) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    has_media_type(headers, "application/json")
}

/// Names the JSON problem without quoting the input.
fn body_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match error.classify() {
        Category::Data => {
            "the body does not match {serviceAccount, audiences, expirationSeconds}".into()
        }
        Category::Syntax | Category::Eof | Category::Io => "the body is not valid JSON".into(),
    }
}
