//! Policy evaluation with 10 and 1,000 policies. The caller's policy is the last of its
//! issuer's, so every policy of that issuer is looked at; spreading 1,000 policies over 100
//! issuers shows that other issuers' policies cost nothing.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use tokenvend::policy::{IssuerRules, PolicySet, RawPolicy, Request, ServiceAccountRef};

/// `count` policies spread evenly over `issuers` issuers (`issuer-0`, ...), each matching one
/// repository (`acme/app-N`) on protected branches.
fn raw_policies(count: usize, issuers: usize) -> Vec<RawPolicy> {
    (0..count)
        .map(|n| {
            serde_json::from_value(json!({
                "name": format!("policy-{n}"),
                "issuer": format!("issuer-{}", n % issuers),
                "match": {
                    "repository_id": format!("{}", 100_000 + n),
                    "repository": format!("acme/app-{n}"),
                    "ref": {"oneOf": ["refs/heads/main", "refs/heads/release"]},
                },
                "grant": {
                    "serviceAccounts": [format!("team-{n}/deployer")],
                    "audiences": ["https://kubernetes.default.svc.cluster.local"],
                    "ttl": "15m",
                    "maxTtl": "1h",
                },
            }))
            .expect("raw policy")
        })
        .collect()
}

fn policies(count: usize, issuers: usize) -> PolicySet {
    compile(&raw_policies(count, issuers), issuers)
}

fn compile(raw: &[RawPolicy], issuers: usize) -> PolicySet {
    let require = vec!["repository_id".to_owned()];
    let names: Vec<String> = (0..issuers).map(|i| format!("issuer-{i}")).collect();
    let rules: Vec<IssuerRules<'_>> = names
        .iter()
        .map(|name| IssuerRules {
            name,
            require_claims: &require,
        })
        .collect();
    PolicySet::compile(raw, &rules).expect("policies compile")
}

/// The claims of a main-branch build of `acme/app-N`, with the usual CI extras.
fn claims(n: usize) -> Map<String, Value> {
    let Value::Object(map) = json!({
        "iss": "https://ci.example.com",
        "sub": format!("repo:acme/app-{n}:ref:refs/heads/main"),
        "aud": "tokenvend",
        "repository": format!("acme/app-{n}"),
        "repository_id": format!("{}", 100_000 + n),
        "repository_owner": "acme",
        "ref": "refs/heads/main",
        "ref_type": "branch",
        "workflow": "deploy",
        "event_name": "push",
        "runner_environment": "github-hosted",
    }) else {
        unreachable!("a JSON object")
    };
    map
}

fn evaluation(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_evaluate");
    // (policies, issuers): the caller's issuer holds policies / issuers of them.
    for (count, issuers) in [(10, 1), (1_000, 1), (1_000, 100)] {
        let set = policies(count, issuers);
        // The last policy of issuer-0: a scan would test every one of its policies first; the
        // index over `repository` (pinned by all of them) goes straight to it.
        let last = (0..count).rev().find(|n| n % issuers == 0).unwrap_or(0);
        let caller = claims(last);
        let request = Request::new(
            Some(ServiceAccountRef::parse(&format!("team-{last}/deployer")).expect("name")),
            None,
            None,
        )
        .expect("request");
        let id = BenchmarkId::from_parameter(format!("{count}_policies_{issuers}_issuers"));
        group.bench_with_input(id, &caller, |b, caller| {
            b.iter(|| {
                set.evaluate("issuer-0", caller, &request)
                    .expect("the caller's policy grants")
            });
        });
    }
    group.finish();
}

fn compilation(c: &mut Criterion) {
    let raw = raw_policies(1_000, 100);
    c.bench_function("policy_compile/1000_policies_100_issuers", |b| {
        b.iter(|| compile(&raw, 100));
    });
}

criterion_group!(benches, evaluation, compilation);
criterion_main!(benches);
