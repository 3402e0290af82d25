//! Wiring: from a loaded config to two bound listeners serving the routers, and the
//! background tasks that keep keys, readiness and the TLS certificate fresh.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use super::reload::{self, ConfigWatch};
use super::sweep::Sweeper;
use super::tls::{ReloadingCert, TlsFiles};
use crate::config::{Config, KubernetesSettings};
use crate::exchange::{Exchange, LimitSettings, Limits, Snapshot};
use crate::http::{AppState, admin_router, public_router};
use crate::k8s::{ApiContact, Bindings, KubeMinter, KubeconfigCluster, Minter, probe};
use crate::metrics::Metrics;
use crate::oidc::{ReplayRecords, Verifier};
use crate::store::Store;
use serving::ServerLimits;

/// How often an idle service checks that the Kubernetes API still answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// Where to listen.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub public: SocketAddr,
    pub admin: SocketAddr,
}

/// How long in-flight requests get to finish at shutdown unless told otherwise: with the
/// deployment's 5 s preStop pause it fits Kubernetes' default 30 s termination grace period.
pub const DEFAULT_SHUTDOWN_GRACE_PERIOD: Duration = Duration::from_secs(20);

/// How the service runs, beyond what the config file says (the `serve` flags).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Serve the public listener over TLS with this certificate and key, re-read when they
    /// change; `None`: plain HTTP (TLS terminated in front of the service).
    pub tls: Option<TlsFiles>,
    /// How often the TLS files are checked for changes.
    pub tls_poll_interval: Duration,
    pub limits: LimitSettings,
    /// At shutdown, in-flight requests get this long to finish.
    pub shutdown_grace_period: Duration,
    /// Replay records one granting policy may hold per issuer (tests shorten it).
    pub replay_share: usize,
    /// The namespace tokenvend runs in: protected like `kubernetes.protectedNamespaces`, so
    /// that no templated grant renders into it. `None`: not known (outside a cluster).
    pub own_namespace: Option<String>,
    /// This process's pod name (`POD_NAME`, else `HOSTNAME`), to tell whether it is likely one
    /// of several replicas; `None`: not known.
    pub pod_name: Option<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            tls: None,
            tls_poll_interval: super::tls::DEFAULT_POLL_INTERVAL,
            limits: LimitSettings::default(),
            shutdown_grace_period: DEFAULT_SHUTDOWN_GRACE_PERIOD,
            replay_share: crate::oidc::DEFAULT_SHARE,
            own_namespace: None,
            pod_name: None,
        }
    }
}

/// A service ready to run: listeners bound, keys warmed up.
pub struct Application {
    public: TcpListener,
    admin: TcpListener,
    state: AppState,
    sweeper: Arc<Sweeper>,
    client: kube::Client,
    /// The `kubernetes:` block in force (not reloadable).
    kubernetes: KubernetesSettings,
    /// The config file to reload, and how often to look at it.
    watch: Option<ConfigWatch>,
    /// The team files in force at start: the first reload's last good versions.
    team_files: Vec<crate::config::TeamFile>,
    tls: Option<PublicTls>,
    options: ServeOptions,
}

/// TLS on the public listener: the certificate source (watched while serving) and the
/// acceptor that asks it on every handshake.
struct PublicTls {
    cert: Arc<ReloadingCert>,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Application {
    /// Binds the listeners and wires the service to the Kubernetes API described by
    /// `kube_config`, with the default [`ServeOptions`].
    ///
    /// # Errors
    /// As [`Application::build_with`].
    pub async fn build(
        config: Config,
        listen: Listen,
        kube_config: kube::Config,
    ) -> anyhow::Result<Self> {
        Self::build_with(config, listen, kube_config, ServeOptions::default()).await
    }

    /// Binds the listeners and wires the service to the Kubernetes API described by
    /// `kube_config`.
    ///
    /// # Errors
    /// A listener cannot be bound, an issuer or the kube client cannot be set up,
    /// `kubernetes.kubeconfigCAFile` cannot be read, or the TLS files cannot be loaded.
    pub async fn build_with(
        mut config: Config,
        listen: Listen,
        kube_config: kube::Config,
        options: ServeOptions,
    ) -> anyhow::Result<Self> {
        serving::crypto::install_providers()?;
        config.protect_own_namespace(options.own_namespace.as_deref());
        let tls = options.tls.clone().map(public_tls).transpose()?;
        let metrics = Arc::new(Metrics::new());
        let store = match &config.store {
            Some(settings) => {
                let password = crate::store::read_password(
                    settings,
                    std::env::var(crate::store::PASSWORD_ENV).ok(),
                )?;
                Some(Store::connect(settings, password, Arc::clone(&metrics)).await?)
            }
            None => {
                warn_if_one_of_several(&config, options.pod_name.as_deref());
                None
            }
        };
        let verifier = Arc::new(Verifier::over_http(
            &config.issuers,
            &metrics,
            ReplayRecords::with_share(options.replay_share).with_store(store.clone()),
        )?);
        let kubeconfig_cluster = kubeconfig_cluster(&config.kubernetes, &kube_config)?;
        let client = kube::Client::try_from(kube_config)?;
        let contact = Arc::new(ApiContact::default());
        let kube_minter = KubeMinter::new(
            client.clone(),
            config.kubernetes.request_timeout,
            Arc::clone(&metrics),
            Arc::clone(&contact),
        );
        let bindings: Arc<dyn Bindings> = Arc::new(kube_minter.bindings().clone());
        let minter: Arc<dyn Minter> = Arc::new(kube_minter);
        let public = TcpListener::bind(listen.public).await?;
        let admin = TcpListener::bind(listen.admin).await?;
        let failed = verifier.warm_up().await;
        if !failed.is_empty() {
            tracing::warn!(issuers = ?failed, "starting without keys for some issuers; their tokens get 503 until keys load");
        }
        probe(&client, &contact, config.kubernetes.request_timeout).await;
        metrics.config_loaded();
        super::reload::report_teams(&metrics, &config);
        metrics.export_config_series(
            config.issuers.iter().map(|issuer| issuer.name.as_str()),
            config.policies.iter().map(|policy| policy.name.as_str()),
        );
        let snapshot = Snapshot::new(verifier, config.policies);
        let limits = Limits::new(options.limits).with_store(store);
        let exchange = Exchange::new(snapshot, minter, bindings, metrics, limits);
        let state = AppState::new(exchange, contact, kubeconfig_cluster);
        Ok(Self {
            public,
            admin,
            sweeper: Arc::new(Sweeper::new(state.clone())),
            state,
            client,
            kubernetes: config.kubernetes,
            watch: None,
            team_files: config.team_files,
            tls,
            options,
        })
    }

    /// Reloads the config from `path` when it changes (checked every `poll_interval`) and on
    /// SIGHUP, while running.
    #[must_use]
    pub fn watch_config(mut self, path: PathBuf, poll_interval: Duration) -> Self {
        self.watch = Some(ConfigWatch::new(path, poll_interval));
        self
    }

    /// The sweeper of expired token bindings, which [`Application::run_until`] runs every
    /// few minutes (tests call [`Sweeper::sweep_once`] with a clock of their own).
    pub fn sweeper(&self) -> Arc<Sweeper> {
        Arc::clone(&self.sweeper)
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

    /// Serves until `shutdown` completes; then readiness turns 503, listeners stop accepting
    /// (new connections are refused), and in-flight requests get the shutdown grace period
    /// to finish.
    ///
    /// # Errors
    /// A listener fails.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut background =
            spawn_background(state.clone(), self.client, self.kubernetes.request_timeout);
        background.push(tokio::spawn(Arc::clone(&self.sweeper).run()));
        if let Some(watch) = self.watch {
            let watching = reload::watch(
                state.clone(),
                watch,
                self.kubernetes,
                self.options.own_namespace.clone(),
                self.team_files,
            );
            background.push(tokio::spawn(watching));
        }
        let acceptor = self.tls.map(|tls| {
            let watch = tls.cert.watch(self.options.tls_poll_interval);
            background.push(tokio::spawn(watch));
            tls.acceptor
        });
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
        let limits = ServerLimits {
            max_connections_per_peer: self.options.limits.max_connections_per_peer,
            drain_timeout: self.options.shutdown_grace_period,
            ..ServerLimits::default()
        };
        let public = serving::serve(
            self.public,
            public_router(self.state.clone()),
            acceptor,
            limits,
            wait(stop_rx.clone()),
        );
        let admin = serving::serve(
            self.admin,
            admin_router(Arc::clone(self.state.exchange.metrics())),
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

/// Background work: a Kubernetes API probe when the service is idle (each config snapshot
/// runs its issuers' key refreshes itself). Aborted at shutdown, like the sweeper.
fn spawn_background(
    state: AppState,
    client: kube::Client,
    timeout: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
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

/// Without a store, replay protection and rate limits hold per process. When this process
/// looks like one pod of a Deployment or ReplicaSet (its name ends in `-<hash>-<5 chars>`, the
/// shape Kubernetes gives them), say so once at start. It cannot tell how many replicas there
/// are (one, scaled later, or an autoscaler's minimum), and a StatefulSet's or a bare pod's
/// name has another shape: the README states the rule instead.
fn warn_if_one_of_several(config: &Config, pod_name: Option<&str>) {
    let protected: Vec<&str> = config
        .issuers
        .iter()
        .filter(|issuer| issuer.replay_protection)
        .map(|issuer| issuer.name.as_str())
        .collect();
    if protected.is_empty() || !pod_name.is_some_and(looks_like_a_replica) {
        return;
    }
    tracing::warn!(
        issuers = ?protected,
        "replay protection without `store:` holds per replica: with several replicas an ID token can be exchanged once per replica and again after a restart, and each replica has its own rate budget; configure `store:` (README, \"More than one replica\")"
    );
}

/// Whether `name` has the shape of a pod made by a ReplicaSet: `<deployment>-<pod-template-hash>-<5>`,
/// the hash and suffix drawn from Kubernetes' safe alphabet (no vowels, no 0, 1, 3).
fn looks_like_a_replica(name: &str) -> bool {
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut parts = name.rsplitn(3, '-');
    let (Some(suffix), Some(hash), Some(base)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let safe = |s: &str| s.bytes().all(|b| SAFE.contains(&b));
    !base.is_empty()
        && suffix.len() == 5
        && safe(suffix)
        && (6..=10).contains(&hash.len())
        && safe(hash)
}

/// Loads the certificate and key and builds the acceptor that serves them.
fn public_tls(files: TlsFiles) -> anyhow::Result<PublicTls> {
    let cert = ReloadingCert::load(files).context("--tls-cert/--tls-key")?;
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config()?);
    Ok(PublicTls { cert, acceptor })
}

/// Where kubeconfig outputs point: the configured server and CA file, else the service's own
/// Kubernetes client settings (its cluster URL and trust roots).
fn kubeconfig_cluster(
    settings: &KubernetesSettings,
    kube_config: &kube::Config,
) -> anyhow::Result<KubeconfigCluster> {
    let server = settings.kubeconfig_server.clone().unwrap_or_else(|| {
        kube_config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_owned()
    });
    let ca_pem = match &settings.kubeconfig_ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("kubernetes.kubeconfigCAFile {}", path.display()))?,
        ),
        None => kube_config.root_cert.as_deref().map(pem_certificates),
    };
    Ok(KubeconfigCluster { server, ca_pem })
}

/// DER certificates as a PEM bundle.
fn pem_certificates(certificates: &[Vec<u8>]) -> String {
    use base64::Engine as _;
    let mut pem = String::new();
    for der in certificates {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

#[cfg(test)]
mod tests {
    #[test]
    fn deployment_pod_names_are_told_apart_from_others() {
        for name in ["tokenvend-7d9f8b6c5d-x2x7q", "tv-5c4d8f9b7-kqz2m"] {
            assert!(super::looks_like_a_replica(name), "{name}");
        }
        for name in [
            "tokenvend-0",
            "tokenvend",
            "laptop",
            "tokenvend-7d9f8b6c5d",
            "tokenvend-aaaaaaaaa-x2x7q",
            "-7d9f8b6c5d-x2x7q",
        ] {
            assert!(!super::looks_like_a_replica(name), "{name}");
        }
    }
}
