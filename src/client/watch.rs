//! `tokenvend token --watch --out FILE`: keeps FILE holding a valid credential for agents that
//! re-read it (Prometheus `credentials_file`, Vector, Grafana Agent).
//!
//! Invariants: FILE exists only while it holds a credential this process obtained and that has
//! not expired (so "the file exists" is an honest readiness signal); it is replaced atomically
//! with mode 0600; a failed refresh never touches a still-valid credential.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;

use super::private_file;

/// When to refresh and how to retry.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Refresh after this fraction of the credential's remaining lifetime (default 0.8).
    pub refresh_fraction: f64,
    /// The first retry delay after a failure; it doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// Refresh and retry delays vary by up to this fraction either way, so that many agents
/// started together do not call the service together.
const JITTER: f64 = 0.1;

/// A rendered credential and when it expires.
pub struct Fresh {
    pub contents: String,
    pub expiration: Timestamp,
}

/// Runs until `shutdown` resolves, obtaining credentials with `obtain`.
///
/// # Errors
/// FILE cannot be removed at start or after its credential expired.
pub async fn run<F, Fut>(
    out: &Path,
    schedule: Schedule,
    mut obtain: F,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Fresh>>,
{
    // A file left by an earlier run was not obtained by this one: it proves nothing.
    private_file::remove(out)?;
    let mut held: Option<Timestamp> = None;
    let mut backoff = Backoff::new(schedule.retry_initial, schedule.retry_max);
    tokio::pin!(shutdown);
    loop {
        let delay = match refresh(out, &mut obtain).await {
            Ok(expiration) => {
                held = Some(expiration);
                backoff.reset();
                refresh_delay(
                    Timestamp::now(),
                    expiration,
                    schedule.refresh_fraction,
                    jitter(),
                )
            }
            Err(error) => {
                let retry = backoff.next(jitter());
                tracing::warn!(
                    error = format!("{error:#}"),
                    retry_in_secs = retry.as_secs_f64(),
                    "refresh failed"
                );
                retry
            }
        };
        let delay = until_expiry(out, &mut held, delay)?;
        tokio::select! {
            () = &mut shutdown => {
                tracing::info!("stopping");
                return Ok(());
            }
            () = tokio::time::sleep(delay) => {}
        }
    }
}

async fn refresh<F, Fut>(out: &Path, obtain: &mut F) -> anyhow::Result<Timestamp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Fresh>>,
{
    let fresh = obtain().await?;
    private_file::replace(out, fresh.contents.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
    tracing::info!(file = %out.display(), expires = %fresh.expiration, "credential refreshed");
    Ok(fresh.expiration)
}

/// Removes FILE once its credential has expired; otherwise shortens `delay` so that the
/// next check happens no later than the expiry.
fn until_expiry(
    out: &Path,
    held: &mut Option<Timestamp>,
    delay: Duration,
) -> anyhow::Result<Duration> {
    let Some(expiration) = *held else {
        return Ok(delay);
    };
    let left = Timestamp::now().duration_until(expiration);
    if left.is_negative() || left.is_zero() {
        private_file::remove(out)?;
        *held = None;
        tracing::error!(file = %out.display(), "the credential expired before it could be refreshed; file removed");
        return Ok(delay);
    }
    let left = Duration::try_from(left).unwrap_or(delay);
    Ok(delay.min(left))
}

/// `fraction` of the lifetime left at `now`, varied by `jitter` (in [-1, 1]) times [`JITTER`];
/// at least one second, at most the lifetime.
pub fn refresh_delay(
    now: Timestamp,
    expiration: Timestamp,
    fraction: f64,
    jitter: f64,
) -> Duration {
    let lifetime = Duration::try_from(now.duration_until(expiration)).unwrap_or_default();
    let scaled = lifetime.mul_f64((fraction * (1.0 + JITTER * jitter)).clamp(0.0, 1.0));
    scaled
        .max(Duration::from_secs(1))
        .min(lifetime.max(Duration::from_secs(1)))
}

/// Exponential backoff with jitter.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next attempt (`jitter` in [-1, 1]); doubles each time up to the max.
    pub fn next(&mut self, jitter: f64) -> Duration {
        let delay = self.next.mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0));
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// A uniform value in [-1, 1].
fn jitter() -> f64 {
    let (random, _) = uuid::Uuid::new_v4().as_u64_pair();
    #[allow(
        clippy::cast_precision_loss,
        reason = "53 bits of randomness are plenty"
    )]
    let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
    unit * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_is_due_at_the_fraction_of_the_lifetime_give_or_take_the_jitter() {
        let now = Timestamp::now();
        let expiration = now + Duration::from_secs(1000);
        assert_eq!(
            refresh_delay(now, expiration, 0.8, 0.0),
            Duration::from_secs(800)
        );
        assert_eq!(
            refresh_delay(now, expiration, 0.8, 1.0),
            Duration::from_secs(880)
        );
        assert_eq!(
            refresh_delay(now, expiration, 0.8, -1.0),
            Duration::from_secs(720)
        );
    }

    #[test]
    fn a_refresh_is_never_sooner_than_a_second_nor_after_expiry() {
        let now = Timestamp::now();
        let soon = now + Duration::from_secs(100);
        assert_eq!(
            refresh_delay(now, soon, 0.0001, 0.0),
            Duration::from_secs(1)
        );
        assert_eq!(refresh_delay(now, soon, 5.0, 1.0), Duration::from_secs(100));
        assert_eq!(refresh_delay(now, now, 0.8, 0.0), Duration::from_secs(1));
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_resets_after_success() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<u64> = (0..5).map(|_| backoff.next(0.0).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        backoff.reset();
        assert_eq!(backoff.next(0.0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        for _ in 0..1000 {
            assert!((-1.0..=1.0).contains(&jitter()));
        }
    }
}
