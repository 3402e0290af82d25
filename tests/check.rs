//! `tokenvend check`: exit codes and messages, on the examples and on broken files.

use std::path::PathBuf;
use std::process::Command;
use test_support::sandbox::TempDir;

fn check(paths: &[PathBuf]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenvend"));
    command.arg("check");
    for path in paths {
        command.arg("--config").arg(path);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const VALID: &str = r#"
issuers:
  - name: github
    url: https://token.actions.githubusercontent.com
    audiences: [https://tokenvend.example.com]
    requireClaims: [repository_owner_id]
policies:
  - name: deploy
    issuer: github
    match:
      repository_owner_id: "42"
      ref: refs/heads/main
    grant:
      serviceAccounts: [production/deployer]
      ttl: 15m
      maxTtl: 1h
tests:
  - name: main deploys
    claims: {iss: https://token.actions.githubusercontent.com, repository_owner_id: "42", ref: refs/heads/main}
    expect: allow
"#;

#[test]
fn every_example_config_passes_its_own_tests() {
    let examples: Vec<PathBuf> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    assert!(examples.len() >= 4);
    let (code, stdout, stderr) = check(&examples);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn each_broken_config_exits_1_naming_file_policy_and_key() {
    let dir = TempDir::new("check");
    let rows: &[(&str, &str, &str, &str)] = &[
        (
            "unknown-key",
            "      ttl: 15m\n",
            "      ttl: 15m\n      colour: blue\n",
            "unknown field `colour`",
        ),
        (
            "short-ttl",
            "      ttl: 15m\n",
            "      ttl: 5m\n",
            "policies[0] (deploy): grant.ttl: 300s is under the Kubernetes minimum",
        ),
        (
            "ttl-above-max",
            "      maxTtl: 1h\n",
            "      maxTtl: 10m\n",
            "policies[0] (deploy): grant.ttl: default 900s is above maxTtl 600s",
        ),
        (
            "unknown-issuer",
            "    issuer: github\n",
            "    issuer: gitlab\n",
            "policies[0] (deploy): issuer: unknown issuer \"gitlab\"",
        ),
        (
            "unpinned",
            "      repository_owner_id: \"42\"\n",
            "",
            "policies[0] (deploy): match: issuer \"github\" requires every policy to pin one of",
        ),
        (
            "glob-pin",
            "      repository_owner_id: \"42\"\n",
            "      repository_owner_id: {glob: \"*\"}\n",
            "to exact values",
        ),
        (
            "bad-regex",
            "      ref: refs/heads/main\n",
            "      ref: {regex: \"refs/(heads\"}\n",
            "policies[0] (deploy): match.ref: invalid pattern",
        ),
        (
            "bad-cel",
            "    grant:\n",
            "    condition: 'claims.ref ==='\n    grant:\n",
            "policies[0] (deploy): condition:",
        ),
        (
            "cel-unknown-function",
            "    grant:\n",
            "    condition: 'claims.ref.matches(\"x\")'\n    grant:\n",
            "unknown function `matches`",
        ),
        (
            "bad-name",
            "[production/deployer]",
            "[Production/deployer]",
            "grant.serviceAccounts[0]: \"Production/deployer\": namespace is not a valid DNS-1123 label",
        ),
        (
            "bad-template",
            "[production/deployer]",
            "[\"production/${repo}\"]",
            "grant.serviceAccounts[0]",
        ),
        (
            "http-issuer",
            "url: https://token",
            "url: http://token",
            "issuers[0] (github): url:",
        ),
        ("syntax", "policies:\n", "policies: [\n", "line "),
        (
            "bad-test",
            "    expect: allow\n",
            "    expect: maybe\n",
            "unknown variant `maybe`",
        ),
    ];
    for (name, find, replace, expected) in rows {
        assert!(VALID.contains(find), "{name}: fixture lacks {find:?}");
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, VALID.replacen(find, replace, 1)).unwrap();
        let (code, stdout, stderr) = check(std::slice::from_ref(&path));
        assert_eq!(code, 1, "{name}: {stdout}{stderr}");
        assert!(
            stderr.starts_with(&format!("{}: ", path.display())),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in {stderr}"
        );
    }
}

#[test]
fn a_failing_test_case_exits_1_and_shows_the_decision() {
    let dir = TempDir::new("check-fail");
    let path = dir.join("wrong-expectation.yaml");
    std::fs::write(
        &path,
        VALID.replace("ref: refs/heads/main}", "ref: refs/heads/feature}"),
    )
    .unwrap();
    let (code, stdout, stderr) = check(std::slice::from_ref(&path));
    assert_eq!(code, 1);
    assert!(stdout.contains("FAIL  main deploys"), "{stdout}");
    assert!(stdout.contains("claim ref does not match"), "{stdout}");
    assert!(stdout.contains("decision: deny"), "{stdout}");
    assert!(stderr.contains("1 of 1 tests failed"), "{stderr}");
}

#[test]
fn explain_prints_the_decision_trace() {
    let dir = TempDir::new("explain");
    let config = dir.join("config.yaml");
    std::fs::write(&config, VALID).unwrap();
    let claims = dir.join("claims.json");
    std::fs::write(&claims, r#"{"iss":"https://token.actions.githubusercontent.com","repository_owner_id":"42","ref":"refs/heads/main"}"#).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tokenvend"))
        .args(["explain", "--config"])
        .arg(&config)
        .arg("--claims")
        .arg(&claims)
        .args(["--ttl", "2h"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("policy \"deploy\" applies"), "{stdout}");
    assert!(stdout.contains("allow: production/deployer"), "{stdout}");
    assert!(stdout.contains("3600s, reduced from 7200s"), "{stdout}");
    assert!(!stdout.contains("revocable"), "{stdout}");

    // A revocable grant says so.
    std::fs::write(
        &config,
        VALID.replacen("maxTtl: 1h\n", "maxTtl: 1h\n      revocable: true\n", 1),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tokenvend"))
        .args(["explain", "--config"])
        .arg(&config)
        .arg("--claims")
        .arg(&claims)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("s, revocable (policy \"deploy\")"),
        "{stdout}"
    );
}

#[test]
fn check_warns_about_unpinned_template_claims_and_literal_grants_in_protected_namespaces() {
    let dir = std::env::temp_dir().join(format!("tokenvend-check-warn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("guardrails.yaml");
    let text = VALID.replace(
        "serviceAccounts: [production/deployer]",
        "serviceAccounts: [\"team-${claims.team}/deployer\", \"ci/${claims.environment}-reader\", kube-system/backup]",
    )
    .replace("ref: refs/heads/main\n", "ref: refs/heads/main\n      environment: {oneOf: [dev, prod]}\n")
    .replace("ref: refs/heads/main}", "ref: refs/heads/main, environment: dev}")
    .replace("    expect: allow\n", "    request: {serviceAccount: kube-system/backup}\n    expect: allow\n");
    std::fs::write(&path, text).unwrap();
    let (code, stdout, stderr) = check(std::slice::from_ref(&path));
    assert_eq!(code, 0, "warnings do not fail the check: {stdout}{stderr}");
    assert!(
        stdout.contains(
            "warning: policy \"deploy\": team-${claims.team}/deployer uses claim `team`, which its match does not pin"
        ),
        "{stdout}"
    );
    assert!(
        !stdout.contains("claim `environment`"),
        "pinned by oneOf: {stdout}"
    );
    assert!(
        stdout.contains("warning: policy \"deploy\" grants kube-system/backup, in protected namespace kube-system"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("warning:").count(), 2, "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_test_failing_on_a_single_star_that_met_a_separator_points_at_double_star() {
    let dir = TempDir::new("check-glob");
    let path = dir.join("glob.yaml");
    std::fs::write(
        &path,
        VALID
            .replace(
                "      ref: refs/heads/main\n",
                "      sub: {glob: \"repo:acme/webapp:*\"}\n",
            )
            .replace(
                "ref: refs/heads/main}",
                "sub: \"repo:acme/webapp:ref:refs/heads/main\"}",
            ),
    )
    .unwrap();
    let (code, stdout, stderr) = check(std::slice::from_ref(&path));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("FAIL  main deploys"), "{stdout}");
    assert!(
        stdout.contains(
            "claim sub does not match (glob \"repo:acme/webapp:*\": `*` stops at `/` and `:`; \
             `**` crosses them: {glob: \"repo:acme/webapp:**\"} would match)"
        ),
        "{stdout}"
    );
}

const TEAM_MAIN: &str = r#"
issuers:
  - name: github
    url: https://token.actions.githubusercontent.com
    audiences: [https://tokenvend.example.com]
    requireClaims: [repository_owner_id]
  - name: gitlab
    url: https://gitlab.example.com
    audiences: [https://tokenvend.example.com]
policies:
  - name: deploy
    issuer: github
    match: {repository_owner_id: "42", ref: refs/heads/main}
    grant:
      serviceAccounts: [production/deployer]
teams:
  payments:
    files: teams/payments/*.yaml
    ceiling:
      issuers: [github]
      namespaces: ["payments-*", payments]
      audiences: [https://kubernetes.default.svc]
      maxTtl: 1h
      match: {repository_owner_id: "42"}
  search:
    files: teams/search/*.yaml
    ceiling:
      issuers: [github]
      namespaces: [search]
      audiences: [https://kubernetes.default.svc]
      match: {repository_owner_id: "42"}
"#;

const TEAM_GOOD: &str = r#"
policies:
  - name: deploy
    issuer: github
    match: {repository: acme/payments, ref: refs/heads/main}
    grant:
      serviceAccounts: ["payments-${claims.environment}/deployer", payments/reader]
      audiences: [https://kubernetes.default.svc]
      ttl: 15m
      maxTtl: 1h
tests:
  - name: main deploys
    claims: {iss: https://token.actions.githubusercontent.com, repository_owner_id: "42", repository: acme/payments, ref: refs/heads/main, environment: prod}
    request: {serviceAccount: payments-prod/deployer}
    expect: allow
    policy: deploy
  - name: the ceiling's owner holds though the policy does not name it
    claims: {iss: https://token.actions.githubusercontent.com, repository_owner_id: "666", repository: acme/payments, ref: refs/heads/main, environment: prod}
    request: {serviceAccount: payments-prod/deployer}
    expect: deny
"#;

fn team_dir(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    for team in ["payments", "search"] {
        std::fs::create_dir_all(dir.join(format!("teams/{team}"))).unwrap();
    }
    std::fs::write(dir.join("main.yaml"), TEAM_MAIN).unwrap();
    std::fs::write(dir.join("teams/payments/good.yaml"), TEAM_GOOD).unwrap();
    std::fs::write(
        dir.join("teams/search/index.yaml"),
        TEAM_GOOD
            .replace("acme/payments", "acme/search")
            .replace(
                "[\"payments-${claims.environment}/deployer\", payments/reader]",
                "[search/indexer]",
            )
            .replace("payments-prod/deployer", "search/indexer")
            .replace("maxTtl: 1h", "maxTtl: 2h"),
    )
    .unwrap();
    dir
}

#[test]
fn team_files_beyond_their_ceiling_are_refused_alone_naming_team_file_policy_and_key() {
    let dir = team_dir("check-teams");
    let rows: &[(&str, &str, &str, &str)] = &[
        (
            "protected",
            "payments/reader",
            "kube-system/x",
            "grant.serviceAccounts[1]: kube-system/x: the namespace is outside team payments's ceiling",
        ),
        (
            "other-team",
            "payments/reader",
            "other-team/x",
            "grant.serviceAccounts[1]: other-team/x: the namespace is outside",
        ),
        (
            "audience",
            "audiences: [https://kubernetes.default.svc]",
            "audiences: [https://vault.example.com]",
            "grant.audiences: \"https://vault.example.com\" is outside team payments's ceiling",
        ),
        (
            "ttl",
            "maxTtl: 1h",
            "maxTtl: 2h",
            "grant.maxTtl: 7200s is above team payments's ceiling of 3600s",
        ),
        (
            "template",
            "payments-${claims.environment}/deployer",
            "pay${claims.environment}/deployer",
            "grant.serviceAccounts[0]: pay${claims.environment}/deployer: the namespace cannot be shown to stay inside",
        ),
        (
            "issuer",
            "issuer: github",
            "issuer: gitlab",
            "issuer: issuer \"gitlab\" is outside team payments's ceiling",
        ),
        (
            "main-keys",
            "policies:\n",
            "issuers: []\npolicies:\n",
            "unknown field `issuers`",
        ),
    ];
    for (name, find, replace, _) in rows {
        assert!(TEAM_GOOD.contains(find), "{name}");
        let text = TEAM_GOOD
            .replace(find, replace)
            .replace("name: deploy", &format!("name: {name}"));
        std::fs::write(dir.join(format!("teams/payments/{name}.yaml")), text).unwrap();
    }
    let (code, stdout, stderr) = check(&[dir.join("main.yaml")]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    for (name, _, _, expected) in rows {
        let file = dir.join(format!("teams/payments/{name}.yaml"));
        let line = stderr
            .lines()
            .find(|line| line.starts_with(&format!("{}: team payments: ", file.display())))
            .unwrap_or_else(|| panic!("{name}: no line for {}: {stderr}", file.display()));
        assert!(
            line.contains(expected),
            "{name}: expected {expected:?} in {line}"
        );
        if *name != "main-keys" {
            assert!(
                line.contains(&format!("(payments/{name})")),
                "{name}: {line}"
            );
        }
    }
    // The main file, the good payments file and the other team serve and pass their tests.
    assert!(stdout.contains(", 3 policies, "), "{stdout}");
    assert!(stdout.contains("ok    payments"), "{stdout}");
    assert!(stdout.contains("main deploys"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert_eq!(stderr.lines().count(), rows.len(), "{stderr}");
}

#[test]
fn check_team_checks_a_teams_own_files_against_the_main_files_ceiling() {
    let dir = team_dir("check-team-flag");
    let own = dir.join("own.yaml");
    std::fs::write(&own, TEAM_GOOD).unwrap();
    let run = |team: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_tokenvend"))
            .args(["check", "--config"])
            .arg(dir.join("main.yaml"))
            .args(["--team", team])
            .arg(&own)
            .output()
            .unwrap();
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run("payments");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("ok    payments ({}): main deploys", own.display())),
        "{stdout}"
    );
    // The search team's ceiling does not reach payments namespaces.
    let (code, stdout, stderr) = run("search");
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("team search: policies[0] (search/deploy): grant.serviceAccounts[0]"),
        "{stderr}"
    );
    let (code, _, stderr) = run("nobody");
    assert_eq!(code, 1);
    assert!(stderr.contains("teams: no team \"nobody\""), "{stderr}");
}
