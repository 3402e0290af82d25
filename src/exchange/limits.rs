//! Request limits: a token bucket per verified identity (issuer name and `sub`), so one caller
//! cannot exhaust the API server or another caller's budget, and a global cap on requests in
//! flight, beyond which new requests are shed at once rather than queued.
//!
//! The per-identity limit applies after verification: an unverified token names no identity
//! anyone could be charged for, and is cheap to refuse; the in-flight cap covers such garbage.
//! A request takes its in-flight slot only once its body has arrived, within a deadline: a
//! client that stalls mid-body holds a connection for that long, never a slot.
//!
//! With a shared store (`store:`) every replica charges the same bucket: one server-side script
//! per request runs the same token bucket there (see [`crate::store`]). While the store is
//! down or slow the in-process buckets answer instead, so the limit still holds per replica.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::store::Store;

/// Identities tracked at once. Each entry is a few dozen bytes (the key is a hash), so the map
/// stays small even when it is full.
const MAX_IDENTITIES: usize = 100_000;

/// A full map is swept for idle identities at most this often, so that a flood of new
/// identities cannot make every request pay for a sweep.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How the limits are set (the `serve` flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSettings {
    /// Sustained requests per second allowed to one identity; `0` switches the limit off.
    pub per_identity_rate: f64,
    /// Requests an idle identity may make at once (the bucket size).
    pub per_identity_burst: u32,
    /// Token requests handled at once; further ones get 503 immediately. `0` means no cap.
    pub max_in_flight: usize,
    /// A request body must have arrived this long after the request head, or the request gets
    /// 408 and its connection is closed.
    pub request_body_timeout: Duration,
    /// Connections one peer address may hold open at once; further ones are closed as soon
    /// as they are accepted. `0` means no cap (every connection comes through one proxy).
    pub max_connections_per_peer: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            per_identity_rate: 10.0,
            per_identity_burst: 20,
            max_in_flight: 512,
            request_body_timeout: Duration::from_secs(10),
            max_connections_per_peer: 64,
        }
    }
}

/// The limits in force, shared by all requests.
pub struct Limits {
    identities: Option<IdentityLimiter>,
    /// Where the buckets are shared between replicas, if anywhere.
    store: Option<Arc<Store>>,
    in_flight: Option<Arc<Semaphore>>,
    request_body_timeout: Duration,
}

/// A request was refused by a limit; retry after this many whole seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl Limits {
    pub fn new(settings: LimitSettings) -> Self {
        let rate_on = settings.per_identity_rate > 0.0 && settings.per_identity_rate.is_finite();
        Self {
            identities: rate_on.then(|| {
                IdentityLimiter::new(
                    settings.per_identity_rate,
                    settings.per_identity_burst.max(1),
                    MAX_IDENTITIES,
                )
            }),
            store: None,
            in_flight: (settings.max_in_flight > 0)
                .then(|| Arc::new(Semaphore::new(settings.max_in_flight))),
            request_body_timeout: settings.request_body_timeout,
        }
    }

    /// Charges identities in the shared store (falling back to the in-process buckets while
    /// it is unavailable).
    #[must_use]
    pub fn with_store(mut self, store: Option<Arc<Store>>) -> Self {
        self.store = store;
        self
    }

    /// The shared store, if any (readiness reports it).
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// How long a request body may take to arrive after the request head.
    pub fn request_body_timeout(&self) -> Duration {
        self.request_body_timeout
    }

    /// Charges one request to the identity `(issuer, subject)`.
    ///
    /// # Errors
    /// The identity's budget is spent; the value says when one request is available again.
    pub async fn admit_identity(&self, issuer: &str, subject: &str) -> Result<(), RetryAfter> {
        let Some(limiter) = &self.identities else {
            return Ok(());
        };
        if let Some(store) = &self.store {
            let identity = crate::store::digest(issuer, subject);
            let burst = limiter.whole_burst();
            match store.rate_admit(&identity, limiter.rate, burst).await {
                Ok(None) => return Ok(()),
                Ok(Some(seconds)) => return Err(RetryAfter(seconds)),
                Err(_) => {} // the store is unavailable: this replica's own buckets answer
            }
        }
        limiter.admit(issuer, subject, Instant::now())
    }

    /// The identity's bucket in the shared store, as [`crate::oidc::ReplayTicket::admit`]
    /// charges it together with the replay record: `None` when the per-identity limit is off
    /// or there is no shared store.
    pub fn shared_bucket(&self, issuer: &str, subject: &str) -> Option<([u8; 32], f64, u32)> {
        let limiter = self.identities.as_ref()?;
        self.store.as_ref()?;
        Some((
            crate::store::digest(issuer, subject),
            limiter.rate,
            limiter.whole_burst(),
        ))
    }

    /// A slot for one request in flight, released when the returned guard drops; `None` when
    /// every slot is taken (shed the request).
    pub fn enter(&self) -> Option<InFlight> {
        match &self.in_flight {
            Some(slots) => Arc::clone(slots)
                .try_acquire_owned()
                .ok()
                .map(|permit| InFlight {
                    _slot: Some(permit),
                }),
            None => Some(InFlight { _slot: None }),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(LimitSettings::default())
    }
}

/// Holds a request's in-flight slot until dropped.
#[derive(Debug)]
pub struct InFlight {
    _slot: Option<OwnedSemaphorePermit>,
}

/// Token buckets keyed by a hash of `(issuer, subject)`, at most `capacity` of them.
struct IdentityLimiter {
    rate: f64,
    burst: f64,
    capacity: usize,
    /// Keyed with a per-process random seed: a caller cannot choose subjects that collide.
    hasher: std::collections::hash_map::RandomState,
    state: Mutex<Buckets>,
}

struct Buckets {
    by_identity: HashMap<u64, Bucket>,
    last_sweep: Option<Instant>,
}

/// Tokens available at `updated`; refills at `rate` per second up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }
}

impl IdentityLimiter {
    /// The bucket size as the in-process limiter has it (at least 1, a whole number).
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "burst is a u32 stored as f64"
    )]
    fn whole_burst(&self) -> u32 {
        self.burst as u32
    }

    fn new(rate: f64, burst: u32, capacity: usize) -> Self {
        Self {
            rate,
            burst: f64::from(burst),
            capacity,
            hasher: std::collections::hash_map::RandomState::new(),
            state: Mutex::new(Buckets {
                by_identity: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    fn admit(&self, issuer: &str, subject: &str, now: Instant) -> Result<(), RetryAfter> {
        let key = self.hasher.hash_one((issuer, subject));
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.by_identity.contains_key(&key) && state.by_identity.len() >= self.capacity {
            self.sweep(&mut state, now);
            if state.by_identity.len() >= self.capacity {
                // Every tracked identity is busy: admit this one untracked rather than lock
                // newcomers out. The in-flight cap still bounds the load.
                return Ok(());
            }
        }
        let bucket = state.by_identity.entry(key).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let tokens = bucket.refilled(now, self.rate, self.burst);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                updated: now,
            };
            return Ok(());
        }
        *bucket = Bucket {
            tokens,
            updated: now,
        };
        let wait = (1.0 - tokens) / self.rate;
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a positive number of seconds, rounded up and clamped to at least 1"
        )]
        let seconds = wait.ceil().max(1.0) as u64;
        Err(RetryAfter(seconds))
    }

    /// Forgets identities whose bucket has refilled: they are indistinguishable from new ones.
    fn sweep(&self, state: &mut Buckets, now: Instant) {
        if state
            .last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_INTERVAL)
        {
            return;
        }
        state.last_sweep = Some(now);
        let (rate, burst) = (self.rate, self.burst);
        state
            .by_identity
            .retain(|_, bucket| bucket.refilled(now, rate, burst) < burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: f64, burst: u32, capacity: usize) -> IdentityLimiter {
        IdentityLimiter::new(rate, burst, capacity)
    }

    #[test]
    fn an_identity_gets_its_burst_then_waits_for_the_rate() {
        let limiter = limiter(2.0, 3, 10);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.admit("github", "repo:a", now), Ok(()));
        }
        assert_eq!(limiter.admit("github", "repo:a", now), Err(RetryAfter(1)));
        let later = now + Duration::from_millis(500);
        assert_eq!(limiter.admit("github", "repo:a", later), Ok(()));
        assert!(limiter.admit("github", "repo:a", later).is_err());
    }

    #[test]
    fn retry_after_rounds_the_wait_up_to_whole_seconds() {
        let limiter = limiter(0.1, 1, 10);
        let now = Instant::now();
        assert_eq!(limiter.admit("i", "s", now), Ok(()));
        assert_eq!(limiter.admit("i", "s", now), Err(RetryAfter(10)));
    }

    #[test]
    fn one_identity_spending_its_budget_leaves_others_untouched() {
        let limiter = limiter(1.0, 1, 10);
        let now = Instant::now();
        assert_eq!(limiter.admit("github", "repo:attacker", now), Ok(()));
        assert!(limiter.admit("github", "repo:attacker", now).is_err());
        assert_eq!(limiter.admit("github", "repo:victim", now), Ok(()));
        // The same subject at another issuer is another identity.
        assert_eq!(limiter.admit("gitlab", "repo:attacker", now), Ok(()));
    }

    #[test]
    fn a_full_map_forgets_idle_identities_and_never_grows_past_its_capacity() {
        let limiter = limiter(1.0, 1, 2);
        let now = Instant::now();
        assert_eq!(limiter.admit("i", "a", now), Ok(()));
        assert_eq!(limiter.admit("i", "b", now), Ok(()));
        // Full and both busy: a newcomer is admitted untracked.
        assert_eq!(limiter.admit("i", "c", now), Ok(()));
        assert_eq!(limiter.admit("i", "c", now), Ok(()));
        // Once a and b have refilled, the sweep makes room and c is tracked again.
        let later = now + Duration::from_secs(2);
        assert_eq!(limiter.admit("i", "c", later), Ok(()));
        assert!(limiter.admit("i", "c", later).is_err());
        let size = limiter.state.lock().unwrap().by_identity.len();
        assert!(size <= 2, "{size}");
    }

    #[test]
    fn in_flight_slots_are_shed_when_taken_and_released_on_drop() {
        let limits = Limits::new(LimitSettings {
            max_in_flight: 1,
            ..LimitSettings::default()
        });
        let first = limits.enter().expect("a free slot");
        assert!(limits.enter().is_none());
        drop(first);
        assert!(limits.enter().is_some());
    }

    #[tokio::test]
    async fn zero_switches_a_limit_off() {
        let limits = Limits::new(LimitSettings {
            per_identity_rate: 0.0,
            per_identity_burst: 1,
            max_in_flight: 0,
            ..LimitSettings::default()
        });
        let held: Vec<_> = (0..1000).map(|_| limits.enter().unwrap()).collect();
        for _ in 0..1000 {
            assert_eq!(limits.admit_identity("i", "s").await, Ok(()));
        }
        drop(held);
    }
}
