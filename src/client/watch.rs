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
    obtain: F,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Fresh>>,
{
    run_with_clock(out, schedule, Timestamp::now, obtain, shutdown).await
}

/// [`run`], reading the wall clock through `now`: the waits are tokio sleeps, so a test that
/// pauses tokio's clock and derives `now` from it sees expiry, refresh and backoff without
/// waiting for them.
async fn run_with_clock<F, Fut>(
    out: &Path,
    schedule: Schedule,
    now: impl Fn() -> Timestamp,
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
                refresh_delay(now(), expiration, schedule.refresh_fraction, jitter())
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
        let delay = until_expiry(out, &mut held, now(), delay)?;
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
    now: Timestamp,
    delay: Duration,
) -> anyhow::Result<Duration> {
    let Some(expiration) = *held else {
        return Ok(delay);
    };
    let left = now.duration_until(expiration);
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

/// `run` on tokio's paused clock: a `now` that follows it, a scratch directory removed on drop,
/// and the defaults of `tokenvend token`.
#[cfg(test)]
mod run_tests {
    use std::cell::RefCell;
    use std::path::PathBuf;

    use clap::Parser as _;
    use tokio::time::Instant;

    use super::*;

    /// `tokenvend token`'s flags alone, to read their defaults.
    #[derive(clap::Parser)]
    struct TokenCommand {
        #[command(flatten)]
        args: crate::client::TokenArgs,
    }

    fn default_schedule() -> Schedule {
        TokenCommand::try_parse_from(["token", "--server", "https://tokenvend.example.com"])
            .unwrap()
            .args
            .schedule()
    }

    /// A wall clock that moves with tokio's (paused) clock.
    fn paused_clock() -> impl Fn() -> Timestamp {
        let (wall, tokio) = (Timestamp::now(), Instant::now());
        move || wall + tokio.elapsed()
    }

    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            let dir = std::env::temp_dir()
                .join(format!("tokenvend-watch-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn refused() -> anyhow::Result<Fresh> {
        Err(anyhow::anyhow!("the service refused"))
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_after_one_second_doubling_to_a_minute_each_give_or_take_a_tenth()
    {
        let scratch = Scratch::new();
        let out = scratch.0.join("token");
        let attempts = RefCell::new(Vec::new());
        let enough = tokio::sync::Notify::new();
        let obtain = || {
            attempts.borrow_mut().push(Instant::now());
            if attempts.borrow().len() == 13 {
                enough.notify_one();
            }
            async { refused() }
        };
        run_with_clock(
            &out,
            default_schedule(),
            paused_clock(),
            obtain,
            enough.notified(),
        )
        .await
        .unwrap();

        let attempts = attempts.into_inner();
        let waits: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        let nominal = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60].map(Duration::from_secs);
        // Sleeps end on tokio's millisecond ticks.
        let tick = Duration::from_millis(1);
        for (wait, nominal) in waits.iter().zip(nominal) {
            assert!(
                nominal.mul_f64(0.9).saturating_sub(tick) <= *wait
                    && *wait <= nominal.mul_f64(1.1) + tick,
                "waited {wait:?} where {nominal:?} ± 10% was due: {waits:?}"
            );
        }
        assert!(
            waits
                .iter()
                .zip(nominal)
                .any(|(wait, nominal)| wait.abs_diff(nominal) > tick),
            "no jitter: {waits:?}"
        );
        assert!(!out.exists(), "a file without ever obtaining a token");
    }

    #[tokio::test(start_paused = true)]
    async fn the_file_is_removed_once_its_token_expired_and_written_again_after_recovery() {
        let scratch = Scratch::new();
        let out = scratch.0.join("token");
        let started = Instant::now();
        let now = paused_clock();
        let lifetime = Duration::from_secs(100);
        // The service answers at first, is down from then until 150 s, and answers again.
        let attempts = RefCell::new(Vec::new());
        let obtain = || {
            let at = Instant::now() - started;
            attempts.borrow_mut().push(at);
            let answer = if attempts.borrow().len() == 1 || at >= Duration::from_secs(150) {
                Ok(Fresh {
                    contents: format!("token obtained at {at:?}\n"),
                    expiration: now() + lifetime,
                })
            } else {
                refused()
            };
            async { answer }
        };
        let observe = async {
            tokio::time::sleep_until(started + Duration::from_secs(99)).await;
            assert_eq!(
                std::fs::read_to_string(&out).unwrap(),
                "token obtained at 0ns\n",
                "the still-valid token is kept through the failures"
            );
            tokio::time::sleep_until(started + Duration::from_secs(101)).await;
            assert!(!out.exists(), "the file outlived its token");
            tokio::time::sleep_until(started + Duration::from_secs(300)).await;
            let contents = std::fs::read_to_string(&out);
            assert!(
                contents
                    .as_ref()
                    .is_ok_and(|c| c != "token obtained at 0ns\n"),
                "no new token after the service recovered: {contents:?} {attempts:?}"
            );
        };
        run_with_clock(&out, default_schedule(), &now, obtain, observe)
            .await
            .unwrap();

        // The first refresh was due at 80% of the lifetime, give or take a tenth of that.
        let first_refresh = attempts.borrow()[1];
        assert!(
            (Duration::from_secs(72)..=Duration::from_millis(88_001)).contains(&first_refresh),
            "{first_refresh:?}"
        );
    }
}
