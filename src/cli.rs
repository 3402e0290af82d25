//! The command line (DESIGN §2): one binary, one subcommand per job.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::app::{Application, Listen, shutdown_signal};
use crate::config::Config;
use crate::telemetry::{self, LogFormat};

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
    /// Obtain a token from a tokenvend service: print it, write it, keep a file fresh, or
    /// act as a kubectl exec plugin.
    Token(crate::client::TokenArgs),
}

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file (DESIGN §4).
    #[arg(long, env = "TOKENVEND_CONFIG")]
    config: PathBuf,
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    logging: LoggingArgs,
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
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => serve(args).await,
            Command::Dev(args) => crate::dev::run(args).await,
            Command::Token(args) => crate::client::run(args).await,
        }
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
    let app = Application::build(config, listen, kube_config).await?;
    tracing::info!(public = %app.public_addr(), admin = %app.admin_addr(), "tokenvend serving");
    app.run_until(shutdown_signal()).await
}
