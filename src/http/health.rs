//! Health endpoints: `/healthz` (the process is alive), `/readyz` (it can serve: config loaded,
//! issuer keys usable, Kubernetes API answering, not shutting down) and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;

use super::AppState;

/// The OpenAPI document, embedded at build time.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

#[derive(Serialize)]
struct Check {
    name: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    checks: Vec<Check>,
}

pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let mut checks = vec![Check {
        name: "config".into(),
        ok: true,
        reason: None,
    }];
    let snapshot = app.snapshot();
    let mut issuers: Vec<_> = snapshot.verifier.issuers().collect();
    issuers.sort_by(|a, b| a.settings().name.cmp(&b.settings().name));
    for issuer in issuers {
        let ok = issuer.keys().has_keys();
        checks.push(Check {
            name: format!("issuer:{}", issuer.settings().name),
            ok,
            reason: (!ok).then(|| "no usable keys loaded".to_owned()),
        });
    }
    let kube = app.api_contact.status();
    checks.push(Check {
        name: "kubernetes".into(),
        ok: kube.is_ok(),
        reason: kube.err().map(str::to_owned),
    });
    let shutting_down = app.is_shutting_down();
    checks.push(Check {
        name: "shutdown".into(),
        ok: !shutting_down,
        reason: shutting_down.then(|| "shutting down".to_owned()),
    });
    let ready = checks.iter().all(|check| check.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if ready { "ready" } else { "not ready" },
            checks,
        }),
    )
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}
