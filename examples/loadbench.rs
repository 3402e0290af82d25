//! The load harness's helper (driven by `scripts/loadbench.sh`), in two roles:
//!
//! - `loadbench env DIR`: starts the local OIDC issuer and the Kubernetes API stand-in on
//!   127.0.0.1, writes what tokenvend and the load generator need into `DIR` (config, the same
//!   config with the policy revocable, kubeconfig, pre-minted ID tokens, the direct
//!   TokenRequest), then serves until it is
//!   stopped or `--max-seconds` pass. tokenvend itself runs as its own process, so that its
//!   CPU time can be read from `/proc` apart from the stand-in's.
//! - `loadbench burst URL TOKENS`: sends one request per token, all at once, and prints how
//!   many got each status.
//! - `loadbench floor DIR [--mint]`: the serving stack alone, as a yardstick for tokenvend's own
//!   cost: tokenvend's HTTP server loop and an axum router with one route and no middleware,
//!   answering every POST with a fixed JSON body or, with `--mint`, with a TokenRequest made
//!   through tokenvend's own minter (the real kube client, same settings) to the stand-in of
//!   `DIR`. No verification, policy, audit, logs or metrics of requests: what tokenvend costs
//!   beyond this floor is its own work.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dev_pki::keys::SigningKey;
use jsonwebtoken::Algorithm;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_standin::ApiServer;
use local_issuer::LocalIssuer;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use serving::ServerLimits;
use tokenvend::config::Config;
use tokenvend::dev::session::stand_in_options;
use tokenvend::k8s::{ApiContact, KubeMinter, MintRequest, Minter};
use tokenvend::metrics::Metrics;
use tokenvend::policy::ServiceAccountRef;

/// tokenvend's credential for the stand-in.
const SERVICE_TOKEN: &str = "loadbench-service-token";
/// The service account the policy grants; the direct TokenRequest asks for the same one.
const NAMESPACE: &str = "bench";
const SERVICE_ACCOUNT: &str = "deployer";
/// What tokenvend asks for (the policy's default TTL), so both paths mint the same token.
const EXPIRATION_SECONDS: i64 = 900;
/// ID token lifetime: longer than any run, within the issuer's `maxTokenLifetime`.
const ID_TOKEN_LIFETIME: u64 = 3000;

/// The config tokenvend serves; `{issuer}` is the local issuer's URL. Replay protection is
/// off so that the pre-minted tokens can be cycled through for the whole run.
const CONFIG: &str = r#"
kubernetes:
  requestTimeout: 10s
issuers:
  - name: bench
    url: "{issuer}"
    audiences: [tokenvend]
    algorithms: [RS256]
    maxTokenLifetime: 1h
    replayProtection: false
policies:
  - name: bench-deployer
    issuer: bench
    match:
      repository: acme/webapp
      ref: refs/heads/main
    grant:
      serviceAccounts: [bench/deployer]
      ttl: 15m
      maxTtl: 1h
"#;

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the issuer and the stand-in and write the run's files into DIR.
    Env {
        dir: PathBuf,
        /// Distinct ID tokens to pre-mint (RS256, cycled through by the load generator).
        #[arg(long, default_value_t = 2000)]
        tokens: usize,
        /// Tokens signed by a key the issuer does not publish, all with the same `kid`.
        #[arg(long, default_value_t = 1000)]
        unknown_kid_tokens: usize,
        /// For the replay-protection phases: two more sets of this many distinct ID tokens
        /// (each exchanged once: a set must outnumber the requests of a phase), and
        /// config-replay.yaml, the config with `replayProtection: true`.
        #[arg(long, default_value_t = 0)]
        replay_tokens: usize,
        /// Stop by itself after this long, whatever happens.
        #[arg(long, default_value_t = 900)]
        max_seconds: u64,
    },
    /// POST one request per line of TOKENS to URL, all concurrently; print the status counts.
    Burst { url: String, tokens: PathBuf },
    /// Serve the bare stack on 127.0.0.1 (its address goes to DIR/floor.addr, or
    /// DIR/floor-mint.addr with `--mint`) until stopped or `--max-seconds` pass.
    Floor {
        dir: PathBuf,
        /// Mint a token per request through the stand-in of DIR (its kubeconfig).
        #[arg(long)]
        mint: bool,
        #[arg(long, default_value_t = 900)]
        max_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Env {
            dir,
            tokens,
            unknown_kid_tokens,
            replay_tokens,
            max_seconds,
        } => env(&dir, tokens, unknown_kid_tokens, replay_tokens, max_seconds).await,
        Command::Burst { url, tokens } => burst(&url, &tokens).await,
        Command::Floor {
            dir,
            mint,
            max_seconds,
        } => floor(&dir, mint, max_seconds).await,
    }
}

async fn env(
    dir: &Path,
    tokens: usize,
    unknown: usize,
    replay_tokens: usize,
    max_seconds: u64,
) -> anyhow::Result<()> {
    serving::crypto::install_providers()?;
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let issuer = LocalIssuer::start(loopback).await?;
    let config_text = CONFIG.replace("{issuer}", issuer.url());
    // The same policy, revocable: each token bound to a Secret of its own. The stand-in's
    // permissions come from this one, a superset (Secrets and TokenReviews besides minting).
    let revocable_text = config_text.replacen(
        "      maxTtl: 1h\n",
        "      maxTtl: 1h\n      revocable: true\n",
        1,
    );
    let config = Config::parse(&revocable_text, Path::new("loadbench-revocable.yaml"))?;
    let apiserver = ApiServer::start(loopback, stand_in_options(&config, SERVICE_TOKEN)).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("config.yaml", &config_text)?;
    write("config-revocable.yaml", &revocable_text)?;
    write("kubeconfig", &apiserver.kubeconfig(SERVICE_TOKEN))?;
    write(
        "tokens.txt",
        &mint_lines(tokens, |c| issuer.mint(Algorithm::RS256, c))?,
    )?;
    let stranger = SigningKey::generate(Algorithm::RS256)?;
    let unknown_kid = mint_lines(unknown, |mut claims| {
        claims["iss"] = json!(issuer.url());
        stranger.sign(Some("JWT"), &claims)
    })?;
    write("unknown-kid-tokens.txt", &unknown_kid)?;
    if replay_tokens > 0 {
        write(
            "config-replay.yaml",
            &config_text.replace("replayProtection: false", "replayProtection: true"),
        )?;
        for set in ["replay-tokens-saturation.txt", "replay-tokens-half.txt"] {
            write(
                set,
                &mint_lines(replay_tokens, |c| issuer.mint(Algorithm::RS256, c))?,
            )?;
        }
    }
    write("token-request.json", &token_request_body()?)?;
    write(
        "env.sh",
        &format!(
            "STANDIN_PID={pid}\nAPISERVER_URL={api}\nTOKEN_REQUEST_PATH=/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{SERVICE_ACCOUNT}/token\nSERVICE_TOKEN={SERVICE_TOKEN}\nISSUER_URL={iss}\n",
            pid = std::process::id(),
            api = apiserver.url(),
            iss = issuer.url(),
        ),
    )?;
    write("ready", "")?;
    eprintln!(
        "loadbench: issuer {} and API stand-in {} ready",
        issuer.url(),
        apiserver.url()
    );
    let _ = tokio::time::timeout(Duration::from_secs(max_seconds), stopped()).await;
    apiserver.shutdown().await;
    issuer.shutdown().await;
    Ok(())
}

/// `count` ID tokens matching the policy, one per line, each with its own `jti` and its own
/// subject (a pipeline per token, as in a fleet: one subject would run into tokenvend's
/// per-identity rate limit, which is not what this harness measures).
fn mint_lines(
    count: usize,
    mut mint: impl FnMut(Value) -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut lines = String::new();
    for n in 0..count {
        let claims = json!({
            "sub": format!("repo:acme/webapp:environment:bench-{n}"),
            "aud": "tokenvend",
            "iat": now,
            "nbf": now,
            "exp": now + ID_TOKEN_LIFETIME,
            "jti": format!("loadbench-{n}-{}", uuid::Uuid::new_v4()),
            "repository": "acme/webapp",
            "repository_id": "123456",
            "repository_owner": "acme",
            "ref": "refs/heads/main",
            "ref_type": "branch",
            "workflow": "deploy",
            "event_name": "push",
            "runner_environment": "github-hosted",
        });
        lines.push_str(&mint(claims)?);
        lines.push('\n');
    }
    Ok(lines)
}

/// The TokenRequest body tokenvend's kube client sends for the policy's grant.
fn token_request_body() -> anyhow::Result<String> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(EXPIRATION_SECONDS),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    Ok(serde_json::to_string(&request)?)
}

async fn stopped() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending().await,
            }
        } => {}
    }
}

async fn burst(url: &str, tokens: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(tokens)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let start = tokio::sync::Barrier::new(text.lines().count());
    let start = std::sync::Arc::new(start);
    let requests: Vec<_> = text
        .lines()
        .map(|token| {
            let request = client.post(url).bearer_auth(token);
            let start = std::sync::Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                request.send().await.map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for request in requests {
        let status = match request.await? {
            Ok(code) => code.to_string(),
            Err(_) => "error".to_owned(),
        };
        *statuses.entry(status).or_default() += 1;
    }
    let summary: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}={n}")).collect();
    println!("{}", summary.join(" "));
    Ok(())
}

/// What the floor's route does per request.
#[derive(Clone)]
struct FloorState {
    /// With `--mint`: the minter and what it mints (the policy's grant).
    minter: Option<Arc<KubeMinter>>,
    request: Arc<MintRequest>,
}

async fn floor(dir: &Path, mint: bool, max_seconds: u64) -> anyhow::Result<()> {
    serving::crypto::install_providers()?;
    let minter = if mint {
        let kubeconfig = Kubeconfig::read_from(dir.join("kubeconfig"))?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        let deadline = Duration::from_secs(10);
        let client = kube::Client::try_from(tokenvend::k8s::for_request_path(config, deadline))?;
        Some(Arc::new(KubeMinter::new(
            client,
            deadline,
            Arc::new(Metrics::new()),
            Arc::new(ApiContact::default()),
        )))
    } else {
        None
    };
    let state = FloorState {
        minter,
        request: Arc::new(MintRequest {
            service_account: ServiceAccountRef::parse(&format!("{NAMESPACE}/{SERVICE_ACCOUNT}"))
                .map_err(anyhow::Error::msg)?,
            audiences: Vec::new(),
            expiration_secs: u64::try_from(EXPIRATION_SECONDS)?,
            binding: None,
        }),
    };
    let router = axum::Router::new()
        .route("/", axum::routing::post(floor_answer))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let name = if mint {
        "floor-mint.addr"
    } else {
        "floor.addr"
    };
    std::fs::write(dir.join(name), listener.local_addr()?.to_string())?;
    let stop = async move {
        let _ = tokio::time::timeout(Duration::from_secs(max_seconds), stopped()).await;
    };
    serving::serve(listener, router, None, ServerLimits::default(), stop).await?;
    Ok(())
}

/// A token response of the same shape and about the same size as tokenvend's, either fixed or
/// from a real TokenRequest.
async fn floor_answer(
    axum::extract::State(state): axum::extract::State<FloorState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(minter) = &state.minter else {
        return axum::Json(json!({
            "token": "x".repeat(900),
            "expirationTimestamp": "2026-01-01T00:00:00Z",
        }))
        .into_response();
    };
    match minter.mint(&state.request).await {
        Ok(minted) => axum::Json(json!({
            "token": minted.token.expose_secret(),
            "expirationTimestamp": minted.expiration.to_string(),
        }))
        .into_response(),
        Err(error) => (axum::http::StatusCode::BAD_GATEWAY, error.metric_label()).into_response(),
    }
}
