//! The full in-process request path of `POST /v1/token`: the public router with its
//! middleware, the handler, verification, policy, audit record (JSON, to a sink) and metrics,
//! with a minter that returns a prepared token. This is tokenvend's own cost per issuance,
//! without the network and without the API server.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use secrecy::SecretString;
use std::collections::BTreeSet;
use tokenvend::exchange::{Exchange, LimitSettings, Limits, Snapshot};
use tokenvend::http::{AppState, public_router};
use tokenvend::k8s::binding::Selector;
use tokenvend::k8s::{
    ApiContact, Bindings, BoundSecret, BoxFuture, Deleted, KubeconfigCluster, MintError,
    MintRequest, MintedToken, Minter, Review,
};
use tokenvend::telemetry::{LogFormat, subscriber};
use tower::ServiceExt;
use tracing_subscriber::EnvFilter;

use support::Keys;

/// Answers every TokenRequest with the same prepared token, instantly.
struct PreparedMinter(MintedToken);

impl Minter for PreparedMinter {
    fn mint<'a>(&'a self, _: &'a MintRequest) -> BoxFuture<'a, Result<MintedToken, MintError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// The bench's policies are not revocable: no binding call is made.
struct NoBindings;

impl Bindings for NoBindings {
    fn review<'a>(
        &'a self,
        _: &'a SecretString,
        _: Vec<String>,
    ) -> BoxFuture<'a, Result<Review, MintError>> {
        Box::pin(async { Ok(Review::Unauthenticated) })
    }

    fn revoke<'a>(
        &'a self,
        _: &'a BoundSecret,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Deleted, MintError>> {
        Box::pin(async { Ok(Deleted::AlreadyGone) })
    }

    fn delete_selected<'a>(
        &'a self,
        _: &'a str,
        _: &'a Selector,
    ) -> BoxFuture<'a, Result<u64, MintError>> {
        Box::pin(async { Ok(0) })
    }

    fn namespaces_used(&self) -> BTreeSet<String> {
        BTreeSet::new()
    }
}

/// A service-account token as kube-apiserver would return it (signed, about 1 KiB).
fn prepared_token(keys: &Keys) -> MintedToken {
    let now = support::unix_now();
    let claims = serde_json::json!({
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "exp": now + 900, "iat": now, "nbf": now,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "jti": "0321f834-b9fb-4f01-a271-87ab3fdb581b",
        "kubernetes.io": {"namespace": "production",
                          "serviceaccount": {"name": "deployer", "uid": "c96355d9-2f84-4dac-84be-ee3f5aa46c88"}},
        "sub": "system:serviceaccount:production:deployer",
    });
    MintedToken {
        token: SecretString::from(keys.rsa.sign(None, &claims).expect("signing")),
        expiration: jiff::Timestamp::from_second(i64::try_from(now + 900).expect("in range"))
            .expect("a valid time"),
        audiences: vec!["https://kubernetes.default.svc.cluster.local".to_owned()],
        token_id: Some("0321f834-b9fb-4f01-a271-87ab3fdb581b".to_owned()),
        binding: None,
    }
}

fn request_path(c: &mut Criterion) {
    // Production logging: JSON application logs and audit lines at `info`, written to a sink.
    let logs = subscriber(
        LogFormat::Json,
        EnvFilter::new("info"),
        std::io::sink,
        std::io::sink,
    );
    tracing::subscriber::set_global_default(logs).expect("one subscriber");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let keys = runtime.block_on(Keys::warm());
    let minter: Arc<dyn Minter> = Arc::new(PreparedMinter(prepared_token(&keys)));
    // The config snapshot starts key-refresh tasks: create it inside the runtime.
    let _runtime = runtime.enter();
    let snapshot = Snapshot::new(Arc::clone(&keys.verifier), keys.config.policies.clone());
    // One identity repeats itself here: the per-identity rate limit would measure itself.
    let limits = Limits::new(LimitSettings {
        per_identity_rate: 0.0,
        ..LimitSettings::default()
    });
    let exchange = Exchange::new(
        snapshot,
        minter,
        Arc::new(NoBindings),
        Arc::clone(&keys.metrics),
        limits,
    );
    let cluster = KubeconfigCluster {
        server: "https://127.0.0.1:6443".into(),
        ca_pem: None,
    };
    let state = AppState::new(exchange, Arc::new(ApiContact::default()), cluster);
    let router = public_router(state);
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    let mut group = c.benchmark_group("request_path");
    for (name, algorithm) in [("rs256", Algorithm::RS256), ("es256", Algorithm::ES256)] {
        let bearer = format!("Bearer {}", keys.token(algorithm));
        group.bench_function(name, |b| {
            b.iter(|| {
                let request = Request::post("/v1/token")
                    .header(header::AUTHORIZATION, &bearer)
                    .header(header::USER_AGENT, "tokenvend-bench/1")
                    .extension(ConnectInfo(peer))
                    .body(Body::empty())
                    .expect("request");
                runtime.block_on(async {
                    let response = router.clone().oneshot(request).await.expect("infallible");
                    assert_eq!(response.status(), 200);
                    axum::body::to_bytes(response.into_body(), usize::MAX)
                        .await
                        .expect("body")
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
