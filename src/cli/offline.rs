//! The offline policy commands: `tokenvend check` (load a config exactly as `serve` would,
//! without network, and run its `tests:`) and `tokenvend explain` (the decision for a claims
//! file, step by step). For CI of policy repositories and for operators asking "why".

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Map, Value};

use crate::config::{Config, ConfigDuration, TeamSources};
use crate::policy::{Request, ServiceAccountRef};

/// Flags of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config files to check (each loaded and tested on its own).
    #[arg(long = "config", required = true)]
    configs: Vec<PathBuf>,
    /// Check these files as the team's (instead of its `files` pattern), against the ceiling
    /// the main file (a single `--config`) sets: for CI in the team's own repository.
    #[arg(long, requires = "files")]
    team: Option<String>,
    /// The team's files (with `--team`).
    #[arg(requires = "team")]
    files: Vec<PathBuf>,
}

/// Flags of `explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[arg(long)]
    config: PathBuf,
    /// A JSON file with the verified claims to decide on (`iss` picks the issuer).
    #[arg(long)]
    claims: PathBuf,
    /// The service account asked for, NAMESPACE/NAME.
    #[arg(long)]
    service_account: Option<String>,
    /// An audience asked for (repeatable).
    #[arg(long = "audience")]
    audiences: Vec<String>,
    /// The lifetime asked for, e.g. 15m.
    #[arg(long)]
    ttl: Option<ConfigDuration>,
}

/// Loads and tests each config; prints a line per file and per test. Exit 0 only if every
/// file loads and every test passes.
pub fn check(args: &CheckArgs) -> ExitCode {
    let mut ok = true;
    if args.team.is_some() && args.configs.len() != 1 {
        eprintln!("--team checks a team's files against one main file: give one --config");
        return ExitCode::FAILURE;
    }
    let sources = TeamSources {
        last_good: &[],
        only: args
            .team
            .as_deref()
            .map(|team| (team, args.files.as_slice())),
    };
    for path in &args.configs {
        let config = match Config::load_with(path, sources) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("{error}");
                ok = false;
                continue;
            }
        };
        let report = config.check();
        println!(
            "{}: loaded ({} issuers, {} policies, {} tests, {} team files)",
            path.display(),
            config.issuers.len(),
            config.policies.len(),
            report.outcomes.len(),
            config.team_files.len(),
        );
        for refusal in &config.team_refusals {
            eprintln!("{}", refusal.message);
            ok = false;
        }
        for outcome in &report.outcomes {
            if outcome.passed {
                println!("  ok    {}", outcome.name);
            } else {
                println!("  FAIL  {}", outcome.name);
                for line in &outcome.detail {
                    println!("          {line}");
                }
            }
        }
        for warning in &report.warnings {
            println!("  warning: {warning}");
        }
        if report.failures() > 0 {
            eprintln!(
                "{}: {} of {} tests failed",
                path.display(),
                report.failures(),
                report.outcomes.len()
            );
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints the decision trace for a claims file. Exit 0 when the decision is allow.
pub fn explain(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    for refusal in &config.team_refusals {
        eprintln!("warning: {}", refusal.message);
    }
    let text = std::fs::read_to_string(&args.claims)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.claims.display()))?;
    let claims: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a JSON object of claims: {e}",
            args.claims.display()
        )
    })?;
    let issuer = match claims.get("iss").and_then(Value::as_str) {
        Some(url) => config.issuers.iter().find(|i| i.url == url),
        None if config.issuers.len() == 1 => config.issuers.first(),
        None => None,
    };
    let Some(issuer) = issuer else {
        anyhow::bail!("no configured issuer matches the claims' `iss`");
    };
    let service_account = args
        .service_account
        .as_deref()
        .map(ServiceAccountRef::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let audiences = (!args.audiences.is_empty()).then(|| args.audiences.clone());
    let request = Request::new(
        service_account,
        audiences,
        args.ttl.map(ConfigDuration::as_secs),
    )?;
    let (decision, trace) = config.policies.explain(&issuer.name, &claims, &request);
    println!("issuer {:?} ({})", issuer.name, issuer.url);
    for line in trace {
        println!("  {line}");
    }
    match decision {
        Ok(grant) => {
            println!(
                "allow: {} for audiences {:?}, {}s{}{} (policy {:?})",
                grant.service_account,
                grant.audiences,
                grant.expiration_secs,
                grant
                    .reduced_from_secs
                    .map(|asked| format!(", reduced from {asked}s"))
                    .unwrap_or_default(),
                if grant.revocable { ", revocable" } else { "" },
                grant.policy
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(denial) => {
            println!("deny: {denial} ({})", denial.metric_label());
            Ok(ExitCode::FAILURE)
        }
    }
}
