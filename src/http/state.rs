//! What the routers' handlers share: the exchange (with the config in force), where
//! kubeconfig outputs point, and what readiness reports. Built once by `service`, which
//! also swaps the exchange's config on reload and marks the start of shutdown.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::exchange::Exchange;
use crate::k8s::{ApiContact, KubeconfigCluster};

/// What handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`].
pub struct Shared {
    pub exchange: Exchange,
    /// Whether the Kubernetes API answered lately, for readiness.
    pub api_contact: Arc<ApiContact>,
    /// Where kubeconfig outputs point.
    pub kubeconfig_cluster: KubeconfigCluster,
    shutting_down: AtomicBool,
}

impl AppState {
    pub fn new(
        exchange: Exchange,
        api_contact: Arc<ApiContact>,
        kubeconfig_cluster: KubeconfigCluster,
    ) -> Self {
        Self(Arc::new(Shared {
            exchange,
            api_contact,
            kubeconfig_cluster,
            shutting_down: AtomicBool::new(false),
        }))
    }
}

impl Shared {
    /// Marks the start of shutdown: readiness turns 503.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
