//! Configuration: the YAML file (config/ holds examples), read strictly and compiled once into validated
//! types. After [`Config::load`] succeeds, an invalid setting cannot be represented.

mod issuer;
mod store;
mod teams;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Config-file durations; defined beside the policy file format, which uses them too.
pub use crate::policy::ConfigDuration;
pub use issuer::RawIssuer;
pub use teams::{Team, TeamFile, TeamRefusal, TeamSources, fingerprint, list_files};

use crate::oidc::IssuerSettings;
use crate::policy::{
    Ceiling, CheckReport, DEFAULT_PROTECTED_NAMESPACES, InvalidKey, IssuerRules, PolicySet,
    RawPolicy, RawTest, is_dns1123_label, is_team_name, run_tests,
};
use crate::store::StoreSettings;

/// The deadline for one TokenRequest when the file sets none.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    kubernetes: RawKubernetes,
    /// Where replay records and rate limits are shared; absent: in this process only.
    store: Option<store::RawStore>,
    issuers: Vec<RawIssuer>,
    policies: Vec<RawPolicy>,
    /// Policy test cases, run by `tokenvend check` (ignored by `serve`).
    #[serde(default)]
    tests: Vec<RawTest>,
    /// Policy files owned by teams, by team name.
    #[serde(default)]
    teams: std::collections::BTreeMap<String, teams::RawTeam>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawKubernetes {
    request_timeout: Option<ConfigDuration>,
    kubeconfig_server: Option<String>,
    #[serde(rename = "kubeconfigCAFile")]
    kubeconfig_ca_file: Option<PathBuf>,
    /// Namespaces no templated grant renders into; absent: [`DEFAULT_PROTECTED_NAMESPACES`].
    protected_namespaces: Option<Vec<String>>,
}

/// How tokenvend talks to the Kubernetes API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSettings {
    /// The deadline for one TokenRequest, retries included.
    pub request_timeout: Duration,
    /// The API server URL written into kubeconfig outputs; `None`: the client's own.
    pub kubeconfig_server: Option<String>,
    /// The CA bundle (PEM) written into kubeconfig outputs; `None`: the client's own roots.
    /// Read when the service starts.
    pub kubeconfig_ca_file: Option<PathBuf>,
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    pub kubernetes: KubernetesSettings,
    /// The shared store; `None`: replay records and rate limits live in this process only.
    /// Read when the service starts (a reload does not change it).
    pub store: Option<StoreSettings>,
    pub issuers: Vec<IssuerSettings>,
    /// The main file's policies, then those of every team file in force (team by team, file
    /// by file), under one claim index.
    pub policies: PolicySet,
    pub tests: Vec<RawTest>,
    pub teams: Vec<Team>,
    /// The team files in force (for `check`'s tests and the next reload's last good versions).
    pub team_files: Vec<TeamFile>,
    /// The team files refused at this load; the rest of the config is in force without them.
    pub team_refusals: Vec<TeamRefusal>,
}

/// Why a config file was refused. The message names the file and, where it can, the line,
/// the policy or issuer, and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

impl Config {
    /// Reads and validates a config file, without touching the network.
    /// A team file that is refused does not refuse the config: see [`Config::team_refusals`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, TeamSources::default())
    }

    /// [`Config::load`], with the team files in force so far (on reload) or a team's files
    /// named on the command line (`check --team`).
    pub fn load_with(path: &Path, sources: TeamSources<'_>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse_with(&text, path, sources)
    }

    /// Validates config text; `source` is used in messages, and team file patterns are
    /// relative to its directory.
    pub fn parse(text: &str, source: &Path) -> Result<Self, ConfigError> {
        Self::parse_with(text, source, TeamSources::default())
    }

    fn parse_with(
        text: &str,
        source: &Path,
        sources: TeamSources<'_>,
    ) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: source.to_owned(),
            message,
        };
        let raw: RawConfig =
            serde_saphyr::from_str(text).map_err(|e| invalid(syntax_message(&e)))?;
        let mut issuers: Vec<IssuerSettings> = Vec::with_capacity(raw.issuers.len());
        for (index, issuer) in raw.issuers.iter().enumerate() {
            let compiled = issuer.compile().map_err(|InvalidKey { key, message }| {
                invalid(format!(
                    "issuers[{index}] ({}): {key}: {message}",
                    issuer.name
                ))
            })?;
            if let Some(clash) = issuers
                .iter()
                .find(|i| i.name == compiled.name || i.url == compiled.url)
            {
                return Err(invalid(format!(
                    "issuers[{index}] ({}): name and url must be unique; clashes with issuer {:?}",
                    compiled.name, clash.name
                )));
            }
            issuers.push(compiled);
        }
        if issuers.is_empty() {
            return Err(invalid(
                "issuers: at least one issuer is required".to_owned(),
            ));
        }
        let rules: Vec<IssuerRules<'_>> = issuers
            .iter()
            .map(|i| IssuerRules {
                name: &i.name,
                require_claims: &i.require_claims,
            })
            .collect();
        let mut policies =
            PolicySet::compile(&raw.policies, &rules).map_err(|e| invalid(e.to_string()))?;
        policies.set_protected_namespaces(
            raw.kubernetes.protected_namespaces().map_err(|message| {
                invalid(format!("kubernetes: protectedNamespaces: {message}"))
            })?,
        );
        let mut teams = Vec::with_capacity(raw.teams.len());
        for (name, team) in &raw.teams {
            if !is_team_name(name) {
                return Err(invalid(format!(
                    "teams: {name:?}: a team name is a DNS-1123 label (lowercase letters, \
                     digits and `-`)"
                )));
            }
            let ceiling = Ceiling::compile(&team.ceiling, &rules).map_err(
                |InvalidKey { key, message }| {
                    invalid(format!("teams.{name}.ceiling.{key}: {message}"))
                },
            )?;
            let files = teams::resolve_pattern(source, &team.files)
                .map_err(|message| invalid(format!("teams.{name}.files: {message}")))?;
            teams.push(Team {
                name: name.clone(),
                files,
                ceiling,
            });
        }
        if let Some((only, _)) = sources.only
            && !teams.iter().any(|t| t.name == only)
        {
            return Err(invalid(format!("teams: no team {only:?}")));
        }
        let protected = policies.protected_namespaces().map(str::to_owned).collect();
        let taken = policies.iter().map(|p| p.name.clone()).collect();
        let load = teams::load(&teams, &rules, &protected, taken, sources);
        policies.extend(load.policies);
        let kubernetes = raw.kubernetes.compile().map_err(invalid)?;
        let store = raw
            .store
            .map(store::RawStore::compile)
            .transpose()
            .map_err(invalid)?;
        Ok(Self {
            source: source.to_owned(),
            kubernetes,
            store,
            issuers,
            policies,
            tests: raw.tests,
            teams,
            team_files: load.files,
            team_refusals: load.refusals,
        })
    }

    /// Protects the namespace tokenvend runs in (when known) on top of
    /// `kubernetes.protectedNamespaces`: no templated grant renders into it.
    pub fn protect_own_namespace(&mut self, namespace: Option<&str>) {
        if let Some(namespace) = namespace {
            self.policies.protect_namespace(namespace);
        }
    }

    /// Runs the config's `tests:` cases and reports overlaps (what `tokenvend check` adds to
    /// loading). A test's `iss` claim picks the issuer; without one, the only issuer.
    /// A team file's tests run against every policy in force (as the service decides); a
    /// test's `policy:` without a `/` names a policy of its own team.
    pub fn check(&self) -> CheckReport {
        let mut tests = self.tests.clone();
        for file in &self.team_files {
            tests.extend(file.raw.tests.iter().map(|test| RawTest {
                name: format!("{} ({}): {}", file.team, file.path.display(), test.name),
                policy: test.policy.as_ref().map(|policy| {
                    if policy.contains('/') {
                        policy.clone()
                    } else {
                        format!("{}/{policy}", file.team)
                    }
                }),
                ..test.clone()
            }));
        }
        run_tests(&self.policies, &tests, |claimed| match claimed {
            Some(url) => self
                .issuers
                .iter()
                .find(|i| i.url == url)
                .map(|i| i.name.clone()),
            None if self.issuers.len() == 1 => Some(self.issuers[0].name.clone()),
            None => None,
        })
    }
}

impl RawKubernetes {
    /// The namespaces as written (each a valid namespace name), or the defaults.
    fn protected_namespaces(&self) -> Result<Vec<String>, String> {
        let Some(namespaces) = &self.protected_namespaces else {
            return Ok(DEFAULT_PROTECTED_NAMESPACES.map(str::to_owned).to_vec());
        };
        match namespaces.iter().find(|n| !is_dns1123_label(n)) {
            Some(bad) => Err(format!("{bad:?} is not a valid namespace name")),
            None => Ok(namespaces.clone()),
        }
    }

    fn compile(self) -> Result<KubernetesSettings, String> {
        if let Some(server) = &self.kubeconfig_server {
            check_kubeconfig_server(server)
                .map_err(|message| format!("kubernetes: kubeconfigServer: {message}"))?;
        }
        Ok(KubernetesSettings {
            request_timeout: self
                .request_timeout
                .map_or(DEFAULT_REQUEST_TIMEOUT, |d| d.0),
            kubeconfig_server: self.kubeconfig_server,
            kubeconfig_ca_file: self.kubeconfig_ca_file,
        })
    }
}

/// An `https` URL with a host and nothing a kubeconfig `server` cannot carry.
fn check_kubeconfig_server(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(format!("{text:?} must be an https URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{text:?} must not carry a query, fragment or credentials"
        ));
    }
    Ok(())
}

/// serde-saphyr renders a snippet naming `<input>`; the first line already says `line L column C: ...`.
fn syntax_message(error: &serde_saphyr::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

#[cfg(test)]
mod tests;
