//! Hot reload: the config file is re-read when its contents change (polled, which also sees
//! Kubernetes ConfigMap updates, whose files change by symlink swap) and on SIGHUP. A valid
//! config is swapped in whole; requests already running finish on the one they started with.
//! An invalid one is refused, logged and counted, and the config in force stays. Team files
//! are watched too (added, changed, removed); one that is refused leaves the rest of the
//! reload in force, with its own last good version if that still fits its ceiling.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, KubernetesSettings, TeamFile, TeamSources};
use crate::exchange::Snapshot;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::oidc::{IssuerSettings, Verifier};

/// The config file to watch, as it was when the config in force was read, and the SIGHUP
/// listener. Both are taken when `serve` sets the watch up, before it says it is serving: a
/// change from then on is a change, and a SIGHUP from then on reloads instead of ending the
/// process (the default action of a signal nobody listens for).
pub struct ConfigWatch {
    path: PathBuf,
    poll_interval: Duration,
    loaded: Option<Vec<u8>>,
    hangup: Hangup,
}

impl ConfigWatch {
    pub fn new(path: PathBuf, poll_interval: Duration) -> Self {
        let loaded = crate::config::fingerprint(&path);
        Self {
            path,
            poll_interval,
            loaded,
            hangup: hangup_signal(),
        }
    }
}

/// Watches the config file (and its team files) and reloads it into `state` until the task
/// is aborted. `team_files` are the team files of the config in force; `kubernetes` is the
/// block the service was started with (it cannot change without a restart); `own_namespace`
/// is protected in every config it loads.
pub async fn watch(
    state: AppState,
    watch: ConfigWatch,
    kubernetes: KubernetesSettings,
    own_namespace: Option<String>,
    mut team_files: Vec<TeamFile>,
) {
    let ConfigWatch {
        path,
        poll_interval,
        loaded,
        mut hangup,
    } = watch;
    let mut last = loaded;
    loop {
        let signalled = tokio::select! {
            () = tokio::time::sleep(poll_interval) => false,
            () = next(&mut hangup) => true,
        };
        let current = crate::config::fingerprint(&path);
        if !signalled && current == last {
            continue;
        }
        last = current;
        let cause = if signalled { "SIGHUP" } else { "file changed" };
        // The outcome is logged and counted inside.
        let _ = reload(
            &state,
            &path,
            cause,
            &kubernetes,
            own_namespace.as_deref(),
            &mut team_files,
        )
        .await;
    }
}

/// Loads `path` and, if it is valid, puts it in force. Issuers are rebuilt (and their keys
/// fetched) only when their settings changed; their replay records carry over by URL. A team
/// file refused makes the reload count as an error, but the rest goes in force; `team_files`
/// (the last good versions) is updated to what is in force.
pub async fn reload(
    state: &AppState,
    path: &Path,
    cause: &str,
    kubernetes: &KubernetesSettings,
    own_namespace: Option<&str>,
    team_files: &mut Vec<TeamFile>,
) -> anyhow::Result<()> {
    let sources = TeamSources {
        last_good: team_files,
        only: None,
    };
    let mut config = match Config::load_with(path, sources) {
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
    let store_in_force = state
        .exchange
        .limits()
        .store()
        .map(|store| store.settings());
    if config.store.as_ref() != store_in_force {
        tracing::warn!("the store: settings changed; they take effect at the next restart");
    }
    state.exchange.metrics().export_config_series(
        config.issuers.iter().map(|issuer| issuer.name.as_str()),
        config.policies.iter().map(|policy| policy.name.as_str()),
    );
    report_teams(state.exchange.metrics(), &config);
    *team_files = std::mem::take(&mut config.team_files);
    state
        .exchange
        .replace(Snapshot::new(verifier, config.policies));
    state
        .exchange
        .metrics()
        .config_reload(config.team_refusals.is_empty());
    tracing::info!(%cause, path = %path.display(), "config reloaded");
    Ok(())
}

/// Exports the teams' series and logs and counts each team file the load refused.
pub fn report_teams(metrics: &Metrics, config: &Config) {
    metrics.export_team_series(config.teams.iter().map(|team| team.name.as_str()));
    for refusal in &config.team_refusals {
        tracing::error!(team = %refusal.team, file = %refusal.path.display(), error = %refusal.message, "team file refused");
        metrics.team_file_refused(&refusal.team);
    }
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
