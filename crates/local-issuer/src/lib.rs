//! A local OIDC issuer: the identity provider side of `tokenvend dev` and of the tests.
//!
//! It publishes a discovery document and a JWKS like any OIDC provider and mints ID tokens on
//! request. It has no notion of users or consent: whoever can reach it gets whatever token they
//! ask for, so it binds loopback addresses only and answers `/token` to loopback peers only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::routes::router;
use dev_pki::keys::SigningKey;

mod routes;

/// Lifetime of a minted ID token when the caller does not ask for one.
const DEFAULT_TTL_SECONDS: u64 = 600;
/// `sub` of a minted token when the caller does not set one.
pub const DEFAULT_SUBJECT: &str = "dev-user";
/// `aud` of a minted token when the caller does not set one.
pub const DEFAULT_AUDIENCE: &str = "tokenvend";

/// Why the issuer could not start or mint.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("the local issuer binds loopback addresses only, not {0}")]
    NotLoopback(SocketAddr),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the local issuer has RS256 and ES256 keys only, not {0:?}")]
    UnsupportedAlgorithm(Algorithm),
    #[error("claims must be a JSON object")]
    ClaimsNotAnObject,
}

/// A running local OIDC issuer. Dropping it without [`LocalIssuer::shutdown`] leaves the server
/// task running until the runtime ends.
pub struct LocalIssuer {
    state: Arc<IssuerState>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

struct IssuerState {
    url: String,
    rsa: SigningKey,
    ec: SigningKey,
    jwks_fetches: AtomicU64,
    discovery_fetches: AtomicU64,
}

impl LocalIssuer {
    /// Binds `addr` (a loopback address; port 0 picks a free port) and serves plain HTTP with
    /// one fresh RS256 and one fresh ES256 key.
    ///
    /// # Errors
    /// `addr` is not loopback, the bind fails, or key generation fails.
    pub async fn start(addr: SocketAddr) -> anyhow::Result<LocalIssuer> {
        if !addr.ip().is_loopback() {
            return Err(IssuerError::NotLoopback(addr).into());
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| IssuerError::Bind { addr, source })?;
        let local = listener.local_addr()?;
        let state = Arc::new(IssuerState {
            url: format!("http://{local}"),
            rsa: SigningKey::generate(Algorithm::RS256)?,
            ec: SigningKey::generate(Algorithm::ES256)?,
            jwks_fetches: AtomicU64::new(0),
            discovery_fetches: AtomicU64::new(0),
        });
        let router = router(Arc::clone(&state));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
        });
        Ok(LocalIssuer { state, stop, task })
    }

    /// The issuer URL without a trailing slash, e.g. `http://127.0.0.1:41234`; also the `iss`
    /// of every token minted here.
    pub fn url(&self) -> &str {
        &self.state.url
    }

    /// Mints an ID token in-process, with the same defaults as `POST /token` (see
    /// [`LocalIssuer::start`]'s routes): `iss`, `iat`, `nbf`, `exp` (+600 s), `jti`, `sub`, `aud`
    /// are filled in when `claims` lacks them.
    ///
    /// # Errors
    /// `alg` is neither RS256 nor ES256, or `claims` is not a JSON object.
    pub fn mint(&self, alg: Algorithm, claims: Value) -> anyhow::Result<String> {
        Ok(self.state.mint(alg, claims, DEFAULT_TTL_SECONDS)?)
    }

    /// The issuer's key for `alg`.
    ///
    /// # Panics
    /// For an algorithm other than RS256 or ES256, which the issuer has no key for.
    pub fn key(&self, alg: Algorithm) -> &SigningKey {
        self.state
            .key(alg)
            .expect("the local issuer has RS256 and ES256 keys only")
    }

    /// How many times `/jwks` was fetched.
    pub fn jwks_fetches(&self) -> u64 {
        self.state.jwks_fetches.load(Ordering::Relaxed)
    }

    /// How many times the discovery document was fetched.
    pub fn discovery_fetches(&self) -> u64 {
        self.state.discovery_fetches.load(Ordering::Relaxed)
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

impl IssuerState {
    fn key(&self, alg: Algorithm) -> Result<&SigningKey, IssuerError> {
        match alg {
            Algorithm::RS256 => Ok(&self.rsa),
            Algorithm::ES256 => Ok(&self.ec),
            other => Err(IssuerError::UnsupportedAlgorithm(other)),
        }
    }

    fn mint(&self, alg: Algorithm, claims: Value, ttl: u64) -> Result<String, IssuerError> {
        let key = self.key(alg)?;
        let Value::Object(mut claims) = claims else {
            return Err(IssuerError::ClaimsNotAnObject);
        };
        let now = unix_now();
        let defaults = [
            ("iss", json!(self.url)),
            ("iat", json!(now)),
            ("nbf", json!(now)),
            ("exp", json!(now.saturating_add(ttl))),
            ("jti", json!(uuid::Uuid::new_v4().to_string())),
            ("sub", json!(DEFAULT_SUBJECT)),
            ("aud", json!(DEFAULT_AUDIENCE)),
        ];
        for (name, value) in defaults {
            claims.entry(name).or_insert(value);
        }
        // Signing a JSON object with a freshly generated key cannot fail.
        Ok(key
            .sign(Some("JWT"), &Value::Object(claims))
            .expect("signing with a generated key"))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ConnectInfo;
    use axum::http::StatusCode;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
    use std::net::{IpAddr, Ipv4Addr};

    async fn start() -> LocalIssuer {
        LocalIssuer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
    }

    async fn served_jwks(issuer: &LocalIssuer) -> JwkSet {
        let response = reqwest::get(format!("{}/jwks", issuer.url()))
            .await
            .unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "application/jwk-set+json"
        );
        serde_json::from_str(&response.text().await.unwrap()).unwrap()
    }

    /// The status and JSON body of `POST {issuer}/token`.
    async fn post_token(issuer: &LocalIssuer, body: &Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/token", issuer.url()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_str(&response.text().await.unwrap()).unwrap(),
        )
    }

    fn verify(token: &str, jwks: &JwkSet, audience: &str) -> Value {
        let header = decode_header(token).unwrap();
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[audience]);
        decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims
    }

    #[tokio::test]
    async fn discovery_document_points_at_the_jwks_and_counts_fetches() {
        let issuer = start().await;
        let response = reqwest::get(format!("{}/.well-known/openid-configuration", issuer.url()))
            .await
            .unwrap();
        assert_eq!(response.headers()["cache-control"], "public, max-age=300");
        let document: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(
            document,
            json!({
                "issuer": issuer.url(),
                "jwks_uri": format!("{}/jwks", issuer.url()),
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
            })
        );
        assert_eq!(issuer.discovery_fetches(), 1);
        assert_eq!(issuer.jwks_fetches(), 0);
        issuer.shutdown().await;
    }

    #[tokio::test]
    async fn jwks_holds_the_rsa_and_the_ec_key() {
        let issuer = start().await;
        let jwks = served_jwks(&issuer).await;
        let raw = reqwest::get(format!("{}/jwks", issuer.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            raw.starts_with(r#"{"keys":[{"use":"sig","kty":"RSA","kid":"#),
            "{raw}"
        );
        let kids: Vec<_> = jwks
            .keys
            .iter()
            .map(|k| k.common.key_id.clone().unwrap())
            .collect();
        assert_eq!(
            kids,
            [
                issuer.key(Algorithm::RS256).kid().to_owned(),
                issuer.key(Algorithm::ES256).kid().to_owned()
            ]
        );
        assert_eq!(issuer.jwks_fetches(), 2);
        issuer.shutdown().await;
    }

    #[tokio::test]
    async fn minted_rs256_and_es256_tokens_verify_against_the_served_jwks() {
        let issuer = start().await;
        let jwks = served_jwks(&issuer).await;
        for alg in [Algorithm::RS256, Algorithm::ES256] {
            let token = issuer
                .mint(alg, json!({"aud": "https://svc", "repo": "acme/web"}))
                .unwrap();
            let header = decode_header(&token).unwrap();
            assert_eq!(header.alg, alg);
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            let claims = verify(&token, &jwks, "https://svc");
            assert_eq!(claims["iss"], issuer.url());
            assert_eq!(claims["repo"], "acme/web");
            assert_eq!(claims["sub"], DEFAULT_SUBJECT);
        }
        issuer.shutdown().await;
    }

    #[tokio::test]
    async fn post_token_fills_in_the_defaults() {
        let issuer = start().await;
        let (status, response) = post_token(&issuer, &json!({"claims": {}})).await;
        assert_eq!(status, 200);
        let token = response["id_token"].as_str().unwrap();
        let claims = verify(token, &served_jwks(&issuer).await, DEFAULT_AUDIENCE);
        assert_eq!(decode_header(token).unwrap().alg, Algorithm::RS256);
        assert_eq!(claims["iss"], issuer.url());
        assert_eq!(claims["sub"], "dev-user");
        assert_eq!(claims["aud"], "tokenvend");
        assert_eq!(claims["iat"], claims["nbf"]);
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            600
        );
        assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
        issuer.shutdown().await;
    }

    #[tokio::test]
    async fn post_token_keeps_the_callers_claims_and_honours_alg_and_ttl() {
        let issuer = start().await;
        let body = json!({"claims": {"sub": "repo:acme/web", "aud": ["a", "b"]}, "alg": "ES256", "ttl": 60});
        let (_, response) = post_token(&issuer, &body).await;
        let token = response["id_token"].as_str().unwrap();
        assert_eq!(decode_header(token).unwrap().alg, Algorithm::ES256);
        let claims = verify(token, &served_jwks(&issuer).await, "b");
        assert_eq!(claims["sub"], "repo:acme/web");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
        issuer.shutdown().await;
    }

    #[tokio::test]
    async fn get_token_takes_audience_and_subject_from_the_query() {
        let issuer = start().await;
        let response = reqwest::get(format!("{}/token?aud=https://x&sub=me", issuer.url()))
            .await
            .unwrap();
        let response: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        let claims = verify(
            response["id_token"].as_str().unwrap(),
            &served_jwks(&issuer).await,
            "https://x",
        );
        assert_eq!(claims["sub"], "me");
        issuer.shutdown().await;
    }

    #[tokio::test]
    async fn an_unknown_algorithm_is_a_bad_request() {
        let issuer = start().await;
        let (status, body) = post_token(&issuer, &json!({"alg": "HS256"})).await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("HS256"));
        issuer.shutdown().await;
    }

    #[tokio::test]
    async fn a_non_loopback_peer_is_refused_a_token() {
        let issuer = start().await;
        let request = axum::http::Request::post("/token")
            .header("content-type", "application/json")
            .extension(ConnectInfo(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
                5000,
            )))
            .body(axum::body::Body::from("{}"))
            .unwrap();
        let response = tower::ServiceExt::oneshot(router(Arc::clone(&issuer.state)), request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        issuer.shutdown().await;
    }

    #[tokio::test]
    async fn binding_a_non_loopback_address_is_refused() {
        let error = LocalIssuer::start("0.0.0.0:0".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains("loopback"), "{error}");
    }
}
