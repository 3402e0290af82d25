//! The TokenRequest call: one deadline, the API server's own answer reported faithfully.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use secrecy::SecretString;
use serde::Deserialize;

use super::ApiContact;
use crate::metrics::Metrics;
use crate::oidc::BoxFuture;
use crate::policy::ServiceAccountRef;

/// What to mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    pub service_account: ServiceAccountRef,
    /// Empty: the API server's own audiences.
    pub audiences: Vec<String>,
    pub expiration_secs: u64,
}

/// A minted token, as the API server returned it.
#[derive(Debug, Clone)]
pub struct MintedToken {
    pub token: SecretString,
    /// When the API server says it expires (it may have capped the requested TTL).
    pub expiration: Timestamp,
    /// The audiences the API server put in the token.
    pub audiences: Vec<String>,
    /// The token's `jti`, which the Kubernetes audit log records as its credential id.
    pub token_id: Option<String>,
}

/// Why no token came back.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The API server answered with an error Status.
    #[error("API server refused: {code} {reason}: {message}")]
    Api {
        code: u16,
        reason: String,
        message: String,
    },
    /// No answer within the deadline.
    #[error("API server did not answer within {0:?}")]
    Timeout(Duration),
    /// Connection, TLS or protocol failure, or a response we could not read.
    #[error("API server unreachable: {0}")]
    Transport(String),
}

impl MintError {
    /// A fixed label for metrics: the status code, `timeout` or `transport`.
    pub fn code_label(&self) -> String {
        match self {
            Self::Api { code, .. } => code.to_string(),
            Self::Timeout(_) => "timeout".to_owned(),
            Self::Transport(_) => "transport".to_owned(),
        }
    }
}

/// Mints service-account tokens: the I/O seam towards Kubernetes.
pub trait Minter: Send + Sync {
    fn mint<'a>(
        &'a self,
        request: &'a MintRequest,
    ) -> BoxFuture<'a, Result<MintedToken, MintError>>;
}

/// TokenRequests in flight at once; further requests wait their turn within their deadline.
/// kube's client speaks HTTP/1.1, so every request in flight holds its own TLS connection to
/// the API server (and its buffers here): without a bound, a burst of callers becomes a burst
/// of connections and handshakes. kube-apiserver itself serves 200 mutating requests at once by
/// default (`--max-mutating-requests-inflight`), and 128 in flight keep it busy even at tens of
/// milliseconds per TokenRequest.
pub const MAX_TOKEN_REQUESTS_IN_FLIGHT: usize = 128;

/// Mints through the real `kube` client.
pub struct KubeMinter {
    client: kube::Client,
    deadline: Duration,
    metrics: Arc<Metrics>,
    contact: Arc<ApiContact>,
    in_flight: tokio::sync::Semaphore,
}

impl KubeMinter {
    pub fn new(
        client: kube::Client,
        deadline: Duration,
        metrics: Arc<Metrics>,
        contact: Arc<ApiContact>,
    ) -> Self {
        Self {
            client,
            deadline,
            metrics,
            contact,
            in_flight: tokio::sync::Semaphore::new(MAX_TOKEN_REQUESTS_IN_FLIGHT),
        }
    }

    /// One TokenRequest, answered within `deadline`.
    async fn call(
        &self,
        request: &MintRequest,
        deadline: Duration,
    ) -> Result<MintedToken, MintError> {
        let api: Api<ServiceAccount> =
            Api::namespaced(self.client.clone(), request.service_account.namespace());
        let body = TokenRequest {
            spec: TokenRequestSpec {
                audiences: request.audiences.clone(),
                expiration_seconds: Some(
                    i64::try_from(request.expiration_secs).unwrap_or(i64::MAX),
                ),
                bound_object_ref: None,
            },
            ..TokenRequest::default()
        };
        let params = PostParams::default();
        let call = api.create_token_request(request.service_account.name(), &params, &body);
        let response = match tokio::time::timeout(deadline, call).await {
            Err(_) => return Err(MintError::Timeout(self.deadline)),
            Ok(Err(error)) => return Err(classify(error)),
            Ok(Ok(response)) => response,
        };
        let Some(status) = response.status else {
            return Err(MintError::Transport(
                "TokenRequest response has no status".into(),
            ));
        };
        Ok(MintedToken {
            token_id: token_id(&status.token),
            token: SecretString::from(status.token),
            expiration: status.expiration_timestamp.0,
            audiences: response.spec.audiences,
        })
    }
}

impl Minter for KubeMinter {
    fn mint<'a>(
        &'a self,
        request: &'a MintRequest,
    ) -> BoxFuture<'a, Result<MintedToken, MintError>> {
        Box::pin(async move {
            let queued = Instant::now();
            // The wait for a slot counts against the deadline; it says nothing about the API
            // server, so it is neither measured nor recorded as contact.
            let Ok(Ok(_slot)) = tokio::time::timeout(self.deadline, self.in_flight.acquire()).await
            else {
                tracing::warn!(
                    limit = MAX_TOKEN_REQUESTS_IN_FLIGHT,
                    "no TokenRequest slot free within the deadline"
                );
                return Err(MintError::Timeout(self.deadline));
            };
            let started = Instant::now();
            let remaining = self.deadline.saturating_sub(queued.elapsed());
            let outcome = self.call(request, remaining).await;
            let code = match &outcome {
                Ok(_) => "201".to_owned(),
                Err(error) => error.code_label(),
            };
            self.metrics
                .kube_request(&code, started.elapsed().as_secs_f64());
            self.contact
                .record(matches!(outcome, Ok(_) | Err(MintError::Api { .. })));
            outcome
        })
    }
}

fn classify(error: kube::Error) -> MintError {
    match error {
        kube::Error::Api(status) => MintError::Api {
            code: status.code,
            reason: if status.reason.is_empty() {
                "Unknown".to_owned()
            } else {
                status.reason.clone()
            },
            message: status.message.clone(),
        },
        other => MintError::Transport(other.to_string()),
    }
}

#[derive(Deserialize)]
struct JtiOnly {
    jti: Option<String>,
}

/// The minted token's `jti`, read without verification: the token comes from our own API
/// server over an authenticated channel, and the value is only reported, never trusted.
fn token_id(token: &str) -> Option<String> {
    jsonwebtoken::dangerous::insecure_decode_claims::<JtiOnly>(token)
        .ok()?
        .jti
}
