//! Whether the Kubernetes API answered recently, for readiness.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The API counts as reachable if it answered (any HTTP status) this recently and the latest
/// attempt did not fail to connect or time out.
pub const RECENT: Duration = Duration::from_secs(120);

/// The outcome of the latest contact with the API server.
#[derive(Debug, Default)]
pub struct ApiContact {
    latest: Mutex<Option<(Instant, bool)>>,
}

impl ApiContact {
    /// Records an attempt: `answered` is true when the API server sent any HTTP response.
    pub fn record(&self, answered: bool) {
        *self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), answered));
    }

    /// Whether the API answered recently; the reason when it did not.
    pub fn status(&self) -> Result<(), &'static str> {
        match *self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            None => Err("not contacted yet"),
            Some((_, false)) => Err("the latest request got no answer"),
            Some((at, true)) if at.elapsed() > RECENT => Err("no answer recently"),
            Some(_) => Ok(()),
        }
    }

    /// Whether a probe is due (nothing recorded for a while).
    pub fn is_stale(&self, after: Duration) -> bool {
        self.latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none_or(|(at, _)| at.elapsed() >= after)
    }
}

/// Asks the API server for its version: cheap, allowed to every authenticated user.
pub async fn probe(client: &kube::Client, contact: &ApiContact, timeout: Duration) {
    let answered = match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(_)) | Ok(Err(kube::Error::Api(_))) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "Kubernetes API probe failed");
            false
        }
        Err(_) => {
            tracing::warn!("Kubernetes API probe timed out");
            false
        }
    };
    contact.record(answered);
}
