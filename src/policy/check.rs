//! What `tokenvend check` runs besides loading: the config's own `tests:` cases, and a report
//! of overlaps worth a second look. Pure: no I/O.

use super::{ClaimPath, Expectation, Policy, PolicySet, RawTest, Request, ServiceAccountRef};

/// The result of one test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub name: String,
    pub passed: bool,
    /// What was decided and why, one line per step (shown for failures).
    pub detail: Vec<String>,
}

/// Everything `check` reports after a successful load.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub outcomes: Vec<TestOutcome>,
    pub warnings: Vec<String>,
}

impl CheckReport {
    pub fn failures(&self) -> usize {
        self.outcomes.iter().filter(|o| !o.passed).count()
    }
}

/// Runs the test cases. `issuer_of` maps a claimed `iss` (or `None` when the claims have none)
/// to an issuer's config name.
pub fn run_tests(
    policies: &PolicySet,
    tests: &[RawTest],
    issuer_of: impl Fn(Option<&str>) -> Option<String>,
) -> CheckReport {
    let outcomes = tests
        .iter()
        .map(|test| run_one(policies, test, &issuer_of))
        .collect();
    let mut warnings = overlaps(policies);
    warnings.extend(guardrail_warnings(policies));
    CheckReport { outcomes, warnings }
}

fn run_one(
    policies: &PolicySet,
    test: &RawTest,
    issuer_of: &impl Fn(Option<&str>) -> Option<String>,
) -> TestOutcome {
    let fail = |line: String| TestOutcome {
        name: test.name.clone(),
        passed: false,
        detail: vec![line],
    };
    let claimed = test
        .claims
        .get("iss")
        .map(|iss| iss.as_str().unwrap_or_default());
    let Some(issuer) = issuer_of(claimed) else {
        return fail(format!(
            "no configured issuer has url {:?}",
            claimed.unwrap_or_default()
        ));
    };
    let request = match request_of(test) {
        Ok(request) => request,
        Err(message) => return fail(message),
    };
    let (decision, mut detail) = policies.explain(&issuer, &test.claims, &request);
    let passed = match (&decision, test.expect) {
        (Ok(grant), Expectation::Allow) => test.policy.as_ref().is_none_or(|p| *p == grant.policy),
        (Err(_), Expectation::Deny) => true,
        _ => false,
    };
    detail.push(match &decision {
        Ok(grant) => format!(
            "decision: allow {}{} by policy {:?}",
            grant.service_account,
            if grant.revocable { " (revocable)" } else { "" },
            grant.policy
        ),
        Err(denial) => format!("decision: deny ({denial})"),
    });
    TestOutcome {
        name: test.name.clone(),
        passed,
        detail,
    }
}

fn request_of(test: &RawTest) -> Result<Request, String> {
    let service_account = test
        .request
        .service_account
        .as_deref()
        .map(|text| {
            ServiceAccountRef::parse(text).map_err(|e| format!("request.serviceAccount: {e}"))
        })
        .transpose()?;
    Request::new(
        service_account,
        test.request.audiences.clone(),
        test.request.expiration_seconds,
    )
    .map_err(|e| format!("request: {e}"))
}

/// Policies of one issuer that can grant the same service account with different lifetimes:
/// fine, but the first in file order decides for an identity both match.
fn overlaps(policies: &PolicySet) -> Vec<String> {
    let all: Vec<_> = policies.iter().collect();
    let mut warnings = Vec::new();
    for (i, first) in all.iter().enumerate() {
        for second in &all[i + 1..] {
            let same_lifetimes = (first.grant.ttl_secs, first.grant.max_ttl_secs)
                == (second.grant.ttl_secs, second.grant.max_ttl_secs);
            if first.issuer != second.issuer || same_lifetimes {
                continue;
            }
            let shared = first.grant.service_accounts.iter().find(|a| {
                second
                    .grant
                    .service_accounts
                    .iter()
                    .any(|b| a.to_string() == b.to_string())
            });
            if let Some(account) = shared {
                warnings.push(format!(
                    "policies {:?} and {:?} both grant {account} with different lifetimes \
                     (ttl {}s/max {}s vs {}s/{}s); where both match, {:?} decides",
                    first.name,
                    second.name,
                    first.grant.ttl_secs,
                    first.grant.max_ttl_secs,
                    second.grant.ttl_secs,
                    second.grant.max_ttl_secs,
                    first.name
                ));
            }
        }
    }
    warnings
}

/// What loads but deserves a second look: a template fed by a claim the policy's `match` does
/// not pin (whatever the issuer puts there picks the service account), and a literal grant in
/// a protected namespace (allowed, since someone wrote it, but templates never go there).
fn guardrail_warnings(policies: &PolicySet) -> Vec<String> {
    let mut warnings = Vec::new();
    for policy in policies.iter() {
        for account in &policy.grant.service_accounts {
            if let Some(sa) = account.fixed() {
                if policies.is_protected(sa.namespace()) {
                    warnings.push(format!(
                        "policy {:?} grants {sa}, in protected namespace {}",
                        policy.name,
                        sa.namespace()
                    ));
                }
                continue;
            }
            let mut unpinned: Vec<&str> = account.claims().filter(|c| !pins(policy, c)).collect();
            unpinned.sort_unstable();
            unpinned.dedup();
            for claim in unpinned {
                warnings.push(format!(
                    "policy {:?}: {account} uses claim `{claim}`, which its match does not pin: \
                     any value the issuer puts there picks the service account",
                    policy.name
                ));
            }
        }
    }
    warnings
}

/// Whether the policy's match constrains this top-level claim (a pattern that accepts any
/// value does not).
fn pins(policy: &Policy, claim: &str) -> bool {
    policy.matchers.iter().any(|(path, matcher)| {
        let whole_claim = match path {
            ClaimPath::Name(name) => name == claim,
            ClaimPath::Pointer(_) => path.top_claim() == claim && !path.as_str()[1..].contains('/'),
        };
        whole_claim && !matcher.accepts_anything()
    })
}
