//! `POST /v1/token`: parse the request, run the exchange (or, with `dryRun=true`, only the
//! decision), answer in the format asked for (DESIGN §3).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::context::RequestContext;
use super::error::ApiError;
use super::exchange::{decide_request, exchange_request, record};
use super::extract::{bearer_token, has_media_type, is_form};
use super::format::{Format, Issued, ServiceAccountName, render};
use crate::audit::Outcome;
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
}

pub async fn issue(
    State(app): State<AppState>,
    context: RequestContext,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let mut audit = context.audit_record();
    let result = async {
        // The credential is read first: a token in the query string is refused before anything else.
        let credential = bearer_token(&headers, uri.query())?;
        let Query(params) = Query::<TokenParams>::try_from_uri(&uri)
            .map_err(|_| ApiError::InvalidRequest("unknown or malformed query parameter".into()))?;
        let body = body.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            _ => ApiError::InvalidRequest("the request body could not be read".into()),
        })?;
        let request = parse_body(&headers, &body)?;
        if params.dry_run {
            let (_, grant) =
                decide_request(&app, &credential, &request, &mut audit, "in serviceAccount")
                    .await?;
            return Ok(Exchanged::DryRun(grant));
        }
        let issued =
            exchange_request(&app, &credential, &request, &mut audit, "in serviceAccount").await?;
        Ok(Exchanged::Issued(issued, params.format))
    }
    .await;
    match result {
        Ok(Exchanged::Issued(issued, format)) => {
            record(&app, audit, Ok(&issued), "token", started);
            render(&issued, format, &app.kubeconfig_cluster)
        }
        Ok(Exchanged::DryRun(grant)) => {
            audit.write(Outcome::DryRun, "dry_run");
            app.metrics.request_finished(
                "token",
                Outcome::DryRun.as_str(),
                started.elapsed().as_secs_f64(),
            );
            dry_run_response(&grant)
        }
        Err(error) => {
            record(&app, audit, Err(&error), "token", started);
            error.into_response()
        }
    }
}

/// What one `POST /v1/token` produced.
enum Exchanged {
    Issued(Issued, Format),
    DryRun(Grant),
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
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Request, ApiError> {
    let parsed = if body.is_empty() {
        TokenBody::default()
    } else {
        if !is_json(headers) {
            // A form body carrying a credential is a second credential (RFC 6750 §2).
            if is_form(headers)
                && super::extract::reject_credential_parameters(std::str::from_utf8(body).ok())
                    .is_err()
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
