//! Evaluation: the first policy in file order whose issuer and matchers hold and whose grant
//! covers the request wins. A denial carries an internal reason; callers never see it.

use serde_json::{Map, Value};

use super::{MAX_TTL_SECS, MIN_TTL_SECS, Policy, PolicySet, ServiceAccountRef};

/// What the caller asked for; every field optional. Built only through [`Request::new`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    service_account: Option<ServiceAccountRef>,
    audiences: Option<Vec<String>>,
    expiration_secs: Option<u64>,
}

/// A request that cannot be honoured whatever the policy says (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("expirationSeconds must be at least {MIN_TTL_SECS} (the Kubernetes minimum)")]
    ExpirationTooShort,
    #[error("expirationSeconds must be at most 2^32")]
    ExpirationTooLong,
    #[error("audiences must be a non-empty list of non-empty strings")]
    InvalidAudiences,
}

impl Request {
    /// Validates what no policy can make valid.
    pub fn new(
        service_account: Option<ServiceAccountRef>,
        audiences: Option<Vec<String>>,
        expiration_secs: Option<u64>,
    ) -> Result<Self, RequestError> {
        match expiration_secs {
            Some(secs) if secs < MIN_TTL_SECS => return Err(RequestError::ExpirationTooShort),
            Some(secs) if secs > MAX_TTL_SECS => return Err(RequestError::ExpirationTooLong),
            _ => {}
        }
        if let Some(list) = &audiences
            && (list.is_empty()
                || list
                    .iter()
                    .any(|a| a.is_empty() || a.chars().any(char::is_control)))
        {
            return Err(RequestError::InvalidAudiences);
        }
        Ok(Self {
            service_account,
            audiences,
            expiration_secs,
        })
    }

    pub fn service_account(&self) -> Option<&ServiceAccountRef> {
        self.service_account.as_ref()
    }

    pub fn audiences(&self) -> Option<&[String]> {
        self.audiences.as_deref()
    }
}

/// The decision to issue: everything the TokenRequest needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub policy: String,
    pub service_account: ServiceAccountRef,
    /// Empty: let the API server use its own audiences.
    pub audiences: Vec<String>,
    pub expiration_secs: u64,
    /// Set when the caller asked for more than the policy's `maxTtl`.
    pub reduced_from_secs: Option<u64>,
    /// The policy's `grant.revocable`: the token is bound to a Secret of its own.
    pub revocable: bool,
}

/// Why no token is issued. The reason is for the audit log; the caller gets a generic 403
/// (or, for [`Denial::AmbiguousServiceAccount`], a 400 listing its own choices).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("no policy matches this identity")]
    NoPolicyMatched,
    #[error("no matching policy grants service account {0}")]
    ServiceAccountNotGranted(ServiceAccountRef),
    #[error("no matching policy granting {0} allows the requested audiences")]
    AudienceNotAllowed(ServiceAccountRef),
    #[error("several service accounts are granted; the request must name one")]
    AmbiguousServiceAccount(Vec<ServiceAccountRef>),
}

impl Denial {
    /// A fixed label for metrics and the audit log.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::NoPolicyMatched => "no_policy_matched",
            Self::ServiceAccountNotGranted(_) => "service_account_not_granted",
            Self::AudienceNotAllowed(_) => "audience_not_allowed",
            Self::AmbiguousServiceAccount(_) => "service_account_ambiguous",
        }
    }
}

/// Where a decision's explanation goes (`tokenvend explain`, `check`). Off on the request
/// path, where it costs nothing; on or off, the same policies are tested the same way.
#[derive(Debug, Default)]
pub struct Trace {
    lines: Option<Vec<String>>,
}

impl Trace {
    /// Records nothing.
    pub fn off() -> Self {
        Self { lines: None }
    }

    /// Records a line per step.
    pub fn on() -> Self {
        Self {
            lines: Some(Vec::new()),
        }
    }

    pub(super) fn is_on(&self) -> bool {
        self.lines.is_some()
    }

    pub(super) fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.lines {
            lines.push(line());
        }
    }

    /// The lines recorded (none when off).
    pub fn into_lines(self) -> Vec<String> {
        self.lines.unwrap_or_default()
    }
}

/// A policy that applies to the caller, with the service accounts it grants them.
#[derive(Debug, Clone)]
pub struct Applicable<'p> {
    pub policy: &'p Policy,
    pub service_accounts: Vec<ServiceAccountRef>,
}

impl PolicySet {
    /// Decides `request` for an identity vouched for by `issuer` (its config name) with these
    /// verified claims.
    pub fn evaluate(
        &self,
        issuer: &str,
        claims: &Map<String, Value>,
        request: &Request,
    ) -> Result<Grant, Denial> {
        self.decide(issuer, claims, request, &mut Trace::off())
    }

    /// The same decision, made the same way, with a line per step explaining it: each policy
    /// of the issuer that does not apply is named with the reason.
    pub fn explain(
        &self,
        issuer: &str,
        claims: &Map<String, Value>,
        request: &Request,
    ) -> (Result<Grant, Denial>, Vec<String>) {
        let mut trace = Trace::on();
        let decision = self.decide(issuer, claims, request, &mut trace);
        (decision, trace.into_lines())
    }

    fn decide(
        &self,
        issuer: &str,
        claims: &Map<String, Value>,
        request: &Request,
        trace: &mut Trace,
    ) -> Result<Grant, Denial> {
        let applicable = self.applicable(issuer, claims, trace);
        if applicable.is_empty() {
            return Err(Denial::NoPolicyMatched);
        }
        let wanted = match &request.service_account {
            Some(sa) => sa.clone(),
            None => only_choice(&applicable)?,
        };
        let granting: Vec<&Applicable<'_>> = applicable
            .iter()
            .filter(|a| a.service_accounts.contains(&wanted))
            .collect();
        if granting.is_empty() {
            trace.note(|| format!("no applicable policy grants {wanted}"));
            return Err(Denial::ServiceAccountNotGranted(wanted));
        }
        for candidate in granting {
            match candidate.policy.grant_for(&wanted, request) {
                Some(grant) => {
                    trace.note(|| format!("policy {:?} grants {wanted}", grant.policy));
                    return Ok(grant);
                }
                None => trace.note(|| {
                    format!(
                        "policy {:?} grants {wanted} but not the requested audiences",
                        candidate.policy.name
                    )
                }),
            }
        }
        Err(Denial::AudienceNotAllowed(wanted))
    }

    /// The policies that apply to these claims, in file order, each with the service accounts
    /// it grants them (templates rendered; a name that renders invalid, or into a protected
    /// namespace, grants nothing). Only the candidates the issuer's claim index leaves are
    /// tested; a trace names the others as not matching the indexed claim.
    pub fn applicable<'s>(
        &'s self,
        issuer: &str,
        claims: &Map<String, Value>,
        trace: &mut Trace,
    ) -> Vec<Applicable<'s>> {
        let mut applicable = Vec::new();
        let candidates = self.to_test(issuer, claims);
        if trace.is_on() {
            self.note_left_out(issuer, &candidates, trace);
        }
        for &index in candidates.iter() {
            let policy = &self.policies[index];
            if !policy.applies(claims, trace) {
                continue;
            }
            let mut service_accounts = Vec::new();
            for account in &policy.grant.service_accounts {
                match account.render(claims) {
                    Ok(sa) if account.fixed().is_none() && self.is_protected(sa.namespace()) => {
                        trace.note(|| {
                            format!(
                                "policy {:?}: {account}: renders {sa}, in a protected namespace",
                                policy.name
                            )
                        });
                    }
                    Ok(sa) if !service_accounts.contains(&sa) => service_accounts.push(sa),
                    Ok(_) => {}
                    Err(reason) => {
                        trace.note(|| format!("policy {:?}: {account}: {reason}", policy.name))
                    }
                }
            }
            if service_accounts.is_empty() {
                trace.note(|| {
                    format!(
                        "policy {:?} applies but grants no valid service account",
                        policy.name
                    )
                });
                continue;
            }
            trace.note(|| format!("policy {:?} applies", policy.name));
            applicable.push(Applicable {
                policy,
                service_accounts,
            });
        }
        if applicable.is_empty() {
            trace.note(|| format!("no policy of issuer {issuer:?} applies"));
        }
        applicable
    }
}

fn only_choice(applicable: &[Applicable<'_>]) -> Result<ServiceAccountRef, Denial> {
    let mut choices: Vec<ServiceAccountRef> = Vec::new();
    for sa in applicable.iter().flat_map(|a| &a.service_accounts) {
        if !choices.contains(sa) {
            choices.push(sa.clone());
        }
    }
    match choices.len() {
        1 => Ok(choices.remove(0)),
        _ => Err(Denial::AmbiguousServiceAccount(choices)),
    }
}

impl Policy {
    /// Whether every matcher and the condition hold for these claims.
    pub fn applies(&self, claims: &Map<String, Value>, trace: &mut Trace) -> bool {
        for (path, matcher) in &self.matchers {
            if !path
                .lookup(claims)
                .is_some_and(|value| matcher.holds(value))
            {
                trace.note(|| {
                    let hint = path
                        .lookup(claims)
                        .and_then(|value| matcher.separator_hint(value))
                        .map(|hint| format!(" ({hint})"))
                        .unwrap_or_default();
                    format!(
                        "policy {:?}: claim {} does not match{hint}",
                        self.name,
                        path.as_str()
                    )
                });
                return false;
            }
        }
        let Some(condition) = &self.condition else {
            return true;
        };
        match condition.holds(claims) {
            Ok(true) => true,
            Ok(false) => {
                trace.note(|| format!("policy {:?}: condition is false", self.name));
                false
            }
            Err(reason) => {
                tracing::debug!(policy = %self.name, %reason, "policy condition undecided");
                trace.note(|| format!("policy {:?}: {reason}", self.name));
                false
            }
        }
    }

    fn grant_for(&self, service_account: &ServiceAccountRef, request: &Request) -> Option<Grant> {
        let audiences = match (&request.audiences, &self.grant.audiences) {
            (None, None) => Vec::new(),
            (None, Some(allowed)) => vec![allowed[0].clone()],
            (Some(_), None) => return None,
            (Some(asked), Some(allowed)) => {
                if !asked.iter().all(|a| allowed.contains(a)) {
                    return None;
                }
                asked.clone()
            }
        };
        let asked_secs = request.expiration_secs.unwrap_or(self.grant.ttl_secs);
        let expiration_secs = asked_secs.min(self.grant.max_ttl_secs);
        Some(Grant {
            policy: self.name.clone(),
            service_account: service_account.clone(),
            audiences,
            expiration_secs,
            reduced_from_secs: (asked_secs > expiration_secs).then_some(asked_secs),
            revocable: self.grant.revocable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{claims, compile as set};
    use super::*;
    use serde_json::json;

    fn sa(text: &str) -> ServiceAccountRef {
        ServiceAccountRef::parse(text).unwrap()
    }

    fn two_policies() -> PolicySet {
        set(json!([
            {"name": "deploy", "issuer": "ci", "match": {"repo": "acme/app", "ref": "refs/heads/main"},
             "grant": {"serviceAccounts": ["prod/deployer"], "audiences": ["https://k8s", "https://vault"],
                       "ttl": "15m", "maxTtl": "1h"}},
            {"name": "read", "issuer": "ci", "match": {"repo": "acme/app"},
             "grant": {"serviceAccounts": ["prod/reader", "prod/deployer"], "ttl": "10m"}},
            {"name": "other-issuer", "issuer": "other", "match": {"repo": "acme/app"},
             "grant": {"serviceAccounts": ["prod/admin"]}},
        ]))
    }

    #[test]
    fn first_matching_policy_in_file_order_wins() {
        let policies = two_policies();
        let main = claims(json!({"repo": "acme/app", "ref": "refs/heads/main"}));
        let request = Request::new(Some(sa("prod/deployer")), None, None).unwrap();
        let grant = policies.evaluate("ci", &main, &request).unwrap();
        assert_eq!(grant.policy, "deploy");
        assert_eq!(grant.audiences, ["https://k8s"]);
        assert_eq!(grant.expiration_secs, 900);
    }

    #[test]
    fn a_later_policy_grants_when_the_first_does_not_cover_the_request() {
        let policies = two_policies();
        let main = claims(json!({"repo": "acme/app", "ref": "refs/heads/main"}));
        let reader = Request::new(Some(sa("prod/reader")), None, None).unwrap();
        assert_eq!(
            policies.evaluate("ci", &main, &reader).unwrap().policy,
            "read"
        );
        let feature = claims(json!({"repo": "acme/app", "ref": "refs/heads/feature"}));
        let deployer = Request::new(Some(sa("prod/deployer")), None, None).unwrap();
        let grant = policies.evaluate("ci", &feature, &deployer).unwrap();
        assert_eq!(
            (
                grant.policy.as_str(),
                grant.audiences.len(),
                grant.expiration_secs
            ),
            ("read", 0, 600)
        );
    }

    #[test]
    fn denials_carry_the_internal_reason() {
        let policies = two_policies();
        let main = claims(json!({"repo": "acme/app", "ref": "refs/heads/main"}));
        let rows: Vec<(&str, Map<String, Value>, Request, Denial)> = vec![
            (
                "ci",
                claims(json!({"repo": "evil/app"})),
                Request::default(),
                Denial::NoPolicyMatched,
            ),
            (
                "unknown",
                main.clone(),
                Request::default(),
                Denial::NoPolicyMatched,
            ),
            (
                "ci",
                main.clone(),
                Request::new(Some(sa("prod/admin")), None, None).unwrap(),
                Denial::ServiceAccountNotGranted(sa("prod/admin")),
            ),
            (
                "ci",
                main.clone(),
                Request::new(
                    Some(sa("prod/deployer")),
                    Some(vec!["https://evil".into()]),
                    None,
                )
                .unwrap(),
                Denial::AudienceNotAllowed(sa("prod/deployer")),
            ),
            (
                "ci",
                main,
                Request::default(),
                Denial::AmbiguousServiceAccount(vec![sa("prod/deployer"), sa("prod/reader")]),
            ),
        ];
        for (issuer, claims, request, expected) in rows {
            assert_eq!(policies.evaluate(issuer, &claims, &request), Err(expected));
        }
    }

    #[test]
    fn an_omitted_service_account_is_the_single_one_granted() {
        let policies = two_policies();
        let other = claims(json!({"repo": "acme/app"}));
        let grant = policies
            .evaluate("other", &other, &Request::default())
            .unwrap();
        assert_eq!(grant.service_account, sa("prod/admin"));
    }

    #[test]
    fn expiration_above_max_is_reduced_and_reported() {
        let policies = two_policies();
        let main = claims(json!({"repo": "acme/app", "ref": "refs/heads/main"}));
        let asked = Request::new(Some(sa("prod/deployer")), None, Some(7200)).unwrap();
        let grant = policies.evaluate("ci", &main, &asked).unwrap();
        assert_eq!(
            (grant.expiration_secs, grant.reduced_from_secs),
            (3600, Some(7200))
        );
        let within = Request::new(Some(sa("prod/deployer")), None, Some(1800)).unwrap();
        let grant = policies.evaluate("ci", &main, &within).unwrap();
        assert_eq!(
            (grant.expiration_secs, grant.reduced_from_secs),
            (1800, None)
        );
    }

    #[test]
    fn requested_audiences_must_all_be_allowed() {
        let policies = two_policies();
        let main = claims(json!({"repo": "acme/app", "ref": "refs/heads/main"}));
        let both = vec!["https://vault".to_owned(), "https://k8s".to_owned()];
        let request = Request::new(Some(sa("prod/deployer")), Some(both.clone()), None).unwrap();
        assert_eq!(
            policies.evaluate("ci", &main, &request).unwrap().audiences,
            both
        );
    }

    #[test]
    fn conditions_and_templates_decide_in_file_order() {
        let policies = set(json!([
            {"name": "protected", "issuer": "ci", "match": {"owner": "acme"},
             "condition": "claims.ref_protected == \"true\"",
             "grant": {"serviceAccounts": ["ci-${claims.project}/deployer"]}},
            {"name": "any", "issuer": "ci", "match": {"owner": "acme"},
             "grant": {"serviceAccounts": ["ci-${claims.project}/reader"]}},
        ]));
        let protected =
            claims(json!({"owner": "acme", "project": "shop", "ref_protected": "true"}));
        let deploy = Request::new(Some(sa("ci-shop/deployer")), None, None).unwrap();
        assert_eq!(
            policies.evaluate("ci", &protected, &deploy).unwrap().policy,
            "protected"
        );
        let unprotected =
            claims(json!({"owner": "acme", "project": "shop", "ref_protected": "false"}));
        assert_eq!(
            policies.evaluate("ci", &unprotected, &deploy),
            Err(Denial::ServiceAccountNotGranted(sa("ci-shop/deployer")))
        );
        let reader = policies
            .evaluate("ci", &unprotected, &Request::default())
            .unwrap();
        assert_eq!(
            (reader.policy.as_str(), reader.service_account.to_string()),
            ("any", "ci-shop/reader".to_owned())
        );
        // Another project's account is never granted, and a claim that renders an invalid
        // name grants nothing at all.
        let other = Request::new(Some(sa("ci-billing/reader")), None, None).unwrap();
        assert!(policies.evaluate("ci", &unprotected, &other).is_err());
        let hostile =
            claims(json!({"owner": "acme", "project": "Shop/../x", "ref_protected": "true"}));
        assert_eq!(
            policies.evaluate("ci", &hostile, &Request::default()),
            Err(Denial::NoPolicyMatched)
        );
        let (_, trace) = policies.explain("ci", &hostile, &Request::default());
        assert!(
            trace
                .iter()
                .any(|line| line.contains("rendered name is invalid")),
            "{trace:?}"
        );
    }

    #[test]
    fn a_template_never_renders_into_a_protected_namespace() {
        let mut policies = set(json!([
            {"name": "apps", "issuer": "ci", "match": {"owner": "acme"},
             "grant": {"serviceAccounts": ["kube-${claims.team}/deployer", "ci-${claims.team}/reader"]}},
        ]));
        let deployer = |team: &str| {
            let caller = claims(json!({"owner": "acme", "team": team}));
            let request = Request::new(Some(sa(&format!("kube-{team}/deployer"))), None, None);
            policies.evaluate("ci", &caller, &request.unwrap())
        };
        assert!(deployer("apps").is_ok());
        for team in ["system", "public", "node-lease"] {
            assert_eq!(
                deployer(team),
                Err(Denial::ServiceAccountNotGranted(sa(&format!(
                    "kube-{team}/deployer"
                )))),
                "{team}"
            );
        }
        // The namespace tokenvend runs in is protected as well, and so is any configured one.
        policies.protect_namespace("ci-tokenvend");
        let caller = claims(json!({"owner": "acme", "team": "tokenvend"}));
        let reader = Request::new(Some(sa("ci-tokenvend/reader")), None, None).unwrap();
        assert!(policies.evaluate("ci", &caller, &reader).is_err());
        let (_, trace) = policies.explain("ci", &caller, &reader);
        assert!(
            trace
                .iter()
                .any(|line| line.contains("protected namespace")),
            "{trace:?}"
        );
        policies.set_protected_namespaces(["ci-apps".to_owned()]);
        let caller = claims(json!({"owner": "acme", "team": "apps"}));
        let reader = Request::new(Some(sa("ci-apps/reader")), None, None).unwrap();
        assert!(policies.evaluate("ci", &caller, &reader).is_err());
    }

    #[test]
    fn requests_no_policy_could_honour_are_refused_up_front() {
        assert_eq!(
            Request::new(None, None, Some(599)),
            Err(RequestError::ExpirationTooShort)
        );
        assert_eq!(
            Request::new(None, None, Some((1 << 32) + 1)),
            Err(RequestError::ExpirationTooLong)
        );
        assert_eq!(
            Request::new(None, Some(vec![]), None),
            Err(RequestError::InvalidAudiences)
        );
        assert!(Request::new(None, None, Some(600)).is_ok());
    }
}
