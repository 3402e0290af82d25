//! One issuer's key cache: a read-locked fast path, a refresh on an unknown `kid` that is
//! single-flight and rate-limited (with a bounded memory of kids just found unknown), periodic
//! refreshes paced by the issuer's `Cache-Control: max-age`, a refresh that never replaces good
//! keys with nothing, and keys that stop being trusted when no refresh has succeeded for too long.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::jwks::{KeyMap, VerifyingKey, parse_key_set};
use crate::metrics::Metrics;

/// At most one refresh per issuer per this period (by default), however many unknown `kid`s
/// arrive: a flood of made-up key ids must not become a flood of requests to the issuer.
pub const REFRESH_COOLDOWN: Duration = Duration::from_secs(30);
/// Keys are served from cache during an issuer outage for this long (by default) after the last
/// successful fetch; then lookups fail closed (503) until a fetch succeeds.
pub const MAX_STALENESS: Duration = Duration::from_secs(24 * 3600);
/// Bounds on the periodic refresh interval, whatever `max-age` says.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// The periodic refresh interval when the issuer sends no `max-age`.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
/// After a failed periodic refresh, try again this soon.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// Unknown kids remembered (for the cooldown) at most.
const MAX_REMEMBERED_MISSES: usize = 1024;

/// A boxed future, for the I/O seam below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an issuer's keys come from: the I/O seam of verification.
pub trait KeyFetcher: Send + Sync {
    /// The raw JWKS document, or why it could not be had.
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched, FetchError>>;
}

/// A fetched JWKS document and how long the issuer says it may be cached.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub body: Vec<u8>,
    pub max_age: Option<Duration>,
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
    refresh_interval: Option<Duration>,
}

/// The keys of one issuer.
pub struct KeyCache {
    issuer: String,
    fetcher: Arc<dyn KeyFetcher>,
    metrics: Arc<Metrics>,
    state: RwLock<KeyState>,
    /// Held for the duration of a refresh; the instant is the last attempt.
    refresh: tokio::sync::Mutex<Option<Instant>>,
    /// The least time between two fetches triggered by unknown kids.
    cooldown: Duration,
    /// How long after the last successful fetch the keys are still used.
    max_staleness: Duration,
    /// Kids found unknown by a refresh, and when: asked again within the cooldown, they are
    /// refused without waiting for the refresh lock.
    misses: Mutex<HashMap<String, Instant>>,
}

impl KeyCache {
    pub fn new(issuer: &str, fetcher: Arc<dyn KeyFetcher>, metrics: Arc<Metrics>) -> Self {
        Self {
            issuer: issuer.to_owned(),
            fetcher,
            metrics,
            state: RwLock::default(),
            refresh: tokio::sync::Mutex::new(None),
            misses: Mutex::default(),
            cooldown: REFRESH_COOLDOWN,
            max_staleness: MAX_STALENESS,
        }
    }

    /// Sets the refresh cooldown (default [`REFRESH_COOLDOWN`]).
    #[must_use]
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Sets how long keys outlive the last successful fetch (default [`MAX_STALENESS`]).
    #[must_use]
    pub fn with_max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// The key for `kid`, refreshing once (subject to the cooldown) when it is unknown.
    pub async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, KeyLookupError> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        if self.missed_recently(kid) {
            return Err(self.miss());
        }
        let mut last_attempt = self.refresh.lock().await;
        // Whoever held the lock before us may have fetched this very key.
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        if last_attempt.is_none_or(|at| at.elapsed() >= self.cooldown) {
            *last_attempt = Some(Instant::now());
            self.fetch_now().await;
        }
        drop(last_attempt);
        self.cached(kid).ok_or_else(|| {
            self.remember_miss(kid);
            self.miss()
        })
    }

    fn missed_recently(&self, kid: &str) -> bool {
        let misses = self.misses.lock().unwrap_or_else(PoisonError::into_inner);
        misses
            .get(kid)
            .is_some_and(|at| at.elapsed() < self.cooldown)
    }

    fn remember_miss(&self, kid: &str) {
        let mut misses = self.misses.lock().unwrap_or_else(PoisonError::into_inner);
        if misses.len() >= MAX_REMEMBERED_MISSES {
            misses.retain(|_, at| at.elapsed() < self.cooldown);
        }
        if misses.len() < MAX_REMEMBERED_MISSES {
            misses.insert(kid.to_owned(), Instant::now());
        }
    }

    /// Refreshes periodically, forever: at the issuer's `max-age` (clamped), sooner after a failure.
    pub async fn refresh_periodically(&self) {
        loop {
            let interval = self
                .read()
                .refresh_interval
                .unwrap_or(DEFAULT_REFRESH_INTERVAL);
            let wait = match self.read().last_success {
                Some(at) => interval.saturating_sub(at.elapsed()),
                None => RETRY_INTERVAL,
            };
            tokio::time::sleep(wait.max(Duration::from_secs(1))).await;
            if !self.refresh().await {
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
        }
    }

    /// Fetches now, regardless of the cooldown (startup and periodic refresh). Returns whether
    /// usable keys were loaded.
    pub async fn refresh(&self) -> bool {
        let mut last_attempt = self.refresh.lock().await;
        *last_attempt = Some(Instant::now());
        self.fetch_now().await
    }

    /// Whether usable keys are cached: some were loaded, and not too long ago.
    pub fn has_keys(&self) -> bool {
        let state = self.read();
        !state.keys.is_empty() && is_fresh(&state, self.max_staleness)
    }

    fn cached(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        let state = self.read();
        if !is_fresh(&state, self.max_staleness) {
            return None;
        }
        state.keys.get(kid).cloned()
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
            Ok(fetched) => parse_key_set(&fetched.body)
                .map(|parsed| (parsed, fetched.max_age))
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match outcome {
            Ok(((keys, skipped), max_age)) => {
                tracing::info!(issuer = %self.issuer, keys = keys.len(), skipped, "issuer keys loaded");
                self.metrics.jwks_fetched(&self.issuer, keys.len());
                let mut state = self
                    .state
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *state = KeyState {
                    keys: Arc::new(keys),
                    last_success: Some(Instant::now()),
                    refresh_interval: max_age
                        .map(|age| age.clamp(MIN_REFRESH_INTERVAL, MAX_REFRESH_INTERVAL)),
                };
                drop(state);
                self.misses
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                true
            }
            Err(reason) => {
                tracing::warn!(issuer = %self.issuer, %reason, "issuer keys not refreshed; keeping the previous keys");
                self.metrics.jwks_fetch_failed(&self.issuer);
                false
            }
        }
    }
}

fn is_fresh(state: &KeyState, max_staleness: Duration) -> bool {
    state
        .last_success
        .is_some_and(|at| at.elapsed() <= max_staleness)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dev_pki::keys::SigningKey;
    use jsonwebtoken::Algorithm;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Serves a scripted sequence of JWKS bodies (or failures) and counts fetches.
    struct ScriptedFetcher {
        fetches: AtomicUsize,
        answers: std::sync::Mutex<Vec<Result<Vec<u8>, String>>>,
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
        fn fetch(&self) -> BoxFuture<'_, Result<Fetched, FetchError>> {
            Box::pin(async move {
                self.fetches.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                let answer = {
                    let mut answers = self.answers.lock().unwrap();
                    if answers.len() > 1 {
                        answers.remove(0)
                    } else {
                        answers[0].clone()
                    }
                };
                answer
                    .map(|body| Fetched {
                        body,
                        max_age: None,
                    })
                    .map_err(FetchError::Http)
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

#[cfg(test)]
mod staleness_tests {
    use super::*;

    #[test]
    fn keys_older_than_the_maximum_staleness_are_not_used() {
        let fresh = KeyState {
            last_success: Some(Instant::now()),
            ..KeyState::default()
        };
        assert!(is_fresh(&fresh, MAX_STALENESS));
        let Some(long_ago) = Instant::now().checked_sub(MAX_STALENESS + Duration::from_secs(1))
        else {
            return; // the monotonic clock started too recently to express this
        };
        let stale = KeyState {
            last_success: Some(long_ago),
            ..KeyState::default()
        };
        assert!(!is_fresh(&stale, MAX_STALENESS));
        assert!(!is_fresh(&KeyState::default(), MAX_STALENESS));
    }
}
