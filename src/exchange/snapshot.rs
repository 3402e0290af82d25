//! The config in force for the exchange: one verifier and one policy set, swapped whole on
//! reload.

use std::sync::Arc;

use crate::oidc::Verifier;
use crate::policy::PolicySet;

/// The parts of the config in force, swapped whole on reload: a request takes one snapshot
/// and uses its verifier and policies together, so it never mixes two configs.
pub struct Snapshot {
    pub verifier: Arc<Verifier>,
    pub policies: Arc<PolicySet>,
    /// The issuers' periodic key refreshes; they stop when the snapshot is dropped.
    _refreshers: KeyRefreshers,
}

impl Snapshot {
    /// Wraps a verifier and policies, starting the verifier's periodic key refreshes.
    pub fn new(verifier: Arc<Verifier>, policies: PolicySet) -> Self {
        let refreshers = KeyRefreshers(
            verifier
                .issuers()
                .map(|issuer| {
                    let issuer = Arc::clone(issuer);
                    tokio::spawn(async move { issuer.keys().refresh_periodically().await })
                })
                .collect(),
        );
        Self {
            verifier,
            policies: Arc::new(policies),
            _refreshers: refreshers,
        }
    }
}

/// Background tasks aborted on drop.
struct KeyRefreshers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for KeyRefreshers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
