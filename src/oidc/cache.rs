//! One issuer's key cache: a read-locked fast path, a refresh on an unknown `kid` that is
//! single-flight and rate-limited, and a refresh that never replaces good keys with nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::jwks::{KeyMap, VerifyingKey, parse_key_set};
use crate::metrics::Metrics;

/// At most one refresh per issuer per this period, however many unknown `kid`s arrive:
/// a flood of made-up key ids must not become a flood of requests to the issuer.
pub const REFRESH_COOLDOWN: Duration = Duration::from_secs(30);

/// A boxed future, for the I/O seam below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an issuer's keys come from: the I/O seam of verification.
pub trait KeyFetcher: Send + Sync {
    /// The raw JWKS document, or why it could not be had.
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, FetchError>>;
}

/// Why fetching keys failed; logged, never shown to callers.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Http(String),
    #[error("discovery document refused: {0}")]
    Discovery(String),
}

/// Why no key was found for a `kid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookupError {
    /// The issuer's keys are known and this `kid` is not among them.
    NotFound,
    /// No keys could be fetched yet: fail closed, the caller may retry later.
    Unavailable,
}

#[derive(Default)]
struct KeyState {
    keys: Arc<KeyMap>,
    last_success: Option<Instant>,
}

/// The keys of one issuer.
pub struct KeyCache {
    issuer: String,
    fetcher: Arc<dyn KeyFetcher>,
    metrics: Arc<Metrics>,
    state: RwLock<KeyState>,
    /// Held for the duration of a refresh; the instant is the last attempt.
    refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl KeyCache {
    pub fn new(issuer: &str, fetcher: Arc<dyn KeyFetcher>, metrics: Arc<Metrics>) -> Self {
        Self {
            issuer: issuer.to_owned(),
            fetcher,
            metrics,
            state: RwLock::default(),
            refresh: tokio::sync::Mutex::new(None),
        }
    }

    /// The key for `kid`, refreshing once (subject to the cooldown) when it is unknown.
    pub async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, KeyLookupError> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let mut last_attempt = self.refresh.lock().await;
        // Whoever held the lock before us may have fetched this very key.
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        if last_attempt.is_none_or(|at| at.elapsed() >= REFRESH_COOLDOWN) {
            *last_attempt = Some(Instant::now());
            self.fetch_now().await;
        }
        drop(last_attempt);
        self.cached(kid).ok_or_else(|| self.miss())
    }

    /// Fetches now, regardless of the cooldown (startup and periodic refresh). Returns whether
    /// usable keys were loaded.
    pub async fn refresh(&self) -> bool {
        let mut last_attempt = self.refresh.lock().await;
        *last_attempt = Some(Instant::now());
        self.fetch_now().await
    }

    /// Whether any key is cached.
    pub fn has_keys(&self) -> bool {
        !self.read().keys.is_empty()
    }

    fn cached(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        self.read().keys.get(kid).cloned()
    }

    fn miss(&self) -> KeyLookupError {
        if self.has_keys() {
            KeyLookupError::NotFound
        } else {
            KeyLookupError::Unavailable
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn fetch_now(&self) -> bool {
        let outcome = match self.fetcher.fetch().await {
            Ok(body) => parse_key_set(&body).map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match outcome {
            Ok((keys, skipped)) => {
                tracing::info!(issuer = %self.issuer, keys = keys.len(), skipped, "issuer keys loaded");
                self.metrics.jwks_fetched(&self.issuer, keys.len());
                let mut state = self
                    .state
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *state = KeyState {
                    keys: Arc::new(keys),
                    last_success: Some(Instant::now()),
                };
                true
            }
            Err(reason) => {
                tracing::warn!(issuer = %self.issuer, %reason, "issuer keys not refreshed; keeping the previous keys");
                self.metrics.jwks_fetch_failed(&self.issuer);
                false
            }
        }
    }

    /// When keys were last loaded successfully.
    pub fn last_success(&self) -> Option<Instant> {
        self.read().last_success
    }
}
