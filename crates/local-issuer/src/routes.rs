//! The issuer's HTTP routes: discovery, JWKS, and `/token` for loopback callers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{DEFAULT_TTL_SECONDS, IssuerState};
use dev_pki::keys::jwk_set;

pub(super) fn router(state: Arc<IssuerState>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", get(token_from_query).post(token_from_body))
        .with_state(state)
}

async fn discovery(State(state): State<Arc<IssuerState>>) -> Response {
    state.discovery_fetches.fetch_add(1, Ordering::Relaxed);
    let document = json!({
        "issuer": state.url,
        "jwks_uri": format!("{}/jwks", state.url),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
    });
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(document),
    )
        .into_response()
}

async fn jwks(State(state): State<Arc<IssuerState>>) -> Response {
    state.jwks_fetches.fetch_add(1, Ordering::Relaxed);
    let body = jwk_set(&[&state.rsa, &state.ec]);
    ([(header::CONTENT_TYPE, "application/jwk-set+json")], body).into_response()
}

/// `POST /token` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    #[serde(default = "empty_object")]
    claims: Value,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    ttl: Option<u64>,
}

fn empty_object() -> Value {
    json!({})
}

/// `GET /token` query: a convenience for curl.
#[derive(Debug, Deserialize)]
struct TokenQuery {
    aud: Option<String>,
    sub: Option<String>,
    alg: Option<String>,
    ttl: Option<u64>,
    /// `raw`: the bare token as text, for `ID_TOKEN=$(curl ...)`.
    format: Option<String>,
}

async fn token_from_body(
    State(state): State<Arc<IssuerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<TokenBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if !peer.ip().is_loopback() {
        return refuse(
            StatusCode::FORBIDDEN,
            "tokens are minted for loopback callers only",
        );
    }
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return refuse(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    match issue(&state, body.alg.as_deref(), body.claims, body.ttl) {
        Ok(id_token) => Json(json!({ "id_token": id_token })).into_response(),
        Err((status, reason)) => refuse(status, &reason),
    }
}

async fn token_from_query(
    State(state): State<Arc<IssuerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<TokenQuery>,
) -> Response {
    if !peer.ip().is_loopback() {
        return refuse(
            StatusCode::FORBIDDEN,
            "tokens are minted for loopback callers only",
        );
    }
    let mut claims = serde_json::Map::new();
    if let Some(aud) = query.aud {
        claims.insert("aud".into(), Value::String(aud));
    }
    if let Some(sub) = query.sub {
        claims.insert("sub".into(), Value::String(sub));
    }
    let id_token = match issue(
        &state,
        query.alg.as_deref(),
        Value::Object(claims),
        query.ttl,
    ) {
        Ok(id_token) => id_token,
        Err((status, reason)) => return refuse(status, &reason),
    };
    match query.format.as_deref() {
        None | Some("json") => Json(json!({ "id_token": id_token })).into_response(),
        Some("raw") => {
            let content_type = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
            (content_type, format!("{id_token}\n")).into_response()
        }
        Some(other) => refuse(
            StatusCode::BAD_REQUEST,
            &format!("unknown format {other:?}: use json or raw"),
        ),
    }
}

/// Mints an ID token, or says why not.
fn issue(
    state: &IssuerState,
    alg: Option<&str>,
    claims: Value,
    ttl: Option<u64>,
) -> Result<String, (StatusCode, String)> {
    let alg = match alg {
        None | Some("RS256") => Algorithm::RS256,
        Some("ES256") => Algorithm::ES256,
        Some(other) => {
            let reason = format!("unsupported alg {other:?}: use RS256 or ES256");
            return Err((StatusCode::BAD_REQUEST, reason));
        }
    };
    state
        .mint(alg, claims, ttl.unwrap_or(DEFAULT_TTL_SECONDS))
        .map_err(|error| (StatusCode::BAD_REQUEST, error.to_string()))
}

fn refuse(status: StatusCode, description: &str) -> Response {
    (status, Json(json!({ "error": description }))).into_response()
}
