//! Replay protection: each `(iss, jti)` is exchanged once.
//!
//! A record lives until the first second at which its token is refused as expired, never less
//! (forgetting it earlier would let the token be exchanged again). Memory is bounded per
//! granting policy: a token is reserved only once a policy has granted it, and one policy's
//! records may number at most its share. A policy whose share is full is refused (fail closed)
//! while every other policy keeps its own share: a caller who varies `sub` is still one
//! policy, so a granted pipeline cannot turn its traffic into refusals for anyone else.
//!
//! Without a shared store the records are per process (kept across config reloads, lost at a
//! restart): with several replicas, a token can be exchanged once per replica. The README says
//! so. With `store:` the record is kept in the shared store instead ([`crate::store`]): a
//! set-if-absent keyed by the same digest, expiring at the same second, so every replica and
//! every restart sees it; the store's memory is then the bound, and shares do not apply.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use crate::store::{Admission, Store};

/// Records one granting policy may hold at once, per issuer.
pub const DEFAULT_SHARE: usize = 100_000;

/// SHA-256 of `iss`, a zero byte and `jti`: a fixed size per record, whatever the `jti`.
type Key = [u8; 32];

fn key_of(iss: &str, jti: &str) -> Key {
    crate::store::digest(iss, jti)
}

/// Why a token may not be exchanged now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// This `(iss, jti)` was exchanged (or is being exchanged) already.
    Replayed,
    /// The granting policy holds its whole share of unexpired records; refuse rather than forget.
    ShareFull,
    /// The shared store did not answer in time: nothing is known, so nothing is exchanged.
    StoreUnavailable,
}

struct Record {
    /// Kept while `now < forget_at`.
    forget_at: u64,
    policy: Arc<str>,
}

#[derive(Default)]
struct Records {
    by_key: HashMap<Key, Record>,
    /// Expiry order, for purging; may hold keys already released.
    expiries: BinaryHeap<Reverse<(u64, Key)>>,
    /// Records held per granting policy; a policy holding none has no entry.
    held: HashMap<Arc<str>, usize>,
}

/// The tokens already exchanged from one issuer (keyed by its URL: a reload that changes the
/// issuer's other settings keeps them).
pub struct ReplayCache {
    records: Mutex<Records>,
    share: usize,
}

impl ReplayCache {
    /// An empty record in which each granting policy may hold `share` tokens.
    pub fn new(share: usize) -> Arc<Self> {
        Arc::new(Self {
            records: Mutex::new(Records::default()),
            share,
        })
    }

    /// Records each granting policy may hold.
    pub fn share(&self) -> usize {
        self.share
    }

    /// Whether `(iss, jti)` is recorded (exchanged, or being exchanged) at `now`. Reserves
    /// nothing: no policy has granted the token yet.
    pub fn is_recorded(&self, iss: &str, jti: &str, now: u64) -> bool {
        let mut records = self.lock();
        records.purge(now);
        records.by_key.contains_key(&key_of(iss, jti))
    }

    /// Reserves `(iss, jti)` for `policy` until `forget_at` (Unix seconds; kept while
    /// `now < forget_at`), within that policy's share. The reservation is released if dropped
    /// uncommitted, so a failed exchange does not burn the token.
    pub fn reserve(
        self: &Arc<Self>,
        iss: &str,
        jti: &str,
        policy: &str,
        forget_at: u64,
        now: u64,
    ) -> Result<Reservation, ReplayError> {
        let key = key_of(iss, jti);
        let mut records = self.lock();
        records.purge(now);
        if records.by_key.contains_key(&key) {
            return Err(ReplayError::Replayed);
        }
        let policy = match records.held.get_key_value(policy) {
            Some((_, held)) if *held >= self.share => return Err(ReplayError::ShareFull),
            Some((name, _)) => Arc::clone(name),
            None if self.share == 0 => return Err(ReplayError::ShareFull),
            None => Arc::from(policy),
        };
        *records.held.entry(Arc::clone(&policy)).or_default() += 1;
        records.by_key.insert(key, Record { forget_at, policy });
        records.expiries.push(Reverse((forget_at, key)));
        Ok(Reservation {
            held: Some(Held::Local {
                cache: Arc::clone(self),
                key,
            }),
        })
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many records `policy` holds, expired ones included until the next purge.
    pub fn held_by(&self, policy: &str) -> usize {
        self.lock().held.get(policy).copied().unwrap_or_default()
    }

    /// Drops the records expired at `now`; whether any unexpired record remains.
    pub fn has_live_records(&self, now: u64) -> bool {
        let mut records = self.lock();
        records.purge(now);
        !records.by_key.is_empty()
    }

    fn release(&self, key: &Key) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Records {
    fn remove(&mut self, key: &Key) {
        let Some(record) = self.by_key.remove(key) else {
            return;
        };
        if let Some(held) = self.held.get_mut(&record.policy) {
            *held -= 1;
            if *held == 0 {
                self.held.remove(&record.policy);
            }
        }
    }

    fn purge(&mut self, now: u64) {
        while let Some(Reverse((forget_at, _))) = self.expiries.peek() {
            if *forget_at > now {
                break;
            }
            let Some(Reverse((_, key))) = self.expiries.pop() else {
                break;
            };
            // A heap entry may outlive its record (released, then reserved again later).
            if self.by_key.get(&key).is_some_and(|r| r.forget_at <= now) {
                self.remove(&key);
            }
        }
        // Released keys leave stale heap entries; rebuild when they dominate.
        if self.expiries.len() > 2 * self.by_key.len() + 1024 {
            let by_key = &self.by_key;
            let live: Vec<_> = self
                .expiries
                .drain()
                .filter(|Reverse((forget_at, key))| {
                    by_key.get(key).is_some_and(|r| r.forget_at == *forget_at)
                })
                .collect();
            self.expiries = live.into();
        }
    }
}

/// A verified token not yet reserved: what it takes to reserve it once a policy grants it.
#[derive(Debug)]
pub struct ReplayTicket {
    pub(super) cache: Arc<ReplayCache>,
    /// With `store:`, the record is kept there instead of in `cache`.
    pub(super) store: Option<Arc<Store>>,
    pub(super) iss: String,
    pub(super) jti: String,
    pub(super) forget_at: u64,
    /// With `store:`, on the issuance path: the record was not looked up during verification;
    /// [`ReplayTicket::admit`] looks it up, charges the bucket and reserves, in one trip.
    pub(super) deferred: bool,
    /// Reserved by [`ReplayTicket::admit`], before any policy ran.
    pub(super) reserved: Option<Reservation>,
}

impl ReplayTicket {
    /// Whether the shared store was not asked yet (the issuance path): then
    /// [`ReplayTicket::admit`] must run before a policy does.
    pub fn is_deferred(&self) -> bool {
        self.deferred
    }

    /// The issuance path with a shared store, in one round trip: refuses the token if it is
    /// recorded (charging nothing); else charges one request to `bucket` (identity digest,
    /// rate, burst), if given, and refuses it over budget (reserving nothing); else reserves
    /// the token, which [`ReplayTicket::reserve`] then hands to the granting policy.
    ///
    /// # Errors
    /// [`ReplayError::Replayed`], or [`ReplayError::StoreUnavailable`] (the reservation may
    /// have landed: then the token stays spent, fail closed).
    pub async fn admit(
        &mut self,
        bucket: Option<(&[u8; 32], f64, u32)>,
    ) -> Result<Option<u64>, ReplayError> {
        let Some(store) = self.store.as_ref().filter(|_| self.deferred) else {
            return Ok(None);
        };
        let digest = key_of(&self.iss, &self.jti);
        match store.admit(&digest, self.forget_at, bucket).await {
            Ok(Admission::Admitted) => {
                self.deferred = false;
                self.reserved = Some(Reservation {
                    held: Some(Held::Shared {
                        store: Arc::clone(store),
                        digest,
                    }),
                });
                Ok(None)
            }
            Ok(Admission::Limited(seconds)) => Ok(Some(seconds)),
            Ok(Admission::Replayed) => Err(ReplayError::Replayed),
            Err(_) => Err(ReplayError::StoreUnavailable),
        }
    }

    /// Releases what [`ReplayTicket::admit`] reserved (no policy granted the token): the
    /// caller may present it again.
    pub async fn release(&mut self) {
        if let Some(reservation) = self.reserved.take() {
            reservation.release().await;
        }
    }

    /// Reserves the token for the policy that granted it; see [`ReplayCache::reserve`]. With
    /// a shared store the reservation was made by [`ReplayTicket::admit`] before any policy
    /// ran (the exchange admits every issuance), and is handed over here.
    pub async fn reserve(&mut self, policy: &str, now: u64) -> Result<Reservation, ReplayError> {
        if let Some(reservation) = self.reserved.take() {
            return Ok(reservation);
        }
        if self.store.is_some() {
            // Not admitted through the store: refuse rather than record in this replica only.
            return Err(ReplayError::StoreUnavailable);
        }
        self.cache
            .reserve(&self.iss, &self.jti, policy, self.forget_at, now)
    }
}

/// A reserved `(iss, jti)`: [`Reservation::commit`] keeps it; [`Reservation::release`] (or
/// dropping it) releases it.
#[derive(Debug)]
pub struct Reservation {
    held: Option<Held>,
}

#[derive(Debug)]
enum Held {
    Local { cache: Arc<ReplayCache>, key: Key },
    Shared { store: Arc<Store>, digest: Key },
}

impl Reservation {
    /// The exchange succeeded: the token stays used until it expires.
    pub fn commit(mut self) {
        self.held = None;
    }

    /// The exchange failed: the token may be presented again. With a shared store this waits
    /// for the release (within the store's timeout), so that a caller retrying at once is not
    /// refused as a replay; a release that fails leaves the token spent.
    pub async fn release(mut self) {
        match self.held.take() {
            Some(Held::Local { cache, key }) => cache.release(&key),
            Some(Held::Shared { store, digest }) => {
                let _ = store.replay_release(&digest).await;
            }
            None => {}
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        match self.held.take() {
            Some(Held::Local { cache, key }) => cache.release(&key),
            // Dropped uncommitted without `release` (the request was abandoned mid-mint).
            Some(Held::Shared { store, digest }) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = store.replay_release(&digest).await;
                    });
                }
            }
            None => {}
        }
    }
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("len", &self.len())
            .field("share", &self.share)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_token_cannot_be_exchanged_again_until_it_expires() {
        let cache = ReplayCache::new(10);
        cache.reserve("iss", "a", "p", 100, 0).unwrap().commit();
        assert!(cache.is_recorded("iss", "a", 50));
        assert_eq!(
            cache.reserve("iss", "a", "other", 100, 50).unwrap_err(),
            ReplayError::Replayed,
            "whichever policy grants it the second time"
        );
        assert!(
            cache.reserve("other-iss", "a", "p", 100, 50).is_ok(),
            "keys are per issuer"
        );
        assert!(cache.is_recorded("iss", "a", 99));
        assert!(
            !cache.is_recorded("iss", "a", 100),
            "forgotten at forget_at"
        );
        assert!(cache.reserve("iss", "a", "p", 200, 100).is_ok());
    }

    #[test]
    fn a_failed_exchange_releases_the_token_and_its_share() {
        let cache = ReplayCache::new(1);
        let reservation = cache.reserve("iss", "a", "p", 100, 0).unwrap();
        assert_eq!(
            cache.reserve("iss", "a", "p", 100, 0).unwrap_err(),
            ReplayError::Replayed,
            "in flight"
        );
        drop(reservation);
        assert_eq!(cache.held_by("p"), 0);
        cache.reserve("iss", "b", "p", 100, 0).unwrap().commit();
        assert!(cache.reserve("iss", "a", "q", 100, 0).is_ok());
    }

    #[test]
    fn one_pipeline_filling_its_share_does_not_refuse_another_policy() {
        let cache = ReplayCache::new(3);
        // One granted pipeline, varying `sub`: distinct tokens, one granting policy.
        for jti in ["a", "b", "c"] {
            cache
                .reserve("iss", jti, "deploy", 100, 0)
                .unwrap()
                .commit();
        }
        assert_eq!(
            cache.reserve("iss", "d", "deploy", 100, 10).unwrap_err(),
            ReplayError::ShareFull,
            "the over-share policy is refused"
        );
        cache
            .reserve("iss", "other-policy", "audit", 100, 10)
            .expect("another policy's caller")
            .commit();
        for jti in ["a", "b", "c"] {
            assert!(
                cache.is_recorded("iss", jti, 99),
                "nothing unexpired is forgotten to make room"
            );
        }
        cache
            .reserve("iss", "d", "deploy", 200, 100)
            .expect("expired records give the share back")
            .commit();
        assert_eq!(cache.held_by("deploy"), 1);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_token_reserved_again_after_a_release_is_not_purged_by_its_old_expiry() {
        let cache = ReplayCache::new(10);
        drop(cache.reserve("iss", "a", "p", 50, 0).unwrap());
        cache.reserve("iss", "a", "p", 100, 0).unwrap().commit();
        assert!(cache.is_recorded("iss", "a", 60));
    }

    #[test]
    fn memory_stays_bounded_under_churn() {
        let cache = ReplayCache::new(100);
        for i in 0..10_000u64 {
            drop(
                cache
                    .reserve("iss", &i.to_string(), "p", i + 10, i)
                    .unwrap(),
            );
        }
        let records = cache.lock();
        assert!(records.by_key.is_empty());
        assert!(records.held.is_empty());
        assert!(records.expiries.len() <= 2 * 1024 + 1);
    }
}
