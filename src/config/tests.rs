use std::path::Path;

use super::*;

const VALID: &str = r#"
kubernetes:
  requestTimeout: 3s
issuers:
  - name: github
    url: https://token.actions.githubusercontent.com
    audiences: [https://tokenvend.example.com]
    requireClaims: [repository_owner_id]
  - name: local
    url: http://127.0.0.1:5556
    audiences: [tokenvend]
    algorithms: [RS256, ES256]
    jwksUrl: http://127.0.0.1:5556/jwks
    maxTokenLifetime: 10m
policies:
  - name: deploy-webapp
    issuer: github
    match:
      repository_owner_id: "42"
      repository_id: "123456"
      ref: refs/heads/main
      environment: {oneOf: [production, staging]}
    grant:
      serviceAccounts: [production/deployer]
      audiences: [https://kubernetes.default.svc]
      ttl: 15m
      maxTtl: 1h
  - name: dev
    issuer: local
    match: {sub: dev-user}
    grant:
      serviceAccounts: [dev/ci]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("config/test.yaml"))
}

fn error_of(text: &str) -> String {
    parse(text)
        .expect_err("the config must be refused")
        .to_string()
}

#[test]
fn a_valid_config_compiles_with_its_defaults() {
    let config = parse(VALID).unwrap();
    assert_eq!(config.kubernetes.request_timeout, Duration::from_secs(3));
    assert_eq!(config.issuers.len(), 2);
    assert_eq!(
        config.issuers[0].algorithms,
        [jsonwebtoken::Algorithm::RS256]
    );
    assert_eq!(
        config.issuers[0].max_token_lifetime,
        Duration::from_secs(3600)
    );
    // Keys outlive an issuer outage by a day, unless a test says otherwise.
    assert_eq!(
        config.issuers[0].max_key_staleness,
        Duration::from_secs(24 * 3600)
    );
    assert_eq!(
        config.issuers[1].key_source,
        crate::oidc::KeySource::JwksUrl("http://127.0.0.1:5556/jwks".into())
    );
    let dev = config.policies.iter().find(|p| p.name == "dev").unwrap();
    assert_eq!((dev.grant.ttl_secs, dev.grant.max_ttl_secs), (900, 900));
}

#[test]
fn each_mistake_is_refused_with_a_message_naming_file_place_and_key() {
    let rows: &[(&str, &str, &str)] = &[
        ("issuers:\n  - name: github\n", "", "config/test.yaml: line"),
        (
            "    requireClaims: [repository_owner_id]\n",
            "    requireClaims: [repository_owner_id]\n    colour: blue\n",
            "unknown field `colour`",
        ),
        (
            "      ttl: 15m\n",
            "      ttl: 5m\n",
            "policies[0] (deploy-webapp): grant.ttl: 300s is under the Kubernetes minimum",
        ),
        (
            "      ttl: 15m\n",
            "      ttl: 2h\n",
            "policies[0] (deploy-webapp): grant.ttl: default 7200s is above maxTtl 3600s",
        ),
        (
            "      ttl: 15m\n",
            "      ttl: soon\n",
            "invalid duration \"soon\"",
        ),
        (
            "    issuer: local\n",
            "    issuer: gitlab\n",
            "policies[1] (dev): issuer: unknown issuer \"gitlab\"",
        ),
        (
            "      repository_owner_id: \"42\"\n",
            "",
            "policies[0] (deploy-webapp): match: issuer \"github\" requires every policy to pin one of",
        ),
        (
            "    match: {sub: dev-user}\n",
            "",
            "policies[1] (dev): match: cannot tell callers of issuer \"local\" apart (the match is empty)",
        ),
        (
            "      environment: {oneOf: [production, staging]}\n",
            "      environment: {like: prod%}\n",
            "match.environment: unknown matcher operator `like`",
        ),
        (
            "      environment: {oneOf: [production, staging]}\n",
            "      environment: {regex: \"prod(\"}\n",
            "match.environment: invalid pattern",
        ),
        (
            "[production/deployer]",
            "[Production/deployer]",
            "grant.serviceAccounts[0]: \"Production/deployer\": namespace is not a valid DNS-1123 label",
        ),
        (
            "[dev/ci]",
            "[dev]",
            "grant.serviceAccounts[0]: \"dev\": expected NAMESPACE/NAME",
        ),
        (
            "url: https://token.actions.githubusercontent.com",
            "url: http://token.actions.githubusercontent.com",
            "issuers[0] (github): url: \"http://token.actions.githubusercontent.com\": http is only allowed for",
        ),
        (
            "algorithms: [RS256, ES256]",
            "algorithms: [HS256]",
            "issuers[1] (local): algorithms: \"HS256\" is not allowed",
        ),
        (
            "algorithms: [RS256, ES256]",
            "algorithms: []",
            "issuers[1] (local): algorithms: must allow at least one algorithm",
        ),
        (
            "    maxTokenLifetime: 10m\n",
            "    maxTokenLifetime: 10m\n    keyRefreshCooldown: 500ms\n",
            "keyRefreshCooldown",
        ),
        (
            "    maxTokenLifetime: 10m\n",
            "    maxTokenLifetime: 10m\n    maxKeyStaleness: 500ms\n",
            "maxKeyStaleness: must be at least 1s",
        ),
        (
            "  - name: dev\n",
            "  - name: deploy-webapp\n",
            "policies[1] (deploy-webapp): name: duplicate policy name",
        ),
        (
            "    audiences: [tokenvend]\n",
            "    audiences: []\n",
            "issuers[1] (local): audiences: at least one non-empty audience is required",
        ),
        (
            "  requestTimeout: 3s\n",
            "  requestTimeout: 3s\n  retries: 5\n",
            "unknown field `retries`",
        ),
    ];
    for (find, replace, expected) in rows {
        assert!(VALID.contains(find), "fixture lacks {find:?}");
        let broken = VALID.replacen(find, replace, 1);
        let message = error_of(&broken);
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
        assert!(message.starts_with("config/test.yaml: "), "{message}");
    }
}

#[test]
fn syntax_errors_name_the_line() {
    let message = error_of("issuers:\n  - name: [\n");
    assert!(message.starts_with("config/test.yaml: line "), "{message}");
}

#[test]
fn the_kubeconfig_server_and_ca_file_are_read_and_default_to_none() {
    assert_eq!(parse(VALID).unwrap().kubernetes.kubeconfig_server, None);
    let text = VALID.replace(
        "requestTimeout: 3s",
        "requestTimeout: 3s\n  kubeconfigServer: https://k8s.example.com:6443\n  kubeconfigCAFile: /etc/ca.crt",
    );
    let kubernetes = parse(&text).unwrap().kubernetes;
    assert_eq!(
        kubernetes.kubeconfig_server.as_deref(),
        Some("https://k8s.example.com:6443")
    );
    assert_eq!(
        kubernetes.kubeconfig_ca_file.as_deref(),
        Some(Path::new("/etc/ca.crt"))
    );
}

#[test]
fn a_kubeconfig_server_that_is_not_plain_https_is_refused() {
    for server in [
        "http://k8s.example.com",
        "k8s.example.com",
        "https://u@k8s.example.com",
    ] {
        let text = VALID.replace(
            "requestTimeout: 3s",
            &format!("requestTimeout: 3s\n  kubeconfigServer: {server}"),
        );
        let message = error_of(&text);
        assert!(
            message.contains("kubernetes: kubeconfigServer"),
            "{message}"
        );
    }
}

#[test]
fn protected_namespaces_default_to_the_clusters_own_and_can_be_set() {
    let defaults = parse(VALID).unwrap().policies;
    assert_eq!(
        defaults.protected_namespaces().collect::<Vec<_>>(),
        ["kube-node-lease", "kube-public", "kube-system"]
    );
    let text = VALID.replace(
        "requestTimeout: 3s",
        "requestTimeout: 3s\n  protectedNamespaces: [kube-system, platform]",
    );
    let configured = parse(&text).unwrap().policies;
    assert_eq!(
        configured.protected_namespaces().collect::<Vec<_>>(),
        ["kube-system", "platform"]
    );
    let text = VALID.replace(
        "requestTimeout: 3s",
        "requestTimeout: 3s\n  protectedNamespaces: [Kube-System]",
    );
    assert!(
        error_of(&text).contains("kubernetes: protectedNamespaces: \"Kube-System\""),
        "{}",
        error_of(&text)
    );
}

/// A team file's last good version is re-checked against the ceiling in force: when the main
/// file tightens the ceiling, a last good version that no longer fits is dropped.
#[test]
fn a_last_good_team_file_that_no_longer_fits_a_tightened_ceiling_is_dropped() {
    let dir = std::env::temp_dir().join(format!("tokenvend-config-teams-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("payments")).unwrap();
    let main = |max_ttl: &str| {
        format!(
            "issuers:\n  - name: ci\n    url: https://ci.example.com\n    audiences: [tv]\n\
             policies: []\nteams:\n  payments:\n    files: payments/*.yaml\n    ceiling:\n      \
             issuers: [ci]\n      namespaces: [\"payments-*\"]\n      maxTtl: {max_ttl}\n"
        )
    };
    let team = "policies:\n  - name: deploy\n    issuer: ci\n    match: {repo: acme/pay}\n    \
                grant: {serviceAccounts: [\"payments-${claims.env}/deployer\"], maxTtl: 1h}\n";
    let main_path = dir.join("main.yaml");
    let team_path = dir.join("payments/deploy.yaml");
    std::fs::write(&main_path, main("1h")).unwrap();
    std::fs::write(&team_path, team).unwrap();
    let first = Config::load(&main_path).unwrap();
    assert!(first.team_refusals.is_empty(), "{:?}", first.team_refusals);
    assert!(first.policies.contains("payments/deploy"));

    // Broken while the ceiling is unchanged: the last good version stays.
    std::fs::write(&team_path, "policies: [\n").unwrap();
    let sources = TeamSources {
        last_good: &first.team_files,
        only: None,
    };
    let kept = Config::load_with(&main_path, sources).unwrap();
    assert!(kept.policies.contains("payments/deploy"));
    assert!(
        kept.team_refusals[0]
            .message
            .contains("its last good version stays in force")
    );
    // Still broken, and the ceiling tightened below the last good version: dropped.
    std::fs::write(&main_path, main("30m")).unwrap();
    let sources = TeamSources {
        last_good: &kept.team_files,
        only: None,
    };
    let dropped = Config::load_with(&main_path, sources).unwrap();
    assert!(!dropped.policies.contains("payments/deploy"));
    let message = &dropped.team_refusals[0].message;
    assert!(
        message.contains("no longer fits and is dropped"),
        "{message}"
    );
    assert!(
        message.contains("grant.maxTtl: 3600s is above team payments's ceiling of 1800s"),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn templated_namespaces_are_inside_a_ceiling_glob_only_when_provably_so() {
    use crate::policy::{GrantedAccount, template_inside};
    let rows = [
        ("payments-${claims.x}/d", "payments-*", true),
        ("payments-${claims.x}-ci/d", "payments-*", true),
        ("payments-${claims.x}-ci/d", "payments-*-ci", true),
        ("payments-${claims.x}/d", "payments-*-ci", false),
        ("pay${claims.x}/d", "payments-*", false),
        ("payments-${claims.x}/d", "payments", false),
        ("payments-${claims.a}${claims.b}/d", "payments-*", true),
        ("ci-${claims.x}/d", "*", true),
        ("${claims.x}-payments/d", "payments-*", false),
        ("${claims.x}-payments/d", "*-payments", true),
    ];
    for (template, glob, inside) in rows {
        let shape = GrantedAccount::parse(template).unwrap().namespace_shape();
        assert_eq!(
            template_inside(&shape, glob),
            inside,
            "{template} in {glob}"
        );
    }
}

#[test]
fn a_revocable_policy_needs_a_name_and_issuer_that_are_label_values() {
    let revocable = VALID.replacen(
        "      maxTtl: 1h\n",
        "      maxTtl: 1h\n      revocable: true\n",
        1,
    );
    let config = parse(&revocable).unwrap();
    let policy = config.policies.iter().next().unwrap();
    assert!(policy.grant.revocable);
    assert!(!config.policies.iter().nth(1).unwrap().grant.revocable);
    let message = error_of(&revocable.replace("deploy-webapp", "deploy webapp"));
    assert!(
        message.contains(
            "policies[0] (deploy webapp): grant.revocable: the policy name \"deploy webapp\""
        ),
        "{message}"
    );
    let long = "p".repeat(64);
    let message = error_of(&revocable.replace("deploy-webapp", &long));
    assert!(message.contains("grant.revocable"), "{message}");
    let message = error_of(&revocable.replace("github", "git_hub_"));
    assert!(
        message.contains("grant.revocable: the issuer name \"git_hub_\""),
        "{message}"
    );
    // Not revocable: the same names load.
    parse(&VALID.replace("deploy-webapp", "deploy webapp")).unwrap();
}

/// A team policy's bindings are labelled `TEAM.NAME`: that label must be valid too.
#[test]
fn a_revocable_team_policy_is_labelled_team_dot_name() {
    let dir =
        std::env::temp_dir().join(format!("tokenvend-config-revocable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("payments")).unwrap();
    let main = "issuers:\n  - name: ci\n    url: https://ci.example.com\n    audiences: [tv]\n\
                policies: []\nteams:\n  payments:\n    files: payments/*.yaml\n    ceiling:\n      \
                issuers: [ci]\n      namespaces: [payments]\n";
    let team = |name: &str| {
        format!(
            "policies:\n  - name: {name}\n    issuer: ci\n    match: {{repo: acme/pay}}\n    \
             grant: {{serviceAccounts: [payments/deployer], revocable: true}}\n"
        )
    };
    let main_path = dir.join("main.yaml");
    std::fs::write(&main_path, main).unwrap();
    std::fs::write(dir.join("payments/deploy.yaml"), team("deploy")).unwrap();
    let loaded = Config::load(&main_path).unwrap();
    assert!(
        loaded.team_refusals.is_empty(),
        "{:?}",
        loaded.team_refusals
    );
    let policy = loaded.policies.iter().next().unwrap();
    assert!(policy.grant.revocable);
    assert_eq!(crate::policy::policy_label(&policy.name), "payments.deploy");

    // 9 + 55 characters: a valid policy name, too long for a label once qualified.
    std::fs::write(dir.join("payments/deploy.yaml"), team(&"d".repeat(55))).unwrap();
    let refused = Config::load(&main_path).unwrap();
    assert!(refused.policies.is_empty());
    let message = &refused.team_refusals[0].message;
    assert!(
        message.contains("grant.revocable: the policy name \"payments.ddd"),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_store_block_is_optional_and_validated_without_a_connection() {
    assert_eq!(parse(VALID).unwrap().store, None);
    let with = |block: &str| VALID.replace("issuers:\n", &format!("store:\n{block}issuers:\n"));
    let store = parse(&with(
        "  url: rediss://tokenvend-store:6380/0\n  passwordFile: /etc/tokenvend/store/password\n  caFile: /etc/ca.crt\n  timeout: 100ms\n",
    ))
    .unwrap()
    .store
    .unwrap();
    assert_eq!(store.url, "rediss://tokenvend-store:6380/0");
    assert_eq!(store.timeout, std::time::Duration::from_millis(100));
    assert_eq!(
        parse(&with("  url: redis://127.0.0.1:1\n"))
            .unwrap()
            .store
            .unwrap()
            .timeout,
        crate::store::DEFAULT_TIMEOUT,
        "the default timeout"
    );
    for (block, key) in [
        ("  url: http://store:6379\n", "store.url: scheme"),
        (
            "  url: redis://:hunter2@store:6379\n",
            "store.url: a password in the URL is refused",
        ),
        (
            "  url: redis://store:6379\n  caFile: /ca.crt\n",
            "store.caFile",
        ),
        (
            "  url: redis://store:6379\n  timeout: 1h\n",
            "store.timeout",
        ),
        ("  url: redis://store:6379\n  pasword: x\n", "pasword"),
    ] {
        let message = error_of(&with(block));
        assert!(message.contains(key), "{block}: {message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}
