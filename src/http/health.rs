//! Health endpoints: `/healthz` (the process is alive), `/readyz` (it can serve: config loaded,
//! issuer keys usable, Kubernetes API answering, not shutting down; the shared store is
//! listed but not required) and the OpenAPI document.

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
    let snapshot = app.exchange.snapshot();
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
    // Listed, but not required: every replica shares the store, so an outage would take them
    // all out of service, stopping the issuers without replay protection that still work.
    let store_up = app.exchange.limits().store().map(|store| store.is_up());
    if let Some(up) = store_up {
        checks.push(Check {
            name: "store".into(),
            ok: up,
            reason: (!up).then(|| {
                "shared store unreachable: replay-protected issuers answer 503, rate limits are per replica (does not make the replica unready)".to_owned()
            }),
        });
    }
    let shutting_down = app.is_shutting_down();
    checks.push(Check {
        name: "shutdown".into(),
        ok: !shutting_down,
        reason: shutting_down.then(|| "shutting down".to_owned()),
    });
    let ready = checks.iter().all(|check| check.ok || check.name == "store");
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::super::{AppState, public_router};
    use crate::exchange::{Exchange, Limits, Snapshot};
    use crate::k8s::binding::Selector;
    use crate::k8s::{
        ApiContact, Bindings, BoundSecret, BoxFuture, Deleted, KubeconfigCluster, MintError,
        MintRequest, MintedToken, Minter, Review,
    };
    use crate::metrics::Metrics;
    use crate::oidc::Verifier;
    use crate::policy::PolicySet;

    struct Unreachable;

    impl Minter for Unreachable {
        fn mint<'a>(&'a self, _: &'a MintRequest) -> BoxFuture<'a, Result<MintedToken, MintError>> {
            Box::pin(async { Err(MintError::Transport("not in this test".into())) })
        }
    }

    impl Bindings for Unreachable {
        fn review<'a>(
            &'a self,
            _: &'a secrecy::SecretString,
            _: Vec<String>,
        ) -> BoxFuture<'a, Result<Review, MintError>> {
            Box::pin(async { Err(MintError::Transport("not in this test".into())) })
        }

        fn revoke<'a>(
            &'a self,
            _: &'a BoundSecret,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Deleted, MintError>> {
            Box::pin(async { Err(MintError::Transport("not in this test".into())) })
        }

        fn delete_selected<'a>(
            &'a self,
            _: &'a str,
            _: &'a Selector,
        ) -> BoxFuture<'a, Result<u64, MintError>> {
            Box::pin(async { Err(MintError::Transport("not in this test".into())) })
        }

        fn namespaces_used(&self) -> std::collections::BTreeSet<String> {
            std::collections::BTreeSet::new()
        }
    }

    fn state() -> AppState {
        let metrics = Arc::new(Metrics::new());
        let contact = Arc::new(ApiContact::default());
        contact.record(true);
        let verifier =
            Verifier::over_http(&[], &metrics, crate::oidc::ReplayRecords::default()).unwrap();
        let snapshot = Snapshot::new(Arc::new(verifier), PolicySet::default());
        let exchange = Exchange::new(
            snapshot,
            Arc::new(Unreachable),
            Arc::new(Unreachable),
            metrics,
            Limits::default(),
        );
        let cluster = KubeconfigCluster {
            server: "https://k8s.example".into(),
            ca_pem: None,
        };
        AppState::new(exchange, contact, cluster)
    }

    async fn readyz(state: &AppState) -> (u16, Value) {
        let request = Request::get("/readyz").body(Body::empty()).unwrap();
        let response = public_router(state.clone()).oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn readiness_turns_503_with_a_named_reason_when_shutdown_begins() {
        let state = state();
        let (status, body) = readyz(&state).await;
        assert_eq!((status, &body["status"]), (200, &"ready".into()), "{body}");
        state.begin_shutdown();
        let (status, body) = readyz(&state).await;
        assert_eq!(status, 503);
        let checks = body["checks"].as_array().unwrap();
        let shutdown = checks.iter().find(|c| c["name"] == "shutdown").unwrap();
        assert_eq!(shutdown["ok"], false);
        assert_eq!(shutdown["reason"], "shutting down");
        assert!(
            checks
                .iter()
                .filter(|c| c["name"] != "shutdown")
                .all(|c| c["ok"] == true),
            "{body}"
        );
    }
}
