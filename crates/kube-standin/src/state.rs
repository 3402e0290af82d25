//! The state every handler of the stand-in shares: its flags, signing key, objects, users,
//! RBAC rules, injected faults and counters.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::jiff::Timestamp;

use super::claims::Authenticated;
use super::cluster::Cluster;
use super::counts::RequestCounts;
use super::faults::Faults;
use super::options::SeedUser;
use super::rbac::{self, RbacRule};
use super::request_info::RequestInfo;
use super::status::Status;
use super::user::UserInfo;
use dev_pki::keys::SigningKey;

pub struct ApiState {
    /// `--service-account-issuer`.
    pub issuer: String,
    /// `--api-audiences`, already defaulted to `[issuer]`.
    pub api_audiences: Vec<String>,
    pub max_token_expiration: Option<u64>,
    /// `https://host:port`: the external address, for `jwks_uri`.
    pub url: String,
    pub key: SigningKey,
    /// The objects; Secrets change through create and delete, everything else is as seeded.
    pub cluster: RwLock<Cluster>,
    pub users: Vec<SeedUser>,
    pub rbac: RwLock<Vec<RbacRule>>,
    pub faults: Faults,
    pub token_requests: AtomicU64,
    /// Secret creates, deletes and deletecollections that arrived, whatever their outcome.
    pub secret_writes: AtomicU64,
    /// kube-apiserver's cache of successful token authentications.
    pub token_cache: TokenCache,
    /// Every request served, by verb, resource and code: what `/metrics` reports.
    pub requests: RequestCounts,
    pub list_page_size_default: Option<usize>,
}

impl ApiState {
    /// The objects, for reading. Never held across an `await`.
    pub fn cluster(&self) -> RwLockReadGuard<'_, Cluster> {
        self.cluster.read().expect("cluster lock")
    }

    /// The objects, for a write. Never held across an `await`.
    pub fn cluster_mut(&self) -> RwLockWriteGuard<'_, Cluster> {
        self.cluster.write().expect("cluster lock")
    }

    /// Seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    }

    /// Authorizes `request` for `user` with the built-in grants and the current RBAC rules.
    pub fn authorize(&self, user: &UserInfo, request: &RequestInfo) -> Result<(), Status> {
        let rules = self.rbac.read().expect("rbac lock");
        rbac::authorize(&rules, user, request)
    }
}

/// The token success cache of kube-apiserver's authenticator chain (`tokencache` around the
/// union of token authenticators): a successful authentication of a token for a set of
/// audiences is reused, without validating the token again, until the TTL has passed since it
/// was made. Failures are not cached (`--token-failure-cache-ttl` defaults to 0).
#[derive(Debug)]
pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<CacheKey, (Instant, Authenticated)>>,
}

/// A token and the audiences it was authenticated for.
type CacheKey = (String, Vec<String>);

impl TokenCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A success for `token` and `audiences` younger than the TTL.
    pub fn get(&self, token: &str, audiences: &[String]) -> Option<Authenticated> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().expect("token cache lock");
        let (at, authenticated) = entries.get(&(token.to_owned(), audiences.to_vec()))?;
        (at.elapsed() < self.ttl).then(|| authenticated.clone())
    }

    /// Records a success; drops the entries that have expired.
    pub fn put(&self, token: &str, audiences: &[String], authenticated: &Authenticated) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().expect("token cache lock");
        entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        entries.insert(
            (token.to_owned(), audiences.to_vec()),
            (Instant::now(), authenticated.clone()),
        );
    }
}

/// `metav1.Time` as JSON: RFC 3339, UTC, whole seconds.
pub fn rfc3339(unix_seconds: u64) -> String {
    let seconds = i64::try_from(unix_seconds).unwrap_or(i64::MAX);
    let timestamp = Timestamp::from_second(seconds).unwrap_or(Timestamp::MAX);
    timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_at_second_precision() {
        assert_eq!(rfc3339(1_784_887_200), "2026-07-24T10:00:00Z");
    }
}
