//! Policy evaluation with 10 and 1,000 policies. The caller's policy is the last of its
//! issuer's, so every policy of that issuer is looked at; spreading 1,000 policies over 100
//! issuers shows that other issuers' policies cost nothing. 50 teams × 20 policies on one
//! issuer, each team under a ceiling, shows that the claim index spans team files.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use tokenvend::policy::{
    Ceiling, IssuerRules, PolicySet, RawCeiling, RawPolicy, Request, ServiceAccountRef,
    compile_team,
};

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
    // 50 teams × 20 policies on the same issuer, each team under a ceiling pinning its owner
    // (ANDed in) and each policy its repository: the claim index spans every team file.
    let teams = team_policies(50, 20);
    let (team, n) = (49, 19);
    let caller = team_claims(team, n);
    let request = Request::new(
        Some(ServiceAccountRef::parse(&format!("team-{team}-prod/deployer")).expect("name")),
        None,
        None,
    )
    .expect("request");
    let id = BenchmarkId::from_parameter("50_teams_x_20_policies_1_issuer");
    group.bench_with_input(id, &caller, |b, caller| {
        b.iter(|| {
            let grant = teams
                .evaluate("issuer-0", caller, &request)
                .expect("the team's policy grants");
            debug_assert_eq!(grant.policy, format!("team-{team}/deploy-{n}"));
            grant
        });
    });
    group.finish();
}

/// `teams` teams of `per_team` policies each, all on `issuer-0`: team T's ceiling pins
/// `repository_owner_id` to T and allows `team-T-*`; policy N pins `repository` acme/tT-N.
fn team_policies(teams: usize, per_team: usize) -> PolicySet {
    let require = vec!["repository_owner_id".to_owned()];
    let rules = [IssuerRules {
        name: "issuer-0",
        require_claims: &require,
    }];
    let mut set = PolicySet::compile(&[], &rules).expect("empty main file");
    let protected = set.protected_namespaces().map(str::to_owned).collect();
    for team in 0..teams {
        let raw_ceiling: RawCeiling = serde_json::from_value(json!({
            "issuers": ["issuer-0"],
            "namespaces": [format!("team-{team}-*")],
            "audiences": ["https://kubernetes.default.svc.cluster.local"],
            "maxTtl": "1h",
            "match": {"repository_owner_id": format!("{}", 1_000 + team)},
        }))
        .expect("ceiling");
        let ceiling = Ceiling::compile(&raw_ceiling, &rules).expect("ceiling compiles");
        let raw: Vec<RawPolicy> = (0..per_team)
            .map(|n| {
                serde_json::from_value(json!({
                    "name": format!("deploy-{n}"),
                    "issuer": "issuer-0",
                    "match": {
                        "repository": format!("acme/t{team}-{n}"),
                        "ref": {"oneOf": ["refs/heads/main", "refs/heads/release"]},
                    },
                    "grant": {
                        "serviceAccounts": [format!("team-{team}-prod/deployer")],
                        "audiences": ["https://kubernetes.default.svc.cluster.local"],
                        "ttl": "15m",
                        "maxTtl": "1h",
                    },
                }))
                .expect("raw policy")
            })
            .collect();
        let name = format!("team-{team}");
        let policies =
            compile_team(&name, &raw, &ceiling, &rules, &protected).expect("team compiles");
        set.extend(policies);
    }
    set
}

fn team_claims(team: usize, n: usize) -> Map<String, Value> {
    let mut map = claims(n);
    map.insert("repository".into(), json!(format!("acme/t{team}-{n}")));
    map.insert(
        "repository_owner_id".into(),
        json!(format!("{}", 1_000 + team)),
    );
    map
}

fn compilation(c: &mut Criterion) {
    let raw = raw_policies(1_000, 100);
    c.bench_function("policy_compile/1000_policies_100_issuers", |b| {
        b.iter(|| compile(&raw, 100));
    });
}

criterion_group!(benches, evaluation, compilation);
criterion_main!(benches);
