//! Policy: which verified identities may get a token for which ServiceAccount, with which
//! audiences and for how long. Pure: verified claims and a request in, a grant or a denial out.

mod check;
mod condition;
mod duration;
mod evaluate;
mod file;
mod index;
mod matcher;
mod names;
mod team;
mod template;
#[cfg(test)]
mod test_support;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

pub use check::{CheckReport, TestOutcome, run_tests};
pub use condition::Condition;
pub use duration::ConfigDuration;
pub use evaluate::{Denial, Grant, Request, RequestError, Trace};
pub use file::{Expectation, RawGrant, RawPolicy, RawTest, RawTestRequest};
pub use matcher::{ClaimPath, Matcher};
pub use names::{ServiceAccountRef, is_dns1123_label, is_dns1123_subdomain, is_label_value};
pub use team::{
    Ceiling, RawCeiling, RawTeamFile, compile_team, is_team_name, namespace_glob_matches,
    template_inside,
};
pub use template::GrantedAccount;

/// Kubernetes refuses tokens shorter than this (`MinTokenAgeSec`).
pub const MIN_TTL_SECS: u64 = 600;
/// Kubernetes refuses tokens longer than this (2^32 seconds).
pub const MAX_TTL_SECS: u64 = 1 << 32;
/// The TTL a grant gives when it names none (capped by its `maxTtl`).
pub const DEFAULT_TTL_SECS: u64 = 900;

/// One compiled policy: who (issuer + claim matchers) gets what (the grant).
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// The issuer's config name.
    pub issuer: String,
    pub matchers: Vec<(ClaimPath, Matcher)>,
    pub condition: Option<Condition>,
    pub grant: GrantRule,
}

/// What a policy allows, compiled from `grant:`.
#[derive(Debug, Clone)]
pub struct GrantRule {
    pub service_accounts: Vec<GrantedAccount>,
    /// Allow-list of audiences; the first is the default. `None`: only the API server's own audiences.
    pub audiences: Option<Vec<String>>,
    pub ttl_secs: u64,
    pub max_ttl_secs: u64,
    /// `grant.revocable`: each token is bound to a Secret of its own (`k8s::binding`).
    pub revocable: bool,
}

/// Namespaces no template may render into when the config names none: the cluster's own.
/// tokenvend's own namespace is added when the service knows it.
pub const DEFAULT_PROTECTED_NAMESPACES: [&str; 3] =
    ["kube-system", "kube-public", "kube-node-lease"];

/// All policies in file order, indexed by issuer so that evaluation never walks unrelated issuers' policies.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<Policy>,
    by_issuer: HashMap<String, index::IssuerPolicies>,
    /// Namespaces a templated grant never renders into (a literal grant may still name one).
    protected: BTreeSet<String>,
}

/// What an issuer contributes to policy compilation.
#[derive(Debug, Clone)]
pub struct IssuerRules<'a> {
    pub name: &'a str,
    /// Every policy on this issuer must pin one of these claims.
    pub require_claims: &'a [String],
}

/// A policy that cannot be compiled; `key` is the path inside the policy (`grant.ttl`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policies[{index}] ({policy}): {key}: {message}")]
pub struct PolicyError {
    pub index: usize,
    pub policy: String,
    pub key: String,
    pub message: String,
}

impl PolicySet {
    /// Compiles raw policies against the configured issuers. Refuses duplicates, unknown issuers,
    /// invalid names and TTLs, and policies that would match anyone the issuer vouches for.
    pub fn compile(raw: &[RawPolicy], issuers: &[IssuerRules<'_>]) -> Result<Self, PolicyError> {
        let mut set = Self::default();
        set.set_protected_namespaces(DEFAULT_PROTECTED_NAMESPACES.map(str::to_owned));
        for (index, policy) in raw.iter().enumerate() {
            let fail = |key: &str, message: String| PolicyError {
                index,
                policy: policy.name.clone(),
                key: key.to_owned(),
                message,
            };
            if set.policies.iter().any(|p| p.name == policy.name) {
                return Err(fail("name", "duplicate policy name".to_owned()));
            }
            let Some(issuer) = issuers.iter().find(|i| i.name == policy.issuer) else {
                return Err(fail(
                    "issuer",
                    format!("unknown issuer {:?}", policy.issuer),
                ));
            };
            let compiled = compile_one(policy, issuer, &[])
                .and_then(|compiled| check_revocable(&compiled).map(|()| compiled))
                .map_err(|InvalidKey { key, message }| fail(&key, message))?;
            set.by_issuer
                .entry(compiled.issuer.clone())
                .or_default()
                .all
                .push(set.policies.len());
            set.policies.push(compiled);
        }
        for issuer in set.by_issuer.values_mut() {
            issuer.build_index(&set.policies);
        }
        Ok(set)
    }

    /// Adds compiled policies (a team's) after those already here, and rebuilds the claim
    /// index, so that it spans every file. The caller keeps names unique.
    pub fn extend(&mut self, policies: impl IntoIterator<Item = Policy>) {
        self.policies.extend(policies);
        self.by_issuer.clear();
        for (index, policy) in self.policies.iter().enumerate() {
            self.by_issuer
                .entry(policy.issuer.clone())
                .or_default()
                .all
                .push(index);
        }
        for issuer in self.by_issuer.values_mut() {
            issuer.build_index(&self.policies);
        }
    }

    /// Whether a policy of this name is here.
    pub fn contains(&self, name: &str) -> bool {
        self.policies.iter().any(|p| p.name == name)
    }

    /// The policies of one issuer to test against these claims (indices, in file order): those
    /// the claim index leaves; the others certainly do not apply (see [`index`]).
    fn to_test(&self, issuer: &str, claims: &Map<String, Value>) -> Cow<'_, [usize]> {
        match self.by_issuer.get(issuer) {
            None => Cow::Borrowed(&[]),
            Some(policies) => policies.candidates(claims),
        }
    }

    /// Notes, for an explanation, each policy of `issuer` that the claim index left out of
    /// `candidates`: its value of the indexed claim is not the caller's.
    fn note_left_out(&self, issuer: &str, candidates: &[usize], trace: &mut Trace) {
        let Some(policies) = self.by_issuer.get(issuer) else {
            return;
        };
        let Some(claim) = policies.indexed_claim() else {
            return;
        };
        for index in policies.all.iter().filter(|i| !candidates.contains(i)) {
            let name = &self.policies[*index].name;
            trace.note(|| format!("policy {name:?}: claim {} does not match", claim.as_str()));
        }
    }

    /// Replaces the protected namespaces (the defaults are [`DEFAULT_PROTECTED_NAMESPACES`]).
    pub fn set_protected_namespaces(&mut self, namespaces: impl IntoIterator<Item = String>) {
        self.protected = namespaces.into_iter().collect();
    }

    /// Protects one more namespace: tokenvend's own, once known.
    pub fn protect_namespace(&mut self, namespace: &str) {
        self.protected.insert(namespace.to_owned());
    }

    /// Whether no template may render into `namespace`.
    pub fn is_protected(&self, namespace: &str) -> bool {
        self.protected.contains(namespace)
    }

    /// The protected namespaces, sorted.
    pub fn protected_namespaces(&self) -> impl Iterator<Item = &str> {
        self.protected.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter()
    }

    /// The namespaces revocable policies name literally (a templated namespace is known only
    /// per request).
    pub fn revocable_namespaces(&self) -> BTreeSet<String> {
        self.policies
            .iter()
            .filter(|policy| policy.grant.revocable)
            .flat_map(|policy| &policy.grant.service_accounts)
            .map(|account| account.written_parts().0)
            .filter(|namespace| !namespace.contains("${"))
            .collect()
    }
}

/// What is wrong with one key of a config entry (a policy, a grant, a team ceiling, an
/// issuer); the loader names the file and the entry around it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct InvalidKey {
    /// The key as written in the file (`match.ref`, `grant.ttl`, ...).
    pub key: String,
    pub message: String,
}

impl InvalidKey {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Compiles one policy; `ceiling` holds the matchers a team ceiling adds (none for the main
/// file's policies).
fn compile_one(
    raw: &RawPolicy,
    issuer: &IssuerRules<'_>,
    ceiling: &[(ClaimPath, Matcher)],
) -> Result<Policy, InvalidKey> {
    if raw.name.is_empty() || raw.name.len() > 128 || raw.name.chars().any(char::is_control) {
        return Err(InvalidKey::new(
            "name",
            "must be 1 to 128 printable characters",
        ));
    }
    let mut matchers = Vec::with_capacity(raw.matches.len());
    for (key, value) in &raw.matches {
        let matcher = Matcher::compile(value)
            .map_err(|message| InvalidKey::new(format!("match.{key}"), message))?;
        matchers.push((ClaimPath::parse(key), matcher));
    }
    if !matchers
        .iter()
        .any(|(path, matcher)| path.identifies_caller() && !matcher.accepts_anything())
    {
        return Err(InvalidKey::new(
            "match",
            cannot_tell_apart(issuer.name, &matchers, raw),
        ));
    }
    // The ceiling's match does not count towards telling callers apart (checked above on the
    // policy's own match): a ceiling is shared by every policy of the team and usually pins
    // no more than an organisation, so a team policy that pins nothing of its own would grant
    // every pipeline of that organisation, other teams' included. It does count towards the
    // issuer's `requireClaims`: those exist so that no policy on a shared issuer reaches
    // beyond the owner it names, and a ceiling entry is ANDed into the policy exactly like its
    // own, so an owner pinned by the ceiling holds for every request the policy grants.
    matchers.extend(ceiling.iter().cloned());
    // Pinning means exact values: a glob or regex on a required claim would defeat the point.
    let pins = |claim: &String| {
        matchers.iter().any(|(path, matcher)| {
            path.as_str() == claim && matches!(matcher, Matcher::Exact(_) | Matcher::OneOf(_))
        })
    };
    if !issuer.require_claims.is_empty() && !issuer.require_claims.iter().any(pins) {
        return Err(InvalidKey::new(
            "match",
            format!(
                "issuer {:?} requires every policy to pin one of {:?} to exact values",
                issuer.name, issuer.require_claims
            ),
        ));
    }
    let condition = raw
        .condition
        .as_deref()
        .map(Condition::compile)
        .transpose()
        .map_err(|message| InvalidKey::new("condition", message))?;
    Ok(Policy {
        name: raw.name.clone(),
        issuer: raw.issuer.clone(),
        matchers,
        condition,
        grant: compile_grant(&raw.grant)?,
    })
}

/// Why a match would grant every identity of its issuer: what each entry fails to pin.
fn cannot_tell_apart(issuer: &str, matchers: &[(ClaimPath, Matcher)], raw: &RawPolicy) -> String {
    let mut reasons: Vec<String> = matchers
        .iter()
        .map(|(path, _)| {
            if path.identifies_caller() {
                format!("`{}` accepts any value", path.as_str())
            } else {
                format!("`{}` says nothing about who is asking", path.as_str())
            }
        })
        .collect();
    if raw.condition.is_some() {
        reasons.push("a condition alone is not enough".to_owned());
    }
    if reasons.is_empty() {
        reasons.push("the match is empty".to_owned());
    }
    format!(
        "cannot tell callers of issuer {issuer:?} apart ({}); pin at least one identifying claim \
         (not {}) to a value or a pattern that excludes someone",
        reasons.join(", "),
        matcher::NON_IDENTIFYING_CLAIMS.join("/"),
    )
}

fn compile_grant(raw: &RawGrant) -> Result<GrantRule, InvalidKey> {
    if raw.service_accounts.is_empty() {
        return Err(InvalidKey::new(
            "grant.serviceAccounts",
            "must name at least one NAMESPACE/NAME",
        ));
    }
    let mut service_accounts = Vec::with_capacity(raw.service_accounts.len());
    for (i, text) in raw.service_accounts.iter().enumerate() {
        let sa = GrantedAccount::parse(text).map_err(|message| {
            InvalidKey::new(
                format!("grant.serviceAccounts[{i}]"),
                format!("{text:?}: {message}"),
            )
        })?;
        service_accounts.push(sa);
    }
    if let Some(audiences) = &raw.audiences {
        if audiences.is_empty() {
            return Err(InvalidKey::new(
                "grant.audiences",
                "omit the key for the API server's audiences; an empty list grants nothing",
            ));
        }
        if let Some(bad) = audiences
            .iter()
            .find(|a| a.is_empty() || a.chars().any(char::is_control))
        {
            return Err(InvalidKey::new(
                "grant.audiences",
                format!("invalid audience {bad:?}"),
            ));
        }
    }
    let max_ttl_secs = raw
        .max_ttl
        .map_or(raw.ttl.map_or(DEFAULT_TTL_SECS, |t| t.as_secs()), |t| {
            t.as_secs()
        });
    let ttl_secs = raw
        .ttl
        .map_or(DEFAULT_TTL_SECS.min(max_ttl_secs), |t| t.as_secs());
    for (key, secs) in [("grant.ttl", ttl_secs), ("grant.maxTtl", max_ttl_secs)] {
        if secs < MIN_TTL_SECS {
            return Err(InvalidKey::new(
                key,
                format!("{secs}s is under the Kubernetes minimum of 10 minutes"),
            ));
        }
        if secs > MAX_TTL_SECS {
            return Err(InvalidKey::new(
                key,
                format!("{secs}s is over the Kubernetes maximum of 2^32 seconds"),
            ));
        }
    }
    if ttl_secs > max_ttl_secs {
        return Err(InvalidKey::new(
            "grant.ttl",
            format!("default {ttl_secs}s is above maxTtl {max_ttl_secs}s"),
        ));
    }
    Ok(GrantRule {
        service_accounts,
        audiences: raw.audiences.clone(),
        ttl_secs,
        max_ttl_secs,
        revocable: raw.revocable,
    })
}

/// The `tokenvend.io/policy` label value of a policy: its name, with a team policy's
/// `TEAM/NAME` written `TEAM.NAME` (a label value holds no `/`).
pub fn policy_label(name: &str) -> String {
    name.replacen('/', ".", 1)
}

/// A revocable policy's name and issuer name become label values of its binding Secrets
/// (`k8s::binding`), so both must be valid label values.
fn check_revocable(policy: &Policy) -> Result<(), InvalidKey> {
    if !policy.grant.revocable {
        return Ok(());
    }
    let label = policy_label(&policy.name);
    if !is_label_value(&label) {
        return Err(InvalidKey::new(
            "grant.revocable",
            format!(
                "the policy name {label:?} labels its token bindings, so it must be a valid \
                 Kubernetes label value (at most 63 characters: letters, digits, `-`, `_`, `.`, \
                 starting and ending with a letter or digit)"
            ),
        ));
    }
    if !is_label_value(&policy.issuer) {
        return Err(InvalidKey::new(
            "grant.revocable",
            format!(
                "the issuer name {:?} labels this policy's token bindings, so it must be a \
                 valid Kubernetes label value (at most 63 characters: letters, digits, `-`, \
                 `_`, `.`, starting and ending with a letter or digit)",
                policy.issuer
            ),
        ));
    }
    Ok(())
}
