//! The flags of `tokenvend token` and what they resolve to.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args};
use tracing_subscriber::EnvFilter;

use super::Client;
use super::cache::CredentialCache;
use super::output::Output;
use super::service::TokenWish;
use super::source::{ACTIONS_URL_VAR, IdTokenSource};
use super::watch::Schedule;
use crate::config::ConfigDuration;
use crate::policy::ServiceAccountRef;
use crate::telemetry::{self, LogFormat};

/// kubectl sets this when it runs an exec plugin.
const EXEC_INFO_VAR: &str = "KUBERNETES_EXEC_INFO";

/// Flags of `tokenvend token`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("id_token_source").multiple(false)))]
pub struct TokenArgs {
    /// The tokenvend service, e.g. https://tokenvend.example.com.
    #[arg(long, env = "TOKENVEND_SERVER")]
    pub(super) server: String,
    /// Extra trust roots (PEM) for the service's TLS certificate.
    #[arg(long, env = "TOKENVEND_CA_FILE")]
    pub(super) ca_file: Option<PathBuf>,
    /// The service account, NAMESPACE/NAME; omitted, the one the policies grant you.
    #[arg(long, env = "TOKENVEND_SERVICE_ACCOUNT")]
    service_account: Option<String>,
    /// An audience of the minted token (repeatable); omitted, the policy's default.
    #[arg(long = "audience")]
    audiences: Vec<String>,
    /// The minted token's lifetime (e.g. 15m, at least 10m); omitted, the policy's default.
    #[arg(long)]
    expiration: Option<ConfigDuration>,

    /// Take the ID token from GitHub Actions (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN). The default
    /// when those variables are set and no other source is named.
    #[arg(long, group = "id_token_source")]
    github_actions: bool,
    /// Read the ID token from this file, anew for every exchange (projected tokens, cloud
    /// workload-identity files).
    #[arg(long, group = "id_token_source", env = "TOKENVEND_ID_TOKEN_FILE")]
    id_token_file: Option<PathBuf>,
    /// Read the ID token from this environment variable (GitLab CI `id_tokens`).
    #[arg(long, group = "id_token_source", value_name = "NAME")]
    id_token_env: Option<String>,
    /// Read the ID token from standard input.
    #[arg(long, group = "id_token_source")]
    id_token_stdin: bool,
    /// The audience to request from GitHub Actions: what the service's issuer config expects.
    /// Default: the --server URL.
    #[arg(long, env = "TOKENVEND_ID_TOKEN_AUDIENCE")]
    id_token_audience: Option<String>,

    /// What to print or write. Default: exec-credential when run by kubectl as an exec
    /// plugin, else token.
    #[arg(long, short = 'o', value_enum)]
    output: Option<Output>,
    /// Write to this file (mode 0600, atomically replaced) instead of stdout.
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
    /// Keep --out fresh: refresh at ~80% of the lifetime, retry with backoff, stop on SIGTERM.
    #[arg(long, requires = "out")]
    pub(super) watch: bool,
    /// The exec-credential cache file. Default: one per request under $XDG_CACHE_HOME/tokenvend.
    #[arg(long)]
    cache_file: Option<PathBuf>,
    /// Do not cache exec credentials.
    #[arg(long, conflicts_with = "cache_file")]
    no_cache: bool,
    /// Application log format (logs go to stderr).
    #[arg(long, value_enum, default_value = "pretty")]
    log_format: LogFormat,
    /// Revoke the token in this file instead of getting one (`-`: stdin), e.g. as the last
    /// step of a CI job: any output of `tokenvend token` (the token, JSON, an ExecCredential,
    /// a kubeconfig) or the exec-credential cache file. Retries a busy service a few times.
    /// The flags of an exchange that a job may set through the environment
    /// (TOKENVEND_SERVICE_ACCOUNT, TOKENVEND_ID_TOKEN_FILE, ...) are ignored; output flags
    /// (--output, --out, --watch, the cache) cannot be combined with it.
    #[arg(
        long,
        value_name = "TOKEN_FILE",
        conflicts_with_all = [
            "github_actions", "id_token_env", "id_token_stdin", "audiences", "expiration",
            "output", "out", "watch", "cache_file", "no_cache",
        ]
    )]
    pub(super) revoke: Option<PathBuf>,

    /// Refresh after this fraction of the lifetime (tests shorten it).
    #[arg(long, default_value_t = 0.8, hide = true)]
    refresh_fraction: f64,
    /// The first retry delay after a failed refresh.
    #[arg(long, default_value = "1s", hide = true)]
    retry_initial: ConfigDuration,
    /// The longest retry delay.
    #[arg(long, default_value = "1m", hide = true)]
    retry_max: ConfigDuration,
}

impl TokenArgs {
    /// Logs on stderr: warnings only for one-shot runs (stdout may be a credential), progress
    /// too in watch mode. `RUST_LOG` overrides.
    pub(super) fn init_logging(&self) -> anyhow::Result<()> {
        let default = if self.watch { "info" } else { "warn" };
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
        let subscriber =
            telemetry::subscriber(self.log_format, filter, std::io::stderr, std::io::stderr);
        tracing::subscriber::set_global_default(subscriber)?;
        Ok(())
    }

    /// The named ID-token source, else GitHub Actions when its variables are set.
    pub(super) fn source(&self) -> anyhow::Result<IdTokenSource> {
        if let Some(path) = &self.id_token_file {
            return Ok(IdTokenSource::File(path.clone()));
        }
        if let Some(name) = &self.id_token_env {
            return Ok(IdTokenSource::Env(name.clone()));
        }
        if self.id_token_stdin {
            return Ok(IdTokenSource::Stdin);
        }
        if self.github_actions || std::env::var_os(ACTIONS_URL_VAR).is_some() {
            let audience = self
                .id_token_audience
                .clone()
                .unwrap_or_else(|| self.server.trim_end_matches('/').to_owned());
            return Ok(IdTokenSource::GitHubActions { audience });
        }
        anyhow::bail!(
            "no ID token source: use --github-actions, --id-token-file, --id-token-env or --id-token-stdin"
        )
    }

    /// The request body, checked as far as the client can.
    pub(super) fn wish(&self) -> anyhow::Result<TokenWish> {
        if let Some(name) = &self.service_account {
            ServiceAccountRef::parse(name)
                .map_err(|m| anyhow::anyhow!("--service-account {name}: {m}"))?;
        }
        Ok(TokenWish {
            service_account: self.service_account.clone(),
            audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            expiration_seconds: self.expiration.map(ConfigDuration::as_secs),
        })
    }

    pub(super) fn output(&self) -> Output {
        self.output.unwrap_or_else(|| {
            if std::env::var_os(EXEC_INFO_VAR).is_some() {
                Output::ExecCredential
            } else {
                Output::Token
            }
        })
    }

    /// The exec-credential cache, when the output is an ExecCredential printed for kubectl.
    pub(super) fn cache(&self, client: &Client) -> Option<CredentialCache> {
        if client.output != Output::ExecCredential || self.no_cache || self.out.is_some() {
            return None;
        }
        match &self.cache_file {
            Some(path) => Some(CredentialCache::at(path.clone())),
            None => CredentialCache::for_key(&client.cache_key(&self.server)),
        }
    }

    pub(super) fn schedule(&self) -> Schedule {
        Schedule {
            refresh_fraction: self.refresh_fraction,
            retry_initial: self.retry_initial.0,
            retry_max: self.retry_max.0.max(Duration::from_millis(1)),
        }
    }
}
