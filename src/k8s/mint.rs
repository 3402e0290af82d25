//! The TokenRequest call: one deadline for the whole exchange with the API server, bounded
//! retries of its "try again" answers inside that deadline, and its own answer reported
//! faithfully.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{HeaderMap, header};
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use kube::api::PostParams;
use secrecy::SecretString;
use serde::Deserialize;

use super::ApiContact;
use super::binding::BindingSpec;
use super::binding::calls::{BindingCalls, BoundSecret, NewBinding};
use crate::metrics::Metrics;
use crate::policy::ServiceAccountRef;

/// Attempts per TokenRequest, the first included.
const MAX_ATTEMPTS: u32 = 3;
/// Wait before the first retry when the API server gives no `Retry-After`; doubles per retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between attempts when the API server gives no `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What to mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    pub service_account: ServiceAccountRef,
    /// Empty: the API server's own audiences.
    pub audiences: Vec<String>,
    pub expiration_secs: u64,
    /// `Some` for a revocable grant: bind the token to a Secret created for it.
    pub binding: Option<NewBinding>,
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
    /// The Secret the token is bound to (revocable grants only): deleting it revokes the token.
    pub binding: Option<BoundSecret>,
}

/// Why the API server did not do what was asked (mint a token, or a binding call).
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The API server answered with an error Status.
    #[error("API server refused: {code} {reason}: {message}")]
    Api {
        code: u16,
        reason: String,
        message: String,
        /// When the server said to try again (`Retry-After` or `details.retryAfterSeconds`).
        retry_after: Option<Duration>,
    },
    /// No answer within the deadline.
    #[error("API server did not answer within {0:?}")]
    Timeout(Duration),
    /// Connection, TLS or protocol failure, or a response we could not read.
    #[error("API server unreachable: {0}")]
    Transport(String),
}

impl MintError {
    /// Whether a later attempt may succeed: no answer, or the API server's 429 or 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api { code, .. } => *code == 429 || *code >= 500,
            Self::Timeout(_) | Self::Transport(_) => true,
        }
    }

    /// A fixed label for metrics: the status code, `timeout` or `transport`.
    pub fn metric_label(&self) -> String {
        match self {
            Self::Api { code, .. } => code.to_string(),
            Self::Timeout(_) => "timeout".to_owned(),
            Self::Transport(_) => "transport".to_owned(),
        }
    }
}

/// What [`Minter::mint`] returns: a boxed future, so that the trait is object-safe.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
    bindings: BindingCalls,
}

impl KubeMinter {
    pub fn new(
        client: kube::Client,
        deadline: Duration,
        metrics: Arc<Metrics>,
        contact: Arc<ApiContact>,
    ) -> Self {
        Self {
            bindings: BindingCalls::new(
                client.clone(),
                deadline,
                Arc::clone(&metrics),
                Arc::clone(&contact),
            ),
            client,
            deadline,
            metrics,
            contact,
            in_flight: tokio::sync::Semaphore::new(MAX_TOKEN_REQUESTS_IN_FLIGHT),
        }
    }

    /// The binding Secret calls this minter makes (revocation and the sweeper use them too).
    pub fn bindings(&self) -> &BindingCalls {
        &self.bindings
    }

    /// A revocable mint: the binding Secret first, then the TokenRequest bound to it. If the
    /// TokenRequest fails, the binding is deleted again (waited for until the deadline; it
    /// carries on in the background after it, and a binding it cannot delete is swept at
    /// expiry).
    async fn mint_bound(
        &self,
        request: &MintRequest,
        binding: &NewBinding,
        deadline: tokio::time::Instant,
    ) -> Result<MintedToken, MintError> {
        let expires = latest_expiry(
            Timestamp::now(),
            request.expiration_secs,
            deadline.saturating_duration_since(tokio::time::Instant::now()),
        );
        let spec = BindingSpec {
            namespace: request.service_account.namespace(),
            service_account: request.service_account.name(),
            policy: &binding.policy,
            issuer: &binding.issuer,
            iss: &binding.iss,
            sub: &binding.sub,
            expires,
        };
        let secret = spec.secret();
        let bound = self
            .retrying(deadline, || self.bindings.create(&secret, deadline))
            .await?;
        let outcome = self
            .retrying(deadline, || self.attempt(request, Some(&bound), deadline))
            .await;
        match outcome {
            Ok(mut minted) => {
                minted.binding = Some(bound);
                Ok(minted)
            }
            Err(error) => {
                let cleanup = tokio::spawn(self.bindings.clone().remove_after_failed_mint(bound));
                let _ = tokio::time::timeout_at(deadline, cleanup).await;
                Err(error)
            }
        }
    }

    /// Attempts the call until it succeeds, fails for good, or the deadline is near: a 429, 503
    /// or 504 is retried (at most [`MAX_ATTEMPTS`] attempts) after the server's `Retry-After`,
    /// or a short backoff when it names none, but only if that wait leaves time before the
    /// deadline; otherwise its answer is returned at once.
    async fn retrying<T, F, Fut>(
        &self,
        deadline: tokio::time::Instant,
        mut call: F,
    ) -> Result<T, MintError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, MintError>>,
    {
        let mut attempt = 1;
        loop {
            let outcome = call().await;
            let Err(
                error @ MintError::Api {
                    code, retry_after, ..
                },
            ) = &outcome
            else {
                return outcome;
            };
            if !is_retryable(*code) || attempt >= MAX_ATTEMPTS {
                return outcome;
            }
            let wait = retry_after.unwrap_or_else(|| backoff(attempt));
            if tokio::time::Instant::now() + wait >= deadline {
                return outcome;
            }
            tracing::info!(attempt, ?wait, %error, "retrying a Kubernetes API call");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One TokenRequest, cut off at `deadline`; counted and recorded for readiness.
    async fn attempt(
        &self,
        request: &MintRequest,
        bound: Option<&BoundSecret>,
        deadline: tokio::time::Instant,
    ) -> Result<MintedToken, MintError> {
        let started = Instant::now();
        let outcome = match tokio::time::timeout_at(deadline, self.send(request, bound)).await {
            Err(_) => Err(MintError::Timeout(self.deadline)),
            Ok(outcome) => outcome,
        };
        let code = match &outcome {
            Ok(_) => "201".to_owned(),
            Err(error) => error.metric_label(),
        };
        self.metrics
            .kube_request(&code, started.elapsed().as_secs_f64());
        self.contact
            .record(matches!(outcome, Ok(_) | Err(MintError::Api { .. })));
        outcome
    }

    /// Sends the TokenRequest through the kube client's raw `send`, which (unlike
    /// `Api::create_token_request`) keeps the response headers: the API server's 429 is plain
    /// text whose only retry hint is the `Retry-After` header.
    async fn send(
        &self,
        request: &MintRequest,
        bound: Option<&BoundSecret>,
    ) -> Result<MintedToken, MintError> {
        let body = TokenRequest {
            spec: TokenRequestSpec {
                audiences: request.audiences.clone(),
                expiration_seconds: Some(
                    i64::try_from(request.expiration_secs).unwrap_or(i64::MAX),
                ),
                bound_object_ref: bound.map(|bound| BoundObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Secret".to_owned()),
                    name: Some(bound.name.clone()),
                    uid: Some(bound.uid.clone()),
                }),
            },
            ..TokenRequest::default()
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| MintError::Transport(e.to_string()))?;
        let path = format!(
            "/api/v1/namespaces/{}/serviceaccounts",
            request.service_account.namespace()
        );
        let http_request = kube::core::Request::new(path)
            .create_subresource(
                "token",
                request.service_account.name(),
                &PostParams::default(),
                bytes,
            )
            .map_err(|e| MintError::Transport(e.to_string()))?;
        let response = self
            .client
            .send(http_request.map(kube::client::Body::from))
            .await
            .map_err(|e| MintError::Transport(e.to_string()))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response
            .into_body()
            .collect_bytes()
            .await
            .map_err(|e| MintError::Transport(e.to_string()))?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &body, retry_after));
        }
        let response: TokenRequest = serde_json::from_slice(&body)
            .map_err(|e| MintError::Transport(format!("unreadable TokenRequest response: {e}")))?;
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
            binding: None,
        })
    }
}

/// The latest a bound token can expire, for its binding's expiry label and annotation: the
/// TokenRequest is sent (or retried) at the latest at the deadline, `remaining` from `now`,
/// and the API server counts the token's lifetime from then. It may only shorten the
/// lifetime asked for (its maximum expiration; it extends only pod-bound tokens). So the
/// binding's expiry bucket never ends before the token does, and a sweep never deletes the
/// binding of a live token, however long the create and the TokenRequest took.
fn latest_expiry(now: Timestamp, expiration_secs: u64, remaining: Duration) -> Timestamp {
    let lifetime =
        jiff::SignedDuration::from_secs(i64::try_from(expiration_secs).unwrap_or(i64::MAX))
            .checked_add(
                jiff::SignedDuration::try_from(remaining).unwrap_or(jiff::SignedDuration::MAX),
            )
            .unwrap_or(jiff::SignedDuration::MAX);
    now.checked_add(lifetime).unwrap_or(Timestamp::MAX)
}

impl Minter for KubeMinter {
    fn mint<'a>(
        &'a self,
        request: &'a MintRequest,
    ) -> BoxFuture<'a, Result<MintedToken, MintError>> {
        Box::pin(async move {
            // One deadline for the whole call, including the wait for a slot; the wait says
            // nothing about the API server, so it is neither measured nor recorded as contact.
            let deadline = tokio::time::Instant::now() + self.deadline;
            let Ok(Ok(_slot)) = tokio::time::timeout_at(deadline, self.in_flight.acquire()).await
            else {
                tracing::warn!(
                    limit = MAX_TOKEN_REQUESTS_IN_FLIGHT,
                    "no TokenRequest slot free within the deadline"
                );
                return Err(MintError::Timeout(self.deadline));
            };
            match &request.binding {
                Some(binding) => self.mint_bound(request, binding, deadline).await,
                None => {
                    self.retrying(deadline, || self.attempt(request, None, deadline))
                        .await
                }
            }
        })
    }
}

/// The API server's signals that a later attempt may succeed: throttled (429), unavailable
/// (503), or its own request timeout (504). Retrying is safe even if a timed-out attempt did
/// mint: that token was never returned to anyone, and TokenRequest tokens are not stored.
pub(super) fn is_retryable(code: u16) -> bool {
    matches!(code, 429 | 503 | 504)
}

/// Wait before retry `attempt` when the server names none: 100 ms, 200 ms, ... at most 1 s.
fn backoff(attempt: u32) -> Duration {
    (FIRST_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1))).min(MAX_BACKOFF)
}

/// `Retry-After` in whole seconds (the form the API server sends); an HTTP date is ignored.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// An error answer: its Status when the body is one (any JSON object is, as every field is
/// optional), else the code alone, as kube's own error handling does. A Status's
/// `details.retryAfterSeconds` stands in for a missing header.
pub(super) fn api_error(code: u16, body: &[u8], retry_after: Option<Duration>) -> MintError {
    let status = serde_json::from_slice::<kube::core::Status>(body).ok();
    let from_details = status
        .as_ref()
        .and_then(|s| s.details.as_ref())
        .map(|d| d.retry_after_seconds)
        .filter(|seconds| *seconds > 0)
        .map(|seconds| Duration::from_secs(u64::from(seconds)));
    let (reason, message) = match status {
        Some(status) => (status.reason, status.message),
        None => (
            String::new(),
            String::from_utf8_lossy(body).trim().to_owned(),
        ),
    };
    MintError::Api {
        code,
        reason: if reason.is_empty() {
            default_reason(code).to_owned()
        } else {
            reason
        },
        message,
        retry_after: retry_after.or(from_details),
    }
}

/// The reason the API server's filters imply when their body is plain text.
fn default_reason(code: u16) -> &'static str {
    match code {
        429 => "TooManyRequests",
        _ => "Unknown",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bindings_expiry_allows_for_the_whole_mint_deadline() {
        let now: Timestamp = "2026-11-30T10:00:00Z".parse().unwrap();
        let expires = latest_expiry(now, 600, Duration::from_secs(5));
        assert_eq!(
            expires,
            "2026-11-30T10:10:05Z".parse::<Timestamp>().unwrap()
        );
        // A TokenRequest sent (or retried) at the deadline: its token expires no later.
        let sent_last = now + jiff::SignedDuration::from_secs(5);
        assert!(sent_last + jiff::SignedDuration::from_secs(600) <= expires);
        assert_eq!(latest_expiry(now, u64::MAX, Duration::MAX), Timestamp::MAX);
    }

    #[test]
    fn the_plain_text_429_keeps_its_retry_after_header() {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, "1".parse().unwrap());
        let error = api_error(
            429,
            b"Too many requests, please try again later.\n",
            retry_after(&headers),
        );
        let MintError::Api {
            code,
            reason,
            message,
            retry_after,
        } = error
        else {
            panic!("{error:?}")
        };
        assert_eq!((code, reason.as_str()), (429, "TooManyRequests"));
        assert_eq!(message, "Too many requests, please try again later.");
        assert_eq!(retry_after, Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_status_body_gives_its_reason_and_retry_after_seconds() {
        let body = br#"{"kind":"Status","status":"Failure","message":"apiserver is shutting down","reason":"ServiceUnavailable","details":{"retryAfterSeconds":3},"code":503}"#;
        let MintError::Api {
            reason,
            retry_after,
            ..
        } = api_error(503, body, None)
        else {
            panic!()
        };
        assert_eq!(reason, "ServiceUnavailable");
        assert_eq!(retry_after, Some(Duration::from_secs(3)));
    }

    #[test]
    fn an_http_date_or_garbage_retry_after_is_ignored() {
        for value in ["Wed, 21 Oct 2015 07:28:00 GMT", "-1", "soon"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::RETRY_AFTER, value.parse().unwrap());
            assert_eq!(retry_after(&headers), None, "{value}");
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let waits: Vec<_> = (1..=6).map(backoff).collect();
        assert_eq!(waits[0], Duration::from_millis(100));
        assert_eq!(waits[1], Duration::from_millis(200));
        assert_eq!(waits[5], MAX_BACKOFF);
    }

    #[test]
    fn only_throttling_unavailability_and_timeouts_are_retried() {
        for code in [429, 503, 504] {
            assert!(is_retryable(code), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422, 500, 502] {
            assert!(!is_retryable(code), "{code}");
        }
    }
}
