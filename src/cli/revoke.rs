//! `tokenvend revoke`: operators revoke revocable tokens by deleting their binding Secrets,
//! with their own Kubernetes credentials (docs/revocation.md, "Revoking by hand").
//!
//! Output: stdout carries one JSON line per binding (the audit record: outcome `revoked`, or
//! `dry_run` with `--dry-run`, or `error`; `via: "cli"`); the table of what was revoked goes
//! to stderr, unless `--output json` (the JSON lines alone). Exit status: 0 when every
//! matching binding is gone (none matching is not an error), 1 when anything failed: a list
//! or a delete the API server refused or could not answer (every other binding is still
//! tried first), a named Secret that is not a binding, a config that does not load; 2 for
//! invalid flags.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use jiff::Timestamp;
use serde::Serialize;

use crate::config::{Config, ConfigDuration};
use crate::k8s::binding::operator::{self as revoke, Binding, FindError, Scope, Target};
use crate::k8s::binding::{Selector, is_label_value, subject_digest};
use crate::policy::ServiceAccountRef;

/// Deadline for each Kubernetes call.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Flags of `revoke`. Kubernetes access as for `legacy-scan` (kubeconfig, else in-cluster).
#[derive(Debug, Args)]
#[command(after_help = "\
Conditions combine: a binding is revoked when it matches every one given. At least one is \
required; to revoke every binding, say so with --issued-before now.

stdout: one JSON line (audit record) per binding; stderr: the table and any errors.
Exit status: 0 when every matching binding is gone (none matching included); 1 when anything \
failed (every other binding is still tried first); 2 for invalid flags.

Examples:
  tokenvend revoke --config tokenvend.yaml --policy deploy-webapp-production
  tokenvend revoke --config tokenvend.yaml --issuer github \\
      --subject repo:acme/webapp:ref:refs/heads/main --issued-before 2026-11-30T06:00:00Z
  tokenvend revoke --config tokenvend.yaml --binding production/tokenvend-x7k2p --dry-run")]
pub struct RevokeArgs {
    /// The config file: issuer URLs for --subject, and the namespaces of revocable grants
    /// (searched one by one when listing Secrets in all namespaces is forbidden).
    #[arg(long, env = "TOKENVEND_CONFIG")]
    config: PathBuf,
    /// One binding Secret, NAMESPACE/NAME (repeatable).
    #[arg(long = "binding", value_name = "NS/NAME", value_parser = ServiceAccountRef::parse)]
    bindings: Vec<ServiceAccountRef>,
    /// Bindings of tokens this policy granted (`team.policy` for a team file's policy).
    #[arg(long)]
    policy: Option<String>,
    /// Bindings of tokens this issuer's callers got (the issuer's name in the config).
    #[arg(long)]
    issuer: Option<String>,
    /// Bindings of tokens this caller got: its `sub` claim, with --issuer.
    #[arg(long, requires = "issuer")]
    subject: Option<String>,
    /// Bindings created before this time: RFC 3339 (2026-11-30T06:00:00Z), `now`, or a
    /// duration ago (30m, 2h).
    #[arg(long, value_parser = parse_time)]
    issued_before: Option<Timestamp>,
    /// List what would be revoked; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// How the report is shown (stderr): a table, or nothing beyond the JSON lines on stdout.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: RevokeOutput,
}

/// How `revoke` shows its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RevokeOutput {
    /// An aligned table on stderr, for people.
    Table,
    /// The JSON lines on stdout alone, for scripts.
    Json,
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    if text == "now" {
        return Ok(Timestamp::now());
    }
    if let Ok(time) = text.parse::<Timestamp>() {
        return Ok(time);
    }
    let ago: ConfigDuration = text.parse().map_err(|_| {
        format!("{text:?} is neither an RFC 3339 time, `now`, nor a duration such as 30m")
    })?;
    let ago = jiff::SignedDuration::try_from(ago.0).map_err(|e| e.to_string())?;
    Timestamp::now()
        .checked_sub(ago)
        .map_err(|e| format!("{text:?}: {e}"))
}

/// One line on stdout per binding. Never a token: a binding holds none.
#[derive(Debug, Serialize)]
struct AuditLine<'a> {
    time: String,
    request_id: &'a str,
    outcome: &'static str,
    reason: Option<&'a str>,
    via: &'static str,
    binding: String,
    policy: &'a str,
    issuer: &'a str,
    /// Caller-controlled text: cut as the service's audit record cuts claim strings.
    subject: String,
    namespace: &'a str,
    service_account: &'a str,
    expiration_timestamp: &'a str,
}

pub(super) async fn run(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    if args.bindings.is_empty()
        && args.policy.is_none()
        && args.issuer.is_none()
        && args.issued_before.is_none()
    {
        eprintln!(
            "error: name what to revoke: --binding NS/NAME, --policy NAME, --issuer NAME (with \
             --subject SUB), or --issued-before TIME; to revoke every binding, say \
             --issued-before now"
        );
        return Ok(ExitCode::from(2));
    }
    let config = Config::load(&args.config)?;
    let target = target(&args, &config)?;
    serving::crypto::install_providers()?;
    let mut kube_config = crate::k8s::client_config(CALL_TIMEOUT).await?;
    kube_config.read_timeout = Some(CALL_TIMEOUT);
    let client = kube::Client::try_from(kube_config)?;

    let found = match revoke::find(&client, &target, &Scope::AllNamespaces).await {
        Err(FindError::List { source, .. }) if revoke::is_forbidden(&source) => {
            let namespaces = revocable_namespaces(&config);
            anyhow::ensure!(
                !namespaces.is_empty(),
                "listing Secrets in all namespaces is forbidden ({source}), and the config \
                 has no revocable grant in a namespace that could be searched instead"
            );
            eprintln!(
                "note: listing Secrets in all namespaces is forbidden; searching the namespaces \
                 of the config's revocable grants: {}",
                namespaces.join(", ")
            );
            revoke::find(&client, &target, &Scope::Namespaces(namespaces)).await?
        }
        found => found?,
    };
    for error in &found.errors {
        eprintln!("error: {error}");
    }
    let bindings = found.bindings;
    if bindings.is_empty() {
        if found.errors.is_empty() {
            eprintln!("No binding Secret matches; nothing to revoke.");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("error: nothing revoked: no search succeeded with a match (errors above)");
        return Ok(ExitCode::FAILURE);
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut rows = Vec::with_capacity(bindings.len());
    let mut failed = 0;
    for binding in &bindings {
        let result = if args.dry_run {
            revoke::Result::WouldRevoke
        } else {
            revoke::revoke(&client, binding).await
        };
        let (outcome, reason) = match &result {
            revoke::Result::Revoked => ("revoked", None),
            revoke::Result::AlreadyGone => ("revoked", Some("already_gone")),
            revoke::Result::WouldRevoke => ("dry_run", None),
            revoke::Result::Failed(message) => {
                failed += 1;
                ("error", Some(message.as_str()))
            }
        };
        println!("{}", audit_line(&request_id, binding, outcome, reason));
        rows.push((binding, result));
    }
    if args.output == RevokeOutput::Table {
        eprint!("{}", table(&rows));
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} binding(s) could not be revoked; their tokens may still be valid",
            rows.len()
        );
    }
    if !found.errors.is_empty() {
        eprintln!(
            "error: {} search(es) failed (above): matching bindings there were not revoked",
            found.errors.len()
        );
    }
    if failed > 0 || !found.errors.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What the flags ask for, checked against the config.
fn target(args: &RevokeArgs, config: &Config) -> anyhow::Result<Target> {
    if let Some(policy) = &args.policy {
        anyhow::ensure!(
            is_label_value(policy),
            "--policy {policy:?}: not a policy name a binding can carry"
        );
        if !config.policies.iter().any(|p| p.name == *policy) {
            eprintln!(
                "warning: --policy {policy:?}: no such policy in {}; revoking its bindings anyway",
                args.config.display()
            );
        }
    }
    let issuer_url = match &args.issuer {
        Some(name) => Some(
            config
                .issuers
                .iter()
                .find(|issuer| issuer.name == *name)
                .map(|issuer| issuer.url.clone())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--issuer {name:?}: no such issuer in {}",
                        args.config.display()
                    )
                })?,
        ),
        None => None,
    };
    Ok(Target {
        bindings: args
            .bindings
            .iter()
            .map(|b| (b.namespace().to_owned(), b.name().to_owned()))
            .collect(),
        selector: Selector {
            policy: args.policy.clone(),
            issuer: args.issuer.clone(),
            subject: args
                .subject
                .as_ref()
                .zip(issuer_url.as_ref())
                .map(|(sub, iss)| subject_digest(iss, sub)),
            service_account: None,
            expiry_buckets: Vec::new(),
        },
        issued_before: args.issued_before,
    })
}

/// The literal namespaces of revocable grants (a templated one cannot be searched by name).
fn revocable_namespaces(config: &Config) -> Vec<String> {
    let namespaces = crate::k8s::rbac::revocation::revocable_namespaces(
        config.policies.iter().map(|p| &p.grant),
    );
    let (templated, literal): (Vec<String>, Vec<String>) = namespaces
        .into_iter()
        .partition(|ns| ns.contains(crate::k8s::rbac::TEMPLATE_MARKER));
    if !templated.is_empty() {
        eprintln!(
            "warning: bindings in templated namespaces ({}) cannot be found without listing \
             Secrets in all namespaces; name them with --binding",
            templated.join(", ")
        );
    }
    literal
}

fn audit_line(
    request_id: &str,
    binding: &Binding,
    outcome: &'static str,
    reason: Option<&str>,
) -> String {
    let line = AuditLine {
        time: Timestamp::now().to_string(),
        request_id,
        outcome,
        reason,
        via: "cli",
        binding: format!("{}/{}", binding.namespace, binding.name),
        policy: &binding.policy,
        issuer: &binding.issuer,
        subject: capped(&binding.subject),
        namespace: &binding.namespace,
        service_account: &binding.service_account,
        expiration_timestamp: &binding.expires,
    };
    serde_json::to_string(&line).expect("an audit line serialises")
}

/// Claim strings in an audit line are cut to this many characters, as the service does.
const MAX_AUDIT_CHARS: usize = 256;

fn capped(text: &str) -> String {
    text.chars().take(MAX_AUDIT_CHARS).collect()
}

const HEADERS: [&str; 6] = [
    "BINDING",
    "POLICY",
    "SUBJECT",
    "SERVICE-ACCOUNT",
    "EXPIRES",
    "RESULT",
];

/// The report as aligned columns; values are escaped, so a crafted annotation cannot drive
/// the terminal.
fn table(rows: &[(&Binding, revoke::Result)]) -> String {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|(binding, result)| {
            [
                escape(&format!("{}/{}", binding.namespace, binding.name)),
                escape(&binding.policy),
                escape(&binding.subject),
                escape(&binding.service_account),
                escape(&binding.expires),
                match result {
                    revoke::Result::Revoked => "revoked".to_owned(),
                    revoke::Result::AlreadyGone => "already gone".to_owned(),
                    revoke::Result::WouldRevoke => "would revoke (dry run)".to_owned(),
                    revoke::Result::Failed(message) => format!("FAILED: {}", escape(message)),
                },
            ]
        })
        .collect();
    let mut widths = HEADERS.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(HEADERS.map(str::to_owned)).chain(cells) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            line.push_str(cell);
            if index + 1 < row.len() {
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 3));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn escape(text: &str) -> String {
    if text.is_empty() {
        return "<none>".to_owned();
    }
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_times_are_rfc3339_now_or_a_duration_ago() {
        let before = Timestamp::now();
        assert_eq!(
            parse_time("2026-11-30T06:00:00Z").unwrap(),
            "2026-11-30T06:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert!(parse_time("now").unwrap() >= before);
        let ago = parse_time("30m").unwrap();
        let expected = before - jiff::SignedDuration::from_mins(30);
        assert!(ago >= expected && ago < before, "{ago} vs {expected}");
        for bad in ["yesterday", "2026-11-30", "-5m", ""] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn table_cells_cannot_drive_the_terminal() {
        let binding = Binding {
            namespace: "payments".into(),
            name: "tokenvend-abc".into(),
            uid: "u".into(),
            policy: "deploy".into(),
            issuer: "ci".into(),
            subject: "repo:x\u{1b}[2J\nfake row".into(),
            issuer_url: "https://ci.example.com".into(),
            service_account: "payments/deployer".into(),
            expires: String::new(),
            created: None,
            subject_label: String::new(),
        };
        let table = table(&[(&binding, revoke::Result::Revoked)]);
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(!table.contains('\u{1b}'), "{table}");
        assert!(table.contains("repo:x\\u{1b}[2J\\nfake row"), "{table}");
        assert!(table.contains("<none>"), "an empty expiry shows as <none>");
    }
}
