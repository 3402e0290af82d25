//! Hot reload: the config file is re-read when its contents change (polled, which also sees
//! Kubernetes ConfigMap updates, whose files change by symlink swap) and on SIGHUP. A valid
//! config is swapped in whole; requests already running finish on the one they started with.
//! An invalid one is refused, logged and counted, and the config in force stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, KubernetesSettings};
use crate::exchange::Snapshot;
use crate::http::AppState;
use crate::oidc::{IssuerSettings, Verifier};

/// Watches `path` and reloads it into `state` until the task is aborted. `loaded` is the file
/// as it was when the config in force was read; `kubernetes` is the block the service was
/// started with (it cannot change without a restart); `own_namespace` is protected in every
/// config it loads.
pub async fn watch(
    state: AppState,
    path: PathBuf,
    poll_interval: Duration,
    loaded: Option<Vec<u8>>,
    kubernetes: KubernetesSettings,
    own_namespace: Option<String>,
) {
    let mut last = loaded;
    let mut hangup = hangup_signal();
    loop {
        let signalled = tokio::select! {
            () = tokio::time::sleep(poll_interval) => false,
            () = next(&mut hangup) => true,
        };
        let current = std::fs::read(&path).ok();
        if !signalled && current == last {
            continue;
        }
        last = current;
        let cause = if signalled { "SIGHUP" } else { "file changed" };
        // The outcome is logged and counted inside.
        let _ = reload(&state, &path, cause, &kubernetes, own_namespace.as_deref()).await;
    }
}

/// Loads `path` and, if it is valid, puts it in force. Issuers are rebuilt (and their keys
/// fetched) only when their settings changed; their replay records carry over by URL.
pub async fn reload(
    state: &AppState,
    path: &Path,
    cause: &str,
    kubernetes: &KubernetesSettings,
    own_namespace: Option<&str>,
) -> anyhow::Result<()> {
    let mut config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%cause, %error, "config reload refused; the config in force stays");
            state.exchange.metrics().config_reload(false);
            return Err(error.into());
        }
    };
    config.protect_own_namespace(own_namespace);
    let current = state.exchange.snapshot();
    let verifier = if same_issuers(&current.verifier, &config.issuers) {
        Arc::clone(&current.verifier)
    } else {
        // Replay records are kept by issuer URL: a new config forgets no exchanged token.
        let records = current.verifier.replay_records(unix_now());
        match Verifier::over_http(&config.issuers, state.exchange.metrics(), records) {
            Ok(verifier) => {
                let failed = verifier.warm_up().await;
                if !failed.is_empty() {
                    tracing::warn!(issuers = ?failed, "reloaded issuers without keys yet");
                }
                Arc::new(verifier)
            }
            Err(error) => {
                tracing::error!(%cause, %error, "config reload refused; the config in force stays");
                state.exchange.metrics().config_reload(false);
                return Err(error);
            }
        }
    };
    if config.kubernetes != *kubernetes {
        tracing::warn!("the kubernetes: settings changed; they take effect at the next restart");
    }
    state.exchange.metrics().export_config_series(
        config.issuers.iter().map(|issuer| issuer.name.as_str()),
        config.policies.iter().map(|policy| policy.name.as_str()),
    );
    state
        .exchange
        .replace(Snapshot::new(verifier, config.policies));
    state.exchange.metrics().config_reload(true);
    tracing::info!(%cause, path = %path.display(), "config reloaded");
    Ok(())
}

fn unix_now() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or_default()
}

fn same_issuers(verifier: &Verifier, issuers: &[IssuerSettings]) -> bool {
    let mut current: Vec<&IssuerSettings> =
        verifier.issuers().map(|issuer| issuer.settings()).collect();
    current.sort_by(|a, b| a.name.cmp(&b.name));
    let mut wanted: Vec<&IssuerSettings> = issuers.iter().collect();
    wanted.sort_by(|a, b| a.name.cmp(&b.name));
    current == wanted
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next(hangup: &mut Hangup) {
    match hangup {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next(_: &mut Hangup) {
    std::future::pending().await
}
