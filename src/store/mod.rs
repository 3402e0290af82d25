//! The shared store (`store:` in the config): replay records and per-identity rate limits kept
//! in Redis (or Valkey) so that every replica, and every restart, sees the same ones.
//!
//! One multiplexed connection per process (redis-rs's `ConnectionManager`, which reconnects on
//! its own). Every operation is bounded by the configured `timeout`; an operation that fails or
//! times out marks the store down, and while it is down requests do not wait for it at all: a
//! background probe pings it and marks it up again when it answers. The callers decide what a
//! store outage means for them: replay protection fails closed (503), the rate limit falls back
//! to the in-process limiter. The state changes (down, up) are logged once each.
//!
//! What Redis holds is digests, never claim text: a replay record is
//! `tokenvend:replay:<hex SHA-256 of iss, 0, jti>`, a rate bucket
//! `tokenvend:rate:<hex SHA-256 of issuer name, 0, sub>`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};

use crate::metrics::Metrics;

/// The per-operation deadline when the config sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// How often the store is pinged: while down, to notice it is back; while up, so that
/// `store_up` turns 0 without waiting for a request.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// The environment variable that may hold the store's password.
pub const PASSWORD_ENV: &str = "TOKENVEND_STORE_PASSWORD";

const REPLAY_PREFIX: &str = "tokenvend:replay:";
const RATE_PREFIX: &str = "tokenvend:rate:";

/// The token bucket of one identity, run atomically on the server: the same arithmetic as the
/// in-process limiter (`exchange/limits.rs`), with the server's clock, so replicas whose
/// clocks differ still share one budget. `charge(key, rate, burst)` returns 0 when the request
/// is admitted, else the whole seconds (at least 1) until one is. The bucket expires once it
/// would have refilled: a full bucket and no bucket are the same.
macro_rules! charge_function {
    () => {
        r"
local function charge(key, rate, burst)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local tokens = burst
  local state = redis.call('HMGET', key, 't', 'u')
  if state[1] and state[2] then
    local elapsed = math.max(0, now - tonumber(state[2])) / 1000
    tokens = math.min(burst, tonumber(state[1]) + elapsed * rate)
  end
  local ttl = math.min(math.ceil(burst / rate * 1000) + 1000, 1000000000000)
  local admitted = tokens >= 1
  if admitted then
    tokens = tokens - 1
  end
  redis.call('HSET', key, 't', string.format('%.17g', tokens), 'u', string.format('%d', now))
  redis.call('PEXPIRE', key, ttl)
  if admitted then
    return 0
  end
  return math.max(1, math.ceil((1 - tokens) / rate))
end
"
    };
}

/// One request charged to one bucket: KEYS[1] the bucket, ARGV rate and burst.
const RATE_SCRIPT: &str = concat!(
    charge_function!(),
    "return charge(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))\n"
);

/// A replay-protected issuance in one round trip: KEYS[1] the replay record, ARGV[1] when it
/// is forgotten (Unix seconds); with the per-identity limit, KEYS[2] the bucket and ARGV[2],
/// ARGV[3] its rate and burst. A token already recorded is refused before anything is
/// charged (-1); a request over budget reserves nothing (the seconds to wait); else the token
/// is recorded (0).
const ADMIT_SCRIPT: &str = concat!(
    charge_function!(),
    r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return -1
end
if #KEYS > 1 then
  local wait = charge(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]))
  if wait > 0 then
    return wait
  end
end
if redis.call('SET', KEYS[1], '1', 'NX', 'EXAT', ARGV[1]) then
  return 0
end
return -1
"
);

/// How [`Store::admit`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The token is recorded already: nothing was charged.
    Replayed,
    /// Over budget: retry after this many seconds; nothing was recorded.
    Limited(u64),
    /// Charged (if a bucket was given) and recorded.
    Admitted,
}

/// The `store:` block, validated (the password itself is read when the service starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// `redis://` or `rediss://`, without a password.
    pub url: String,
    /// A file holding the password (one trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// Extra trust roots (PEM) for `rediss://` with a private CA.
    pub ca_file: Option<PathBuf>,
    /// The deadline of one store operation.
    pub timeout: Duration,
}

/// Checks a store URL: `redis://` or `rediss://` with a host, no password, no query or
/// fragment (redis-rs reads `#insecure` as "do not verify the certificate"). Messages never
/// repeat the URL: it could hold a password.
pub fn check_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!(
            "scheme {:?} is not supported; use redis:// or rediss://",
            url.scheme()
        ));
    }
    if url.password().is_some() {
        return Err(
            "a password in the URL is refused (it would end up wherever the config goes); \
             use store.passwordFile or TOKENVEND_STORE_PASSWORD"
                .to_owned(),
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL names no host".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL must not carry a query or fragment".to_owned());
    }
    let path = url.path().trim_start_matches('/');
    if !path.is_empty() && path.parse::<u16>().is_err() {
        return Err("the path is a database number (e.g. /0) or nothing".to_owned());
    }
    Ok(())
}

/// The password: from `store.passwordFile` (one trailing newline ignored), else from the
/// environment variable `env` holds, else none.
///
/// # Errors
/// The file cannot be read, or both sources are set. Messages name the key, never the password.
pub fn read_password(
    settings: &StoreSettings,
    env: Option<String>,
) -> anyhow::Result<Option<SecretString>> {
    let text = match (&settings.password_file, env) {
        (Some(_), Some(_)) => {
            anyhow::bail!("store.passwordFile and {PASSWORD_ENV} are both set; use one of them")
        }
        (Some(path), None) => std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("store.passwordFile: cannot read {}: {e}", path.display())
        })?,
        (None, Some(text)) => text,
        (None, None) => return Ok(None),
    };
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        anyhow::bail!("store.passwordFile / {PASSWORD_ENV}: the password is empty");
    }
    Ok(Some(SecretString::from(text.to_owned())))
}

/// One store operation: the `operation` label of the store metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Is this token recorded? (verification of dry runs and listings)
    ReplayCheck,
    /// Record this token, if nobody has (set-if-absent); on the issuance path, the one script
    /// that also checks the record and charges the identity's bucket.
    ReplayReserve,
    /// Forget a reservation whose mint failed.
    ReplayRelease,
    /// Charge one request to an identity's bucket.
    RateLimit,
    /// The probe.
    Ping,
}

impl Operation {
    pub const ALL: [Self; 5] = [
        Self::ReplayCheck,
        Self::ReplayReserve,
        Self::ReplayRelease,
        Self::RateLimit,
        Self::Ping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReplayCheck => "replay_check",
            Self::ReplayReserve => "replay_reserve",
            Self::ReplayRelease => "replay_release",
            Self::RateLimit => "rate_limit",
            Self::Ping => "ping",
        }
    }
}

/// How one operation ended: the `result` label of `store_operations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpResult {
    Ok,
    /// The store answered with an error, or the connection failed.
    Error,
    /// No answer within `timeout`.
    Timeout,
    /// Not sent: the store is down (until the probe sees it answer).
    Skipped,
}

impl OpResult {
    pub const ALL: [Self; 4] = [Self::Ok, Self::Error, Self::Timeout, Self::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Skipped => "skipped",
        }
    }
}

/// The store could not answer (down, failed, or slower than `timeout`): nothing is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the shared store is unavailable")]
pub struct StoreUnavailable;

/// A connection to the shared store, with its up/down state.
pub struct Store {
    settings: StoreSettings,
    connection: ConnectionManager,
    timeout: Duration,
    up: AtomicBool,
    metrics: Arc<Metrics>,
    rate_script: redis::Script,
    admit_script: redis::Script,
    probe: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("timeout", &self.timeout)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects (within a few timeouts) and starts the probe. A store that does not answer
    /// yet is not an error: the service starts with the store down and the probe keeps
    /// trying. A store that refuses the password is: the config is wrong.
    ///
    /// # Errors
    /// The URL or CA file is unusable, or the store refused the password.
    pub async fn connect(
        settings: &StoreSettings,
        password: Option<SecretString>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(settings.url.as_str())
            .map_err(|e| anyhow::anyhow!("store.url: {}", describe(&e)))?;
        if let Some(password) = &password {
            let redis = info
                .redis_settings()
                .clone()
                .set_password(password.expose_secret());
            info = info.set_redis_settings(redis);
        }
        let client = match &settings.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("store.caFile: cannot read {}: {e}", path.display())
                })?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
                .map_err(|e| anyhow::anyhow!("store.caFile: {}", describe(&e)))?
            }
            None => redis::Client::open(info)
                .map_err(|e| anyhow::anyhow!("store.url: {}", describe(&e)))?,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(PROBE_INTERVAL);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| anyhow::anyhow!("store.url: {}", describe(&e)))?;
        metrics.enable_store(
            Operation::ALL.map(Operation::as_str),
            OpResult::ALL.map(OpResult::as_str),
        );
        let store = Arc::new(Self {
            settings: settings.clone(),
            connection,
            timeout: settings.timeout,
            up: AtomicBool::new(false),
            metrics,
            rate_script: redis::Script::new(RATE_SCRIPT),
            admit_script: redis::Script::new(ADMIT_SCRIPT),
            probe: std::sync::Mutex::new(None),
        });
        // The first contact: a refused password stops the start; no answer does not.
        let started = Instant::now();
        let mut connection = store.connection.clone();
        let first = tokio::time::timeout(
            settings.timeout.max(Duration::from_secs(2)),
            redis::cmd("PING").query_async::<()>(&mut connection),
        )
        .await;
        match first {
            Ok(Ok(())) => {
                store.record(Operation::Ping, OpResult::Ok, started);
                store.up.store(true, Ordering::SeqCst);
                store.metrics.store_up(true);
                tracing::info!("shared store reachable");
            }
            Ok(Err(error)) if is_auth_error(&error) => {
                anyhow::bail!(
                    "store: the store refused the credentials (store.passwordFile or {PASSWORD_ENV}): {}",
                    describe(&error)
                );
            }
            Ok(Err(error)) => {
                store.record(Operation::Ping, OpResult::Error, started);
                store.metrics.store_up(false);
                tracing::warn!(error = %describe(&error), "shared store unreachable at start; replay-protected issuers answer 503 until it answers");
            }
            Err(_) => {
                store.record(Operation::Ping, OpResult::Timeout, started);
                store.metrics.store_up(false);
                tracing::warn!(
                    "shared store did not answer at start; replay-protected issuers answer 503 until it answers"
                );
            }
        }
        let probe = tokio::spawn(probe(Arc::downgrade(&store)));
        *store
            .probe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(probe);
        Ok(store)
    }

    /// Whether the last operation (or probe) got an answer in time.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// The deadline of one operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The settings it was started with (a reload does not change them).
    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// Whether the token with this replay digest is recorded.
    ///
    /// # Errors
    /// The store is down or did not answer in time.
    pub async fn replay_recorded(&self, digest: &[u8; 32]) -> Result<bool, StoreUnavailable> {
        let key = key(REPLAY_PREFIX, digest);
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(&key);
        let count: u64 = self.run(Operation::ReplayCheck, &cmd).await?;
        Ok(count > 0)
    }

    /// Forgets a reservation (its mint failed: the caller may retry).
    ///
    /// # Errors
    /// The store is down or did not answer in time; the token then stays spent.
    pub async fn replay_release(&self, digest: &[u8; 32]) -> Result<(), StoreUnavailable> {
        let key = key(REPLAY_PREFIX, digest);
        let mut cmd = redis::cmd("DEL");
        cmd.arg(&key);
        let _: u64 = self.run(Operation::ReplayRelease, &cmd).await?;
        Ok(())
    }

    /// Charges one request to the bucket with this identity digest: `Ok(None)` admitted,
    /// `Ok(Some(seconds))` refused until then.
    ///
    /// # Errors
    /// The store is down or did not answer in time.
    pub async fn rate_admit(
        &self,
        digest: &[u8; 32],
        rate: f64,
        burst: u32,
    ) -> Result<Option<u64>, StoreUnavailable> {
        if !self.is_up() {
            self.record(Operation::RateLimit, OpResult::Skipped, Instant::now());
            return Err(StoreUnavailable);
        }
        let started = Instant::now();
        let mut invocation = self.rate_script.key(key(RATE_PREFIX, digest));
        invocation.arg(rate).arg(burst);
        let mut connection = self.connection.clone();
        let answer = tokio::time::timeout(
            self.timeout,
            invocation.invoke_async::<u64>(&mut connection),
        )
        .await;
        let wait = self.finish(Operation::RateLimit, started, answer)?;
        Ok((wait > 0).then_some(wait))
    }

    /// A replay-protected issuance in one round trip: refuses the token with this replay
    /// digest if it is recorded; else charges one request to `bucket` (identity digest, rate,
    /// burst), if given, and refuses it over budget; else records the token until
    /// `forget_at` (Unix seconds). Counted as a `replay_reserve` operation.
    ///
    /// # Errors
    /// The store is down or did not answer in time; the record may have landed all the same,
    /// and then the token stays spent (fail closed).
    pub async fn admit(
        &self,
        digest: &[u8; 32],
        forget_at: u64,
        bucket: Option<(&[u8; 32], f64, u32)>,
    ) -> Result<Admission, StoreUnavailable> {
        if !self.is_up() {
            self.record(Operation::ReplayReserve, OpResult::Skipped, Instant::now());
            return Err(StoreUnavailable);
        }
        let started = Instant::now();
        let mut invocation = self.admit_script.key(key(REPLAY_PREFIX, digest));
        invocation.arg(forget_at);
        if let Some((identity, rate, burst)) = bucket {
            invocation
                .key(key(RATE_PREFIX, identity))
                .arg(rate)
                .arg(burst);
        }
        let mut connection = self.connection.clone();
        let answer = tokio::time::timeout(
            self.timeout,
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await;
        let answer = self.finish(Operation::ReplayReserve, started, answer)?;
        Ok(match u64::try_from(answer) {
            Ok(0) => Admission::Admitted,
            Ok(wait) => Admission::Limited(wait),
            Err(_) => Admission::Replayed,
        })
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        operation: Operation,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreUnavailable> {
        if !self.is_up() {
            self.record(operation, OpResult::Skipped, Instant::now());
            return Err(StoreUnavailable);
        }
        let started = Instant::now();
        let mut connection = self.connection.clone();
        let answer =
            tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut connection)).await;
        self.finish(operation, started, answer)
    }

    /// Counts the operation, marks the store up or down, and turns the answer into a value.
    fn finish<T>(
        &self,
        operation: Operation,
        started: Instant,
        answer: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, StoreUnavailable> {
        match answer {
            Ok(Ok(value)) => {
                self.record(operation, OpResult::Ok, started);
                self.mark(true, None);
                Ok(value)
            }
            // The connection's own response timeout (the same length) may fire first.
            Ok(Err(error)) if error.is_timeout() => {
                self.record(operation, OpResult::Timeout, started);
                self.mark(false, Some("no answer within store.timeout"));
                Err(StoreUnavailable)
            }
            Ok(Err(error)) => {
                self.record(operation, OpResult::Error, started);
                self.mark(false, Some(&describe(&error)));
                Err(StoreUnavailable)
            }
            Err(_) => {
                self.record(operation, OpResult::Timeout, started);
                self.mark(false, Some("no answer within store.timeout"));
                Err(StoreUnavailable)
            }
        }
    }

    fn record(&self, operation: Operation, result: OpResult, started: Instant) {
        self.metrics.store_operation(
            operation.as_str(),
            result.as_str(),
            (result != OpResult::Skipped).then(|| started.elapsed().as_secs_f64()),
        );
    }

    /// One log line per change of state, never one per request.
    fn mark(&self, up: bool, why: Option<&str>) {
        if self.up.swap(up, Ordering::SeqCst) == up {
            return;
        }
        self.metrics.store_up(up);
        if up {
            tracing::info!(
                "shared store reachable again; replay-protected issuers answer again, rate limits are shared again"
            );
        } else {
            tracing::error!(
                reason = why.unwrap_or("unknown"),
                "shared store down: replay-protected issuers answer 503, rate limits fall back to this replica's own"
            );
        }
    }

    async fn ping(&self) {
        let started = Instant::now();
        let mut connection = self.connection.clone();
        let answer = tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<()>(&mut connection),
        )
        .await;
        let _ = self.finish(Operation::Ping, started, answer);
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(probe) = self
            .probe
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            probe.abort();
        }
    }
}

/// Pings the store every [`PROBE_INTERVAL`] while it exists.
async fn probe(store: Weak<Store>) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(store) = store.upgrade() else {
            return;
        };
        store.ping().await;
    }
}

/// What went wrong, for a log line: the library's text (a kind and the server's message; the
/// connection settings, and so the password, are not part of it).
fn describe(error: &redis::RedisError) -> String {
    error.to_string()
}

fn is_auth_error(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// SHA-256 of `a`, a zero byte and `b`: fixed size, no claim text.
pub fn digest(a: &str, b: &str) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(a.as_bytes());
    context.update(&[0]);
    context.update(b.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

fn key(prefix: &str, digest: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    let mut key = String::with_capacity(prefix.len() + 64);
    key.push_str(prefix);
    for byte in digest {
        let _ = write!(key, "{byte:02x}");
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redis_or_rediss_without_a_password() {
        assert!(check_url("redis://tokenvend-store:6379/0").is_ok());
        assert!(check_url("rediss://store.example:6380").is_ok());
        assert!(
            check_url("redis://tokenvend@store:6379").is_ok(),
            "an ACL user name is fine"
        );
        let error = check_url("redis://:hunter2@store:6379").unwrap_err();
        assert!(error.contains("password"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        assert!(
            check_url("http://store:6379")
                .unwrap_err()
                .contains("scheme")
        );
        assert!(check_url("redis+unix:///tmp/redis.sock").is_err());
        assert!(check_url("rediss://store:6380/#insecure").is_err());
        assert!(check_url("redis://store:6379/x").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn keys_are_digests_not_claim_text() {
        let key = key(REPLAY_PREFIX, &digest("https://issuer", "jti-1"));
        assert!(key.starts_with("tokenvend:replay:"));
        assert_eq!(key.len(), REPLAY_PREFIX.len() + 64);
        assert!(!key.contains("jti-1"));
        assert_ne!(digest("a", "bc"), digest("ab", "c"));
    }

    #[test]
    fn the_password_file_loses_one_trailing_newline_only() {
        let dir = std::env::temp_dir().join(format!("tokenvend-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret \n").unwrap();
        let settings = StoreSettings {
            url: "redis://127.0.0.1:6379".into(),
            password_file: Some(file),
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
        };
        let password = read_password(&settings, None).unwrap().unwrap();
        assert_eq!(password.expose_secret(), "s3cret ");
        assert!(read_password(&settings, Some("x".into())).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        let error = read_password(&settings, None).unwrap_err().to_string();
        assert!(
            error.starts_with("store.passwordFile: cannot read"),
            "{error}"
        );
        let from_env = StoreSettings {
            password_file: None,
            ..settings
        };
        let password = read_password(&from_env, Some("abc\n".into()))
            .unwrap()
            .unwrap();
        assert_eq!(password.expose_secret(), "abc");
        assert!(read_password(&from_env, None).unwrap().is_none());
    }
}
