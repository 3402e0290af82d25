//! The command line (README.md, "The two commands"; `tokenvend --help`): one binary, one subcommand per job.

mod offline;
mod revoke;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigDuration};
use crate::k8s::{legacy, rbac};
use crate::policy::ServiceAccountRef;
use crate::service::{Application, LimitSettings, Listen, ServeOptions, TlsFiles, shutdown_signal};
use crate::telemetry::{self, LogFormat};

/// Deadline for each Kubernetes call of `legacy-scan`.
const SCAN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Exchange OIDC ID tokens for short-lived Kubernetes service-account tokens.
#[derive(Debug, Parser)]
#[command(name = "tokenvend", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Run a local OIDC issuer, a Kubernetes API stand-in and the service wired to both.
    Dev(crate::dev::DevArgs),
    /// Print the least-privilege Role/RoleBinding YAML that lets tokenvend mint exactly the
    /// service accounts the policies name.
    Rbac(RbacArgs),
    /// List long-lived service-account token Secrets, and which policy already covers each.
    LegacyScan(LegacyScanArgs),
    /// Revoke revocable tokens: delete their binding Secrets (by binding, policy, subject or
    /// issue time), with your own Kubernetes credentials.
    Revoke(revoke::RevokeArgs),
    /// Obtain a token from a tokenvend service: print it, write it, keep a file fresh, or
    /// act as a kubectl exec plugin.
    Token(crate::client::TokenArgs),
    /// Validate config files exactly as `serve` would (without network) and run their `tests:`.
    Check(offline::CheckArgs),
    /// Show which policy grants what to a claims file, or why none does.
    Explain(offline::ExplainArgs),
}

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file (YAML; config/ has commented examples).
    #[arg(long, env = "TOKENVEND_CONFIG")]
    config: PathBuf,
    /// How often the config file is checked for changes (it is also reloaded on SIGHUP).
    #[arg(long, env = "TOKENVEND_CONFIG_POLL_INTERVAL", default_value = "5s")]
    config_poll_interval: crate::config::ConfigDuration,
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    logging: LoggingArgs,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// At SIGTERM/SIGINT: how long in-flight requests get to finish after readiness turns off
    /// and the listeners close. Keep it below the pod's terminationGracePeriodSeconds minus
    /// its preStop pause.
    #[arg(long, env = "TOKENVEND_SHUTDOWN_GRACE_PERIOD", default_value = "20s")]
    shutdown_grace_period: ConfigDuration,
    /// The namespace tokenvend runs in, protected like `kubernetes.protectedNamespaces`.
    /// Default: the pod's own (read from the in-cluster service-account mount); outside a
    /// cluster, none.
    #[arg(long, env = "TOKENVEND_NAMESPACE", value_parser = parse_namespace)]
    namespace: Option<String>,
}

fn parse_namespace(text: &str) -> Result<String, String> {
    if crate::policy::is_dns1123_label(text) {
        Ok(text.to_owned())
    } else {
        Err("not a valid namespace name".to_owned())
    }
}

/// TLS on the public listener (both or neither). The files are re-read when they change.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// PEM certificate chain, leaf first.
    #[arg(long, env = "TOKENVEND_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    #[arg(long, env = "TOKENVEND_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// Request limits of `serve`.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Sustained token requests per second per identity (issuer and subject); 0 turns the
    /// limit off. Over it: 429 with Retry-After.
    #[arg(long, env = "TOKENVEND_RATE_LIMIT", default_value_t = LimitSettings::default().per_identity_rate)]
    rate_limit: f64,
    /// Token requests an idle identity may make at once (the bucket size).
    #[arg(long, env = "TOKENVEND_RATE_LIMIT_BURST", default_value_t = LimitSettings::default().per_identity_burst, value_parser = clap::value_parser!(u32).range(1..))]
    rate_limit_burst: u32,
    /// Token requests handled at once; further ones are shed with 503 and Retry-After. 0 turns
    /// the cap off.
    #[arg(long, env = "TOKENVEND_MAX_IN_FLIGHT", default_value_t = LimitSettings::default().max_in_flight)]
    max_in_flight: usize,
    /// How long a request body may take to arrive after the request head; then 408 and the
    /// connection is closed. A request takes an in-flight slot only once its body is complete.
    #[arg(long, env = "TOKENVEND_REQUEST_BODY_TIMEOUT", default_value = "10s")]
    request_body_timeout: ConfigDuration,
    /// Connections one client address may hold open at once; further ones are closed at once.
    /// 0 turns the cap off (for deployments where every connection comes through one proxy).
    #[arg(long, env = "TOKENVEND_MAX_CONNECTIONS_PER_PEER", default_value_t = LimitSettings::default().max_connections_per_peer)]
    max_connections_per_peer: usize,
}

impl ServeArgs {
    fn options(&self) -> ServeOptions {
        ServeOptions {
            tls: match (&self.tls.tls_cert, &self.tls.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            limits: LimitSettings {
                per_identity_rate: self.limits.rate_limit,
                per_identity_burst: self.limits.rate_limit_burst,
                max_in_flight: self.limits.max_in_flight,
                request_body_timeout: self.limits.request_body_timeout.0,
                max_connections_per_peer: self.limits.max_connections_per_peer,
            },
            shutdown_grace_period: self.shutdown_grace_period.0,
            own_namespace: self
                .namespace
                .clone()
                .or_else(crate::k8s::in_cluster_namespace),
            pod_name: ["POD_NAME", "HOSTNAME"]
                .into_iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty())),
            ..ServeOptions::default()
        }
    }
}

/// Flags of `rbac`.
#[derive(Debug, Args)]
pub struct RbacArgs {
    /// The config file whose policies name the service accounts to mint.
    #[arg(long)]
    config: PathBuf,
    /// The service account tokenvend runs as (NAMESPACE/NAME): the subject of the bindings.
    #[arg(long, default_value = rbac::DEFAULT_SUBJECT, value_parser = ServiceAccountRef::parse)]
    service_account: ServiceAccountRef,
}

/// Flags of `legacy-scan`. Kubernetes access as for `serve`.
#[derive(Debug, Args)]
pub struct LegacyScanArgs {
    /// Mark the service accounts that this config's policies already grant.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Scan this namespace only (default: all namespaces).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: ScanOutput,
    /// Secrets per list call; every page is read.
    #[arg(long, default_value_t = legacy::DEFAULT_PAGE_SIZE)]
    page_size: u32,
}

/// How `legacy-scan` prints its rows.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ScanOutput {
    /// Aligned columns, for people.
    Table,
    /// One JSON array of objects, for scripts.
    Json,
}

/// Listener flags, shared by `serve` and `dev`.
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Public listener: token exchange and health.
    #[arg(long, env = "TOKENVEND_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Admin listener: metrics.
    #[arg(long, env = "TOKENVEND_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
}

/// Logging flags.
#[derive(Debug, Clone, Args)]
pub struct LoggingArgs {
    /// Application log format (audit records are always JSON lines on stdout).
    #[arg(long, env = "TOKENVEND_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

impl Cli {
    /// Runs the chosen subcommand to completion.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let done = match self.command {
            Command::Serve(args) => serve(args).await,
            Command::Dev(args) => crate::dev::run(args).await,
            Command::Rbac(args) => print_rbac(&args),
            Command::LegacyScan(args) => legacy_scan(args).await,
            Command::Token(args) => crate::client::run(args, shutdown_signal()).await,
            Command::Revoke(args) => return revoke::run(args).await,
            Command::Check(args) => return Ok(offline::check(&args)),
            Command::Explain(args) => return offline::explain(&args),
        };
        done.map(|()| ExitCode::SUCCESS)
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    telemetry::init(args.logging.log_format)?;
    let config = Config::load(&args.config)?;
    let kube_config = crate::k8s::client_config(config.kubernetes.request_timeout).await?;
    let listen = Listen {
        public: args.listen.listen,
        admin: args.listen.admin_listen,
    };
    let options = args.options();
    anyhow::ensure!(
        options.limits.per_identity_rate.is_finite() && options.limits.per_identity_rate >= 0.0,
        "--rate-limit must be a number of requests per second, 0 or more"
    );
    anyhow::ensure!(
        !options.limits.request_body_timeout.is_zero(),
        "--request-body-timeout must be longer than 0s"
    );
    let tls = options.tls.is_some();
    let own_namespace = options.own_namespace.clone().unwrap_or_default();
    let app = Application::build_with(config, listen, kube_config, options)
        .await?
        .watch_config(args.config.clone(), args.config_poll_interval.0);
    tracing::info!(public = %app.public_addr(), admin = %app.admin_addr(), tls, %own_namespace, "tokenvend serving");
    app.run_until(shutdown_signal()).await
}

fn print_rbac(args: &RbacArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let protected = config
        .policies
        .protected_namespaces()
        .chain([args.service_account.namespace()])
        .map(str::to_owned)
        .collect();
    // Team files change without the main file: their grants are bound by their ceilings.
    // Team policies follow the main file's in the set.
    let team_policies: usize = config.team_files.iter().map(|f| f.raw.policies.len()).sum();
    let targets: Vec<(String, String)> = config
        .policies
        .iter()
        .take(config.policies.len() - team_policies)
        .flat_map(|policy| &policy.grant.service_accounts)
        .map(crate::policy::GrantedAccount::written_parts)
        .collect();
    let team_namespaces: Vec<String> = config
        .teams
        .iter()
        .flat_map(|team| team.ceiling.namespaces.iter().cloned())
        .collect();
    let mut plan = rbac::plan_with_teams(
        &targets,
        &team_namespaces,
        &args.service_account,
        &protected,
    );
    // Revocable grants, team files' included: their bindings live next to the accounts.
    let revocable =
        rbac::revocation::revocable_namespaces(config.policies.iter().map(|p| &p.grant));
    rbac::revocation::add(&mut plan, &revocable, &args.service_account, &protected);
    if !config.teams.is_empty() {
        plan.warnings.push(
            "note: revocable team policies count as the team files are now; a team file that \
             later makes a policy revocable in another namespace needs this output regenerated \
             (until then tokenvend cannot create its binding Secrets there and refuses those \
             requests)"
                .to_owned(),
        );
    }
    for warning in &plan.warnings {
        eprintln!("{warning}");
    }
    if plan.objects.is_empty() {
        eprintln!("warning: no policy grants a service account; there is nothing to bind");
    }
    let header = format!(
        "# Generated by `tokenvend rbac --config {} --service-account {}`; do not edit.\n\
         # Lets {} create tokens (serviceaccounts/token) for the service accounts its policies grant.\n{}",
        args.config.display(),
        args.service_account,
        args.service_account,
        if revocable.is_empty() {
            String::new()
        } else {
            format!(
                "# Revocable grants: create/delete binding Secrets (never read any) in {}, \
                 review tokens, and an admission policy allowing only binding Secrets.\n\
                 # Apply order matters: the ValidatingAdmissionPolicy and its binding come first, \
                 because the rules on secrets below are safe only with the policy in force \
                 (RBAC cannot restrict which Secrets tokenvend creates).\n\
                 # The policy needs Kubernetes 1.30 or later. On an older cluster `kubectl apply` \
                 fails on the policy but still applies the rest: do not apply this file there, \
                 and do not enable revocable grants.\n",
                revocable.join(", ")
            )
        },
    );
    print!("{}", plan.to_yaml(&header));
    Ok(())
}

async fn legacy_scan(args: LegacyScanArgs) -> anyhow::Result<()> {
    serving::crypto::install_providers()?;
    let policies = match &args.config {
        Some(path) => Some(Config::load(path)?.policies),
        None => None,
    };
    let mut kube_config = crate::k8s::client_config(SCAN_TIMEOUT).await?;
    kube_config.read_timeout = Some(SCAN_TIMEOUT);
    let client = kube::Client::try_from(kube_config)?;
    let mut rows = legacy::scan(&client, args.namespace.as_deref(), args.page_size).await?;
    match &policies {
        Some(policies) => legacy::mark_coverage(&mut rows, policies),
        None => eprintln!("note: without --config, COVERED-BY is empty"),
    }
    match args.output {
        ScanOutput::Json => print!("{}", legacy::json(&rows)),
        ScanOutput::Table if rows.is_empty() => {
            eprintln!("No {} Secrets found.", legacy::TOKEN_SECRET_TYPE);
        }
        ScanOutput::Table => print!("{}", legacy::table(&rows, jiff::Timestamp::now())),
    }
    Ok(())
}
