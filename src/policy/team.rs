//! Team-owned policies: files a product team keeps in its own repository, each policy confined
//! to the ceiling the main config sets for the team (issuers, namespaces, audiences, maximum
//! lifetime) and with the ceiling's `match` added to its own. Pure: raw policies in, compiled
//! policies named `team/policy` (or the first reason why not) out.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{
    ClaimPath, ConfigDuration, GrantedAccount, InvalidKey, IssuerRules, Matcher, Policy,
    PolicyError, RawPolicy, RawTest, compile_one, is_dns1123_label,
};

/// A team file as written: policies and their tests, nothing else (issuers, Kubernetes
/// settings and other teams belong to the main file).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTeamFile {
    #[serde(default)]
    pub policies: Vec<RawPolicy>,
    #[serde(default)]
    pub tests: Vec<RawTest>,
}

/// `teams.NAME.ceiling` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawCeiling {
    pub issuers: Vec<String>,
    /// Globs over the namespaces the team may grant (`payments-*`); `*` is any run of
    /// characters a namespace may hold.
    pub namespaces: Vec<String>,
    /// The audiences the team's grants may name; absent: only the API server's own (the team's
    /// policies must then omit `grant.audiences`).
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    #[serde(default)]
    pub max_ttl: Option<ConfigDuration>,
    /// Added to every policy of the team: each entry must hold as well as the policy's own.
    #[serde(rename = "match", default)]
    pub matches: BTreeMap<String, serde_json::Value>,
}

/// A compiled ceiling.
#[derive(Debug, Clone)]
pub struct Ceiling {
    pub issuers: Vec<String>,
    pub namespaces: Vec<String>,
    pub audiences: Option<Vec<String>>,
    pub max_ttl_secs: Option<u64>,
    pub matchers: Vec<(ClaimPath, Matcher)>,
}

impl Ceiling {
    /// Validates a ceiling against the main file's issuers; the error is `(key, message)`.
    pub fn compile(raw: &RawCeiling, issuers: &[IssuerRules<'_>]) -> Result<Self, InvalidKey> {
        if raw.issuers.is_empty() {
            return Err(InvalidKey::new("issuers", "name at least one issuer"));
        }
        if let Some(unknown) = raw
            .issuers
            .iter()
            .find(|name| !issuers.iter().any(|i| i.name == name.as_str()))
        {
            return Err(InvalidKey::new(
                "issuers",
                format!("unknown issuer {unknown:?}"),
            ));
        }
        if raw.namespaces.is_empty() {
            return Err(InvalidKey::new(
                "namespaces",
                "name at least one namespace glob",
            ));
        }
        if let Some(bad) = raw.namespaces.iter().find(|glob| !is_namespace_glob(glob)) {
            return Err(InvalidKey::new(
                "namespaces",
                format!(
                    "{bad:?} is not a namespace glob (lowercase letters, digits, `-` and `*`, \
                     at most 63 characters)"
                ),
            ));
        }
        if let Some(audiences) = &raw.audiences
            && (audiences.is_empty()
                || audiences
                    .iter()
                    .any(|a| a.is_empty() || a.chars().any(char::is_control)))
        {
            return Err(InvalidKey::new(
                "audiences",
                "a non-empty list of audiences, or omit the key for the API server's own",
            ));
        }
        let max_ttl_secs = raw.max_ttl.map(ConfigDuration::as_secs);
        if let Some(secs) = max_ttl_secs
            && secs < super::MIN_TTL_SECS
        {
            return Err(InvalidKey::new(
                "maxTtl",
                format!("{secs}s is under the Kubernetes minimum of 10 minutes"),
            ));
        }
        let mut matchers = Vec::with_capacity(raw.matches.len());
        for (key, value) in &raw.matches {
            let matcher = Matcher::compile(value)
                .map_err(|message| InvalidKey::new(format!("match.{key}"), message))?;
            matchers.push((ClaimPath::parse(key), matcher));
        }
        Ok(Self {
            issuers: raw.issuers.clone(),
            namespaces: raw.namespaces.clone(),
            audiences: raw.audiences.clone(),
            max_ttl_secs,
            matchers,
        })
    }

    /// Whether every namespace this account can name is inside one of the ceiling's globs.
    /// A templated namespace is inside only when that can be shown for every rendering: see
    /// [`template_inside`].
    pub fn contains(&self, account: &GrantedAccount) -> bool {
        match account.fixed() {
            Some(sa) => self
                .namespaces
                .iter()
                .any(|glob| namespace_glob_matches(glob, sa.namespace())),
            None => {
                let shape = account.namespace_shape();
                self.namespaces
                    .iter()
                    .any(|glob| template_inside(&shape, glob))
            }
        }
    }
}

/// A namespace glob: a DNS-1123 label once its stars are filled in.
fn is_namespace_glob(glob: &str) -> bool {
    !glob.is_empty()
        && glob.len() <= 63
        && glob
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'*')
}

/// Namespace names hold neither `/` nor `:`, so `*` is any run of characters here.
fn glob_regex(glob: &str) -> String {
    let parts: Vec<String> = glob.split('*').map(regex::escape).collect();
    format!("^(?:{})$", parts.join(".*"))
}

pub fn namespace_glob_matches(glob: &str, namespace: &str) -> bool {
    regex::Regex::new(&glob_regex(glob)).is_ok_and(|re| re.is_match(namespace))
}

/// Whether every namespace a template can render is inside `glob`. `shape` is the template's
/// namespace with each placeholder written `*` (`payments-${claims.x}` → `payments-*`).
///
/// Why this is sound: a rendered name is refused unless it is `NAMESPACE/NAME` with a DNS-1123
/// label before the only `/` (names hold no `/`), so whatever a claim puts into a placeholder of
/// the namespace is a run of `[a-z0-9-]`: no separator can carry it out of the namespace. The
/// shape's literal characters are `[a-z0-9-]` too, never `*`. If the glob, reading its own `*`
/// as "any run of characters", matches the shape with each placeholder's `*` taken as one
/// character that only a glob star can absorb, then every rendering of the template is matched
/// by the glob: the glob star that absorbed a placeholder absorbs its rendered run instead.
/// (`payments-${claims.x}` and `payments-${claims.x}-ci` are inside `payments-*`;
/// `pay${claims.x}` is not, since `x` may render `roll`.)
pub fn template_inside(shape: &str, glob: &str) -> bool {
    namespace_glob_matches(glob, shape)
}

/// Compiles the policies of one team file under the team's ceiling. Names become `team/name`;
/// the ceiling's `match` is added to each policy's own.
pub fn compile_team(
    team: &str,
    raw: &[RawPolicy],
    ceiling: &Ceiling,
    issuers: &[IssuerRules<'_>],
    protected: &BTreeSet<String>,
) -> Result<Vec<Policy>, PolicyError> {
    let mut compiled: Vec<Policy> = Vec::with_capacity(raw.len());
    for (index, policy) in raw.iter().enumerate() {
        let qualified = format!("{team}/{}", policy.name);
        let fail = |key: &str, message: String| PolicyError {
            index,
            policy: qualified.clone(),
            key: key.to_owned(),
            message,
        };
        if policy.name.contains('/') {
            return Err(fail(
                "name",
                "a team policy's name holds no `/` (it is qualified as TEAM/NAME)".to_owned(),
            ));
        }
        if compiled.iter().any(|p| p.name == qualified) {
            return Err(fail("name", "duplicate policy name".to_owned()));
        }
        if !ceiling.issuers.contains(&policy.issuer) {
            return Err(fail(
                "issuer",
                format!(
                    "issuer {:?} is outside team {team}'s ceiling (issuers: {:?})",
                    policy.issuer, ceiling.issuers
                ),
            ));
        }
        let Some(rules) = issuers.iter().find(|i| i.name == policy.issuer) else {
            return Err(fail(
                "issuer",
                format!("unknown issuer {:?}", policy.issuer),
            ));
        };
        let mut one = compile_one(policy, rules, &ceiling.matchers)
            .map_err(|InvalidKey { key, message }| fail(&key, message))?;
        one.name.clone_from(&qualified);
        super::check_revocable(&one).map_err(|InvalidKey { key, message }| fail(&key, message))?;
        for (i, account) in one.grant.service_accounts.iter().enumerate() {
            let key = format!("grant.serviceAccounts[{i}]");
            if !ceiling.contains(account) {
                let how = if account.fixed().is_some() {
                    "is outside"
                } else {
                    "cannot be shown to stay inside"
                };
                return Err(fail(
                    &key,
                    format!(
                        "{account}: the namespace {how} team {team}'s ceiling (namespaces: {:?})",
                        ceiling.namespaces
                    ),
                ));
            }
            if let Some(sa) = account.fixed()
                && protected.contains(sa.namespace())
            {
                return Err(fail(
                    &key,
                    format!("{account}: {} is a protected namespace", sa.namespace()),
                ));
            }
        }
        match (&ceiling.audiences, &one.grant.audiences) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(fail(
                    "grant.audiences",
                    format!(
                        "team {team}'s ceiling allows only the API server's own audiences; omit \
                         the key"
                    ),
                ));
            }
            (Some(allowed), None) => {
                return Err(fail(
                    "grant.audiences",
                    format!(
                        "name the audiences (team {team}'s ceiling allows at most {allowed:?})"
                    ),
                ));
            }
            (Some(allowed), Some(asked)) => {
                if let Some(beyond) = asked.iter().find(|a| !allowed.contains(a)) {
                    return Err(fail(
                        "grant.audiences",
                        format!(
                            "{beyond:?} is outside team {team}'s ceiling (audiences: {allowed:?})"
                        ),
                    ));
                }
            }
        }
        if let Some(max) = ceiling.max_ttl_secs
            && one.grant.max_ttl_secs > max
        {
            return Err(fail(
                "grant.maxTtl",
                format!(
                    "{}s is above team {team}'s ceiling of {max}s",
                    one.grant.max_ttl_secs
                ),
            ));
        }
        compiled.push(one);
    }
    Ok(compiled)
}

/// Whether `name` may name a team: a DNS-1123 label (it prefixes policy names and labels).
pub fn is_team_name(name: &str) -> bool {
    is_dns1123_label(name)
}
