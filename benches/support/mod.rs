//! What the benchmarks share: an issuer with warm keys and no network, and tokens it signed.

#![allow(dead_code)] // each bench binary uses a different part

use std::path::Path;
use std::sync::Arc;

use dev_pki::keys::{SigningKey, jwk_set};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokenvend::config::Config;
use tokenvend::metrics::Metrics;
use tokenvend::oidc::{BoxFuture, FetchError, Fetched, KeyFetcher, ReplayRecords, Verifier};

/// The `iss` of every benchmark token; never contacted.
pub const ISSUER_URL: &str = "http://127.0.0.1:9";

/// The benchmark config: one issuer (RS256 and ES256) and one policy for the webapp's main branch.
pub const CONFIG: &str = r#"
issuers:
  - name: ci
    url: "http://127.0.0.1:9"
    audiences: [tokenvend]
    algorithms: [RS256, ES256]
    maxTokenLifetime: 1h
policies:
  - name: deploy
    issuer: ci
    match:
      repository: acme/webapp
      ref: {oneOf: [refs/heads/main, refs/heads/release]}
    grant:
      serviceAccounts: [production/deployer]
      audiences: [https://kubernetes.default.svc.cluster.local]
      ttl: 15m
      maxTtl: 1h
"#;

/// Serves a fixed JWKS document: keys are fetched once, at warm-up.
struct StaticKeys(Vec<u8>);

impl KeyFetcher for StaticKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched, FetchError>> {
        Box::pin(async move {
            Ok(Fetched {
                body: self.0.clone(),
                max_age: None,
            })
        })
    }
}

/// The issuer's signing keys and a verifier that holds their public halves, warmed up.
pub struct Keys {
    pub rsa: SigningKey,
    pub ec: SigningKey,
    pub config: Config,
    pub verifier: Arc<Verifier>,
    pub metrics: Arc<Metrics>,
}

impl Keys {
    pub async fn warm() -> Self {
        serving::crypto::install_providers().expect("crypto providers");
        let rsa = SigningKey::generate(Algorithm::RS256).expect("RSA key");
        let ec = SigningKey::generate(Algorithm::ES256).expect("EC key");
        let config = Config::parse(CONFIG, Path::new("bench.yaml")).expect("bench config");
        let metrics = Arc::new(Metrics::new());
        let body = jwk_set(&[&rsa, &ec]).into_bytes();
        let verifier = Verifier::new(&config.issuers, &metrics, ReplayRecords::default(), |_| {
            Ok(Arc::new(StaticKeys(body.clone())))
        })
        .expect("verifier");
        assert!(verifier.warm_up().await.is_empty(), "keys load");
        Self {
            rsa,
            ec,
            config,
            verifier: Arc::new(verifier),
            metrics,
        }
    }

    /// A token like a CI system's: registered claims plus a dozen custom ones.
    pub fn token(&self, algorithm: Algorithm) -> String {
        let key = match algorithm {
            Algorithm::RS256 => &self.rsa,
            _ => &self.ec,
        };
        key.sign(Some("JWT"), &ci_claims()).expect("signing")
    }
}

/// Claims shaped like a GitHub Actions ID token for the policy in [`CONFIG`].
pub fn ci_claims() -> Value {
    let now = unix_now();
    json!({
        "iss": ISSUER_URL,
        "sub": "repo:acme/webapp:ref:refs/heads/main",
        "aud": "tokenvend",
        "exp": now + 3000,
        "iat": now,
        "nbf": now,
        "jti": "1f3a5b7c-9d0e-4f21-8a43-65b7c9d0e1f2",
        "repository": "acme/webapp",
        "repository_id": "123456",
        "repository_owner": "acme",
        "repository_owner_id": "7890",
        "ref": "refs/heads/main",
        "ref_type": "branch",
        "ref_protected": "true",
        "sha": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4",
        "workflow": "deploy",
        "job_workflow_ref": "acme/webapp/.github/workflows/deploy.yml@refs/heads/main",
        "event_name": "push",
        "run_id": "9876543210",
        "run_attempt": "1",
        "runner_environment": "github-hosted",
        "environment": "production",
    })
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}
