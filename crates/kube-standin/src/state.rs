//! The state every handler of the stand-in shares: its flags, signing key, objects, users,
//! RBAC rules, injected faults and counters.

use std::sync::RwLock;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::jiff::Timestamp;

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
    pub cluster: Cluster,
    pub users: Vec<SeedUser>,
    pub rbac: RwLock<Vec<RbacRule>>,
    pub faults: Faults,
    pub token_requests: AtomicU64,
    /// Every request served, by verb, resource and code: what `/metrics` reports.
    pub requests: RequestCounts,
    pub list_page_size_default: Option<usize>,
}

impl ApiState {
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
