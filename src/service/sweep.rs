//! The sweeper: deletes the binding Secrets of expired revocable tokens, so that none
//! accumulate. Every few minutes (jittered, so that replicas spread out) it deletes, per
//! namespace, the bindings whose expiry bucket (`tokenvend.io/expires`, the token's expiry
//! rounded up to 10 minutes) lies in the past, naming those buckets in a label selector: one
//! collection delete per namespace and chunk of buckets, never a list or a read.
//!
//! Which buckets: per namespace, those since its last sweep that succeeded (a namespace that
//! fails does not hold the others back); after a start, those of the last
//! [`FIRST_LOOKBACK`] (written in chunks of [`BUCKETS_PER_CALL`] so that each selector stays
//! short). A bucket is swept only once it ended [`CLOCK_MARGIN`] ago, so a token the API
//! server considers valid a little longer than this process's clock is never cut short.
//!
//! Which namespaces: those revocable policies name literally, and those this process created
//! bindings in (templated namespaces among them). A templated namespace's bindings from before
//! a restart are not known here: `tokenvend revoke --issued-before` removes them, or the next
//! issuance in that namespace puts it back on the list.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

use crate::http::AppState;
use crate::k8s::binding::{BUCKET_SECONDS, Selector};
use crate::metrics::RevokedVia;

/// Time between sweeps, before jitter.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(300);
/// Up to this much is added to or taken from each interval.
const SWEEP_JITTER: Duration = Duration::from_secs(60);
/// How far back the first sweep after a start looks.
pub const FIRST_LOOKBACK: Duration = Duration::from_secs(24 * 3600);
/// A bucket is swept once it ended this long ago (clock differences with the API server).
pub const CLOCK_MARGIN: Duration = Duration::from_secs(120);
/// Buckets named in one selector (4 hours of them).
pub const BUCKETS_PER_CALL: usize = 24;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Bindings deleted, over all namespaces.
    pub deleted: u64,
    /// Namespaces where a delete failed (their buckets are swept again next time).
    pub failed: Vec<String>,
}

/// Sweeps the bindings of expired tokens; see the module documentation.
pub struct Sweeper {
    state: AppState,
    progress: Mutex<Progress>,
}

#[derive(Debug, Default)]
struct Progress {
    /// Per namespace, the newest bucket swept.
    swept_through: BTreeMap<String, i64>,
    /// Namespaces whose last sweep failed (failures are logged once per change).
    failing: BTreeSet<String>,
}

impl Sweeper {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            progress: Mutex::default(),
        }
    }

    /// One sweep as of `now`: in every namespace bindings may be in, the buckets that ended
    /// at least [`CLOCK_MARGIN`] before `now` and were not swept there yet. Never fails: a
    /// failed delete is logged (once, until that namespace sweeps again) and retried by the
    /// next sweep.
    pub async fn sweep_once(&self, now: Timestamp) -> SweepReport {
        let mut report = SweepReport::default();
        let bindings = self.state.exchange.bindings();
        let mut namespaces: BTreeSet<String> = self
            .state
            .exchange
            .snapshot()
            .policies
            .revocable_namespaces();
        namespaces.extend(bindings.namespaces_used());
        for namespace in &namespaces {
            let swept_through = self.lock().swept_through.get(namespace).copied();
            let buckets = buckets_to_sweep(swept_through, now.as_second());
            let Some(&newest) = buckets.last() else {
                continue;
            };
            let mut failed = None;
            for chunk in buckets.chunks(BUCKETS_PER_CALL) {
                let selector = Selector {
                    expiry_buckets: chunk.to_vec(),
                    ..Selector::default()
                };
                match bindings.delete_selected(namespace, &selector).await {
                    Ok(deleted) => report.deleted += deleted,
                    Err(error) => {
                        failed = Some(error);
                        break;
                    }
                }
            }
            let mut progress = self.lock();
            match failed {
                None => {
                    progress.swept_through.insert(namespace.clone(), newest);
                    if progress.failing.remove(namespace) {
                        tracing::info!(%namespace, "sweeping expired token bindings works again");
                    }
                }
                Some(error) => {
                    if progress.failing.insert(namespace.clone()) {
                        tracing::warn!(%namespace, %error, "sweeping expired token bindings failed; retried at each sweep");
                    }
                    report.failed.push(namespace.clone());
                }
            }
        }
        self.state
            .exchange
            .metrics()
            .revoked(RevokedVia::Expired, report.deleted);
        if report.deleted > 0 {
            tracing::info!(deleted = report.deleted, "expired token bindings deleted");
        }
        report
    }

    /// Sweeps every [`SWEEP_INTERVAL`] (jittered) until aborted.
    pub async fn run(self: std::sync::Arc<Self>) {
        loop {
            tokio::time::sleep(jittered(SWEEP_INTERVAL)).await;
            self.sweep_once(Timestamp::now()).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The buckets a sweep at `now` deletes, oldest first: each that ended at least
/// [`CLOCK_MARGIN`] ago, after `swept_through` (or within [`FIRST_LOOKBACK`] before the first
/// sweep, and never further back than that).
fn buckets_to_sweep(swept_through: Option<i64>, now: i64) -> Vec<i64> {
    let newest = (now - secs(CLOCK_MARGIN)).div_euclid(BUCKET_SECONDS) * BUCKET_SECONDS;
    let oldest_allowed = newest - secs(FIRST_LOOKBACK) + BUCKET_SECONDS;
    let first = swept_through.map_or(oldest_allowed, |through| {
        (through + BUCKET_SECONDS).max(oldest_allowed)
    });
    (0..)
        .map(|i| first + i * BUCKET_SECONDS)
        .take_while(|bucket| *bucket <= newest)
        .collect()
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// `interval` plus or minus up to [`SWEEP_JITTER`], at random.
fn jittered(interval: Duration) -> Duration {
    let random = u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    );
    let span = SWEEP_JITTER.as_millis() as u64 * 2;
    let offset = Duration::from_millis(random % (span + 1));
    (interval + offset).saturating_sub(SWEEP_JITTER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::binding::expiry_bucket;

    #[test]
    fn a_sweep_names_only_buckets_that_ended_a_margin_ago() {
        // A token expiring at 10_001 is in bucket 10_200: not swept before 10_200 + margin.
        let bucket = expiry_bucket(10_001);
        assert_eq!(bucket, 10_200);
        let at = |now: i64| buckets_to_sweep(Some(9_600), now);
        assert_eq!(at(bucket + secs(CLOCK_MARGIN) - 1), Vec::<i64>::new());
        assert_eq!(at(bucket + secs(CLOCK_MARGIN)), vec![bucket]);
        assert_eq!(
            at(bucket + secs(CLOCK_MARGIN) + 1_200),
            vec![10_200, 10_800, 11_400]
        );
    }

    #[test]
    fn the_first_sweep_looks_back_a_day_and_later_ones_continue_where_it_stopped() {
        let now = 1_000_000_i64 * BUCKET_SECONDS;
        let first = buckets_to_sweep(None, now + secs(CLOCK_MARGIN));
        assert_eq!(first.len(), 144);
        assert_eq!(*first.last().unwrap(), now);
        assert_eq!(first[0], now - secs(FIRST_LOOKBACK) + BUCKET_SECONDS);
        assert!(first.windows(2).all(|w| w[1] - w[0] == BUCKET_SECONDS));
        let next = buckets_to_sweep(Some(now), now + secs(CLOCK_MARGIN) + 900);
        assert_eq!(next, vec![now + BUCKET_SECONDS]);
        // After a long outage, no further back than the lookback.
        assert_eq!(buckets_to_sweep(Some(0), now + secs(CLOCK_MARGIN)), first);
    }

    #[test]
    fn the_jitter_stays_within_its_bounds() {
        for _ in 0..100 {
            let wait = jittered(SWEEP_INTERVAL);
            assert!(wait >= SWEEP_INTERVAL - SWEEP_JITTER && wait <= SWEEP_INTERVAL + SWEEP_JITTER);
        }
    }
}
