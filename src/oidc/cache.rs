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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::keys::SigningKey;
    use jsonwebtoken::Algorithm;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Serves a scripted sequence of JWKS bodies (or failures) and counts fetches.
    struct ScriptedFetcher {
        fetches: AtomicUsize,
        answers: Mutex<Vec<Result<Vec<u8>, String>>>,
        delay: Duration,
    }

    impl ScriptedFetcher {
        fn new(answers: Vec<Result<Vec<u8>, String>>) -> Arc<Self> {
            Arc::new(Self {
                fetches: AtomicUsize::new(0),
                answers: Mutex::new(answers),
                delay: Duration::from_millis(50),
            })
        }
    }

    impl KeyFetcher for ScriptedFetcher {
        fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, FetchError>> {
            Box::pin(async move {
                self.fetches.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                let mut answers = self.answers.lock().unwrap();
                let answer = if answers.len() > 1 {
                    answers.remove(0)
                } else {
                    answers[0].clone()
                };
                answer.map_err(FetchError::Http)
            })
        }
    }

    fn jwks(keys: &[&SigningKey]) -> Vec<u8> {
        let keys: Vec<_> = keys.iter().map(|k| k.public_jwk()).collect();
        serde_json::json!({"keys": keys}).to_string().into_bytes()
    }

    #[tokio::test]
    async fn a_flood_of_unknown_kids_causes_one_fetch() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let fetcher = ScriptedFetcher::new(vec![Ok(jwks(&[&key]))]);
        let cache = Arc::new(KeyCache::new(
            "test",
            fetcher.clone(),
            Arc::new(Metrics::new()),
        ));
        let lookups = (0..500).map(|i| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.key(&format!("unknown-{i}")).await })
        });
        for lookup in lookups {
            assert_eq!(lookup.await.unwrap().unwrap_err(), KeyLookupError::NotFound);
        }
        assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 1);
        assert!(cache.key(key.kid()).await.is_ok());
        assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_or_empty_refresh_keeps_the_previous_keys() {
        let key = SigningKey::generate(Algorithm::RS256).unwrap();
        let fetcher = ScriptedFetcher::new(vec![
            Ok(jwks(&[&key])),
            Err("HTTP 500".into()),
            Ok(br#"{"keys":[]}"#.to_vec()),
        ]);
        let cache = KeyCache::new("test", fetcher.clone(), Arc::new(Metrics::new()));
        assert!(cache.refresh().await);
        assert!(!cache.refresh().await);
        assert!(!cache.refresh().await);
        assert!(cache.key(key.kid()).await.is_ok());
        assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn without_any_keys_a_lookup_is_unavailable_not_unknown() {
        let fetcher = ScriptedFetcher::new(vec![Err("connection refused".into())]);
        let cache = KeyCache::new("test", fetcher, Arc::new(Metrics::new()));
        assert_eq!(
            cache.key("any").await.unwrap_err(),
            KeyLookupError::Unavailable
        );
    }

    #[tokio::test]
    async fn a_rotated_key_is_found_by_refreshing_on_its_unknown_kid() {
        let (old, new) = (
            SigningKey::generate(Algorithm::RS256).unwrap(),
            SigningKey::generate(Algorithm::RS256).unwrap(),
        );
        let fetcher = ScriptedFetcher::new(vec![Ok(jwks(&[&old])), Ok(jwks(&[&new]))]);
        let cache = KeyCache::new("test", fetcher.clone(), Arc::new(Metrics::new()));
        assert!(cache.refresh().await);
        *cache.refresh.lock().await = Some(Instant::now() - REFRESH_COOLDOWN);
        assert!(cache.key(new.kid()).await.is_ok());
        // Removed keys are dropped at the next successful refresh.
        assert!(cache.cached(old.kid()).is_none());
    }
}
