//! Wiring: from a loaded config to two bound listeners serving the routers, and the
//! background tasks that keep keys and readiness fresh.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{AppState, admin_router, public_router};
use crate::k8s::{ApiContact, KubeMinter, Minter, probe};
use crate::metrics::Metrics;
use crate::oidc::Verifier;
use crate::server::{self, ServerLimits};

/// How often an idle service checks that the Kubernetes API still answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// Where to listen.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub public: SocketAddr,
    pub admin: SocketAddr,
}

/// A service ready to run: listeners bound, keys warmed up.
pub struct Application {
    public: TcpListener,
    admin: TcpListener,
    state: AppState,
    client: kube::Client,
    request_timeout: Duration,
}

impl Application {
    /// Binds the listeners and wires the service to the Kubernetes API described by `kube_config`.
    pub async fn build(
        config: Config,
        listen: Listen,
        kube_config: kube::Config,
    ) -> anyhow::Result<Self> {
        crate::crypto::install_providers()?;
        let metrics = Arc::new(Metrics::new());
        let verifier = Arc::new(Verifier::over_http(&config.issuers, &metrics)?);
        let client = kube::Client::try_from(kube_config)?;
        let contact = Arc::new(ApiContact::default());
        let minter: Arc<dyn Minter> = Arc::new(KubeMinter::new(
            client.clone(),
            config.kubernetes.request_timeout,
            Arc::clone(&metrics),
            Arc::clone(&contact),
        ));
        Self::with_minter(config, listen, verifier, minter, metrics, contact, client).await
    }

    async fn with_minter(
        config: Config,
        listen: Listen,
        verifier: Arc<Verifier>,
        minter: Arc<dyn Minter>,
        metrics: Arc<Metrics>,
        contact: Arc<ApiContact>,
        client: kube::Client,
    ) -> anyhow::Result<Self> {
        let public = TcpListener::bind(listen.public).await?;
        let admin = TcpListener::bind(listen.admin).await?;
        let failed = verifier.warm_up().await;
        if !failed.is_empty() {
            tracing::warn!(issuers = ?failed, "starting without keys for some issuers; their tokens get 503 until keys load");
        }
        probe(&client, &contact, config.kubernetes.request_timeout).await;
        let state = AppState::new(verifier, config.policies, minter, metrics, contact);
        Ok(Self {
            public,
            admin,
            state,
            client,
            request_timeout: config.kubernetes.request_timeout,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` completes; then readiness turns 503, listeners stop accepting,
    /// and in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let background = spawn_background(state.clone(), self.client, self.request_timeout);
        let stopping = async move {
            shutdown.await;
            state.begin_shutdown();
            tracing::info!("shutting down: readiness off, draining requests");
            let _ = stop_tx.send(true);
        };
        tokio::spawn(stopping);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let limits = ServerLimits::default();
        let public = server::serve(
            self.public,
            public_router(self.state.clone()),
            None,
            limits,
            wait(stop_rx.clone()),
        );
        let admin = server::serve(
            self.admin,
            admin_router(Arc::clone(&self.state.metrics)),
            None,
            limits,
            wait(stop_rx),
        );
        let result = tokio::try_join!(public, admin);
        for task in background {
            task.abort();
        }
        result.map(drop).map_err(Into::into)
    }
}

/// Background work: a Kubernetes API probe when the service is idle, and each issuer's
/// periodic key refresh. Aborted at shutdown.
fn spawn_background(
    state: AppState,
    client: kube::Client,
    timeout: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks: Vec<_> = state
        .verifier
        .issuers()
        .map(|issuer| {
            let issuer = Arc::clone(issuer);
            tokio::spawn(async move { issuer.keys().refresh_periodically().await })
        })
        .collect();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        loop {
            tick.tick().await;
            if state.api_contact.is_stale(PROBE_INTERVAL) {
                probe(&client, &state.api_contact, timeout).await;
            }
        }
    }));
    tasks
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
