//! Replay protection: each `(iss, jti)` is exchanged once. Memory is bounded: entries live
//! until the first second at which the token is refused as expired, and a full cache refuses new tokens rather than
//! forgetting old ones (forgetting would let them be replayed).
//!
//! The record is per process: with several replicas, a token can be exchanged once per
//! replica. The README says so.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

/// Distinct tokens remembered at once, per issuer.
pub const DEFAULT_CAPACITY: usize = 100_000;

type Key = (String, String);

/// Why a token may not be exchanged now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// This `(iss, jti)` was exchanged (or is being exchanged) already.
    Replayed,
    /// The cache is full of unexpired tokens; refuse rather than forget.
    Full,
}

#[derive(Default)]
struct Seen {
    keys: HashSet<Key>,
    /// Expiry order, for purging; may hold keys already released.
    expiries: BinaryHeap<Reverse<(u64, Key)>>,
}

/// The set of tokens already exchanged, for one issuer.
pub struct ReplayCache {
    seen: Mutex<Seen>,
    capacity: usize,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            seen: Mutex::new(Seen::default()),
            capacity,
        })
    }

    /// Reserves `(iss, jti)` until `forget_after` (Unix seconds; kept while `now < forget_after`). The reservation is released
    /// if dropped uncommitted, so a failed exchange does not burn the token.
    pub fn reserve(
        self: &Arc<Self>,
        iss: &str,
        jti: &str,
        forget_after: u64,
        now: u64,
    ) -> Result<Reservation, ReplayError> {
        let key = (iss.to_owned(), jti.to_owned());
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        purge(&mut seen, now);
        if seen.keys.contains(&key) {
            return Err(ReplayError::Replayed);
        }
        if seen.keys.len() >= self.capacity {
            return Err(ReplayError::Full);
        }
        seen.keys.insert(key.clone());
        seen.expiries.push(Reverse((forget_after, key.clone())));
        Ok(Reservation {
            cache: Arc::clone(self),
            key: Some(key),
        })
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn release(&self, key: &Key) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .remove(key);
    }
}

fn purge(seen: &mut Seen, now: u64) {
    while let Some(Reverse((expiry, _))) = seen.expiries.peek() {
        if *expiry > now {
            break;
        }
        if let Some(Reverse((_, key))) = seen.expiries.pop() {
            seen.keys.remove(&key);
        }
    }
    // Released keys leave stale heap entries; rebuild when they dominate.
    if seen.expiries.len() > 2 * seen.keys.len() + 1024 {
        let keys = &seen.keys;
        let live: Vec<_> = seen
            .expiries
            .drain()
            .filter(|Reverse((_, key))| keys.contains(key))
            .collect();
        seen.expiries = live.into();
    }
}

/// A reserved `(iss, jti)`: [`Reservation::commit`] keeps it; dropping releases it.
#[derive(Debug)]
pub struct Reservation {
    cache: Arc<ReplayCache>,
    key: Option<Key>,
}

impl Reservation {
    /// The exchange succeeded: the token stays used until it expires.
    pub fn commit(mut self) {
        self.key = None;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.cache.release(&key);
        }
    }
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_token_cannot_be_exchanged_again_until_it_expires() {
        let cache = ReplayCache::new(10);
        cache.reserve("iss", "a", 100, 0).unwrap().commit();
        assert_eq!(
            cache.reserve("iss", "a", 100, 50).unwrap_err(),
            ReplayError::Replayed
        );
        assert!(
            cache.reserve("other-iss", "a", 100, 50).is_ok(),
            "keys are per issuer"
        );
        assert!(
            cache.reserve("iss", "a", 200, 100).is_ok(),
            "forgotten after expiry"
        );
    }

    #[test]
    fn a_failed_exchange_releases_the_token() {
        let cache = ReplayCache::new(10);
        let reservation = cache.reserve("iss", "a", 100, 0).unwrap();
        assert_eq!(
            cache.reserve("iss", "a", 100, 0).unwrap_err(),
            ReplayError::Replayed,
            "in flight"
        );
        drop(reservation);
        assert!(cache.reserve("iss", "a", 100, 0).is_ok());
    }

    #[test]
    fn a_full_cache_refuses_instead_of_forgetting() {
        let cache = ReplayCache::new(3);
        for jti in ["a", "b", "c"] {
            cache.reserve("iss", jti, 100, 0).unwrap().commit();
        }
        assert_eq!(
            cache.reserve("iss", "d", 100, 10).unwrap_err(),
            ReplayError::Full
        );
        assert_eq!(
            cache.reserve("iss", "a", 100, 10).unwrap_err(),
            ReplayError::Replayed
        );
        cache
            .reserve("iss", "d", 200, 100)
            .expect("expired entries make room")
            .commit();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn memory_stays_bounded_under_churn() {
        let cache = ReplayCache::new(100);
        for i in 0..10_000u64 {
            drop(cache.reserve("iss", &i.to_string(), i + 10, i).unwrap());
        }
        let seen = cache.seen.lock().unwrap();
        assert!(seen.keys.is_empty());
        assert!(seen.expiries.len() <= 2 * 1024 + 1);
    }
}
