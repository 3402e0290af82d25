//! `tokenvend rbac`: the example overlay's RBAC is its output, and the Role it prints, applied
//! to the stand-in's RBAC, lets tokenvend mint exactly the named service accounts.

use std::time::Duration;

use serde_json::Value;
use tokenvend::dev::apiserver::{
    ApiServer, ApiServerOptions, RbacRule, SeedServiceAccount, SeedUser,
};
use tokenvend::dev::session::kube_config_for;
use tokenvend::k8s::{ApiContact, KubeMinter, MintError, MintRequest, Minter};
use tokenvend::metrics::Metrics;
use tokenvend::policy::ServiceAccountRef;

use crate::support::{repo_root, scratch_file, stdout_of, tokenvend};

const EXAMPLE_RBAC: &str = "deploy/overlays/example/rbac.yaml";

const CONFIG: &str = r#"
issuers:
  - {name: ci, url: "https://ci.example.com", audiences: [tokenvend]}
policies:
  - name: deploy
    issuer: ci
    match: {sub: deploy}
    grant: {serviceAccounts: [production/deployer, production/backup]}
  - name: read
    issuer: ci
    match: {sub: read}
    grant: {serviceAccounts: [staging/reader, production/deployer]}
"#;

const SERVICE_TOKEN: &str = "tokenvend-service-token";
/// What `system:serviceaccount:tokenvend:tokenvend` would be, the default subject.
const SERVICE_USER: &str = "system:serviceaccount:tokenvend:tokenvend";

#[tokio::test]
async fn the_example_overlay_rbac_is_what_tokenvend_rbac_prints() {
    let output = tokenvend(&["rbac", "--config", "config/github-actions.yaml"], None).await;
    let printed = stdout_of(&output);
    let committed = std::fs::read_to_string(repo_root().join(EXAMPLE_RBAC)).unwrap();
    assert_eq!(
        printed, committed,
        "{EXAMPLE_RBAC} is stale; regenerate it with\n  \
         tokenvend rbac --config config/github-actions.yaml > {EXAMPLE_RBAC}"
    );
    // The example's one templated name (ci/${claims.repository_name}-reader) earns the
    // documented warning about its namespace-wide rule, and nothing else does.
    let warnings = String::from_utf8_lossy(&output.stderr);
    assert_eq!(warnings.lines().count(), 1, "{warnings}");
    assert!(warnings.contains("namespace \"ci\""), "{warnings}");
}

#[tokio::test]
async fn an_invalid_service_account_flag_is_refused() {
    let output = tokenvend(
        &[
            "rbac",
            "--config",
            "config/github-actions.yaml",
            "--service-account",
            "tokenvend",
        ],
        None,
    )
    .await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("NAMESPACE/NAME"));
}

#[tokio::test]
async fn the_printed_role_lets_tokenvend_mint_exactly_the_named_service_accounts() {
    tokenvend::crypto::install_providers().unwrap();
    let config = scratch_file("config.yaml", CONFIG);
    let yaml = stdout_of(&tokenvend(&["rbac", "--config", config.to_str().unwrap()], None).await);
    let rules = stand_in_rules(&yaml);
    let named = ["production/deployer", "production/backup", "staging/reader"];
    let others = [
        "production/intruder",
        "staging/deployer",
        "kube-system/admin",
    ];
    let apiserver = ApiServer::start(
        "127.0.0.1:0".parse().unwrap(),
        ApiServerOptions {
            service_accounts: named.iter().chain(&others).map(|sa| seed(sa)).collect(),
            users: vec![SeedUser::new(SERVICE_TOKEN, SERVICE_USER)],
            ..ApiServerOptions::default()
        },
    )
    .await
    .unwrap();
    let minter = minter(&apiserver).await;
    // Without the printed RBAC nothing may be minted: the rules are what grants.
    assert_eq!(mint_status(&minter, named[0]).await, 403);
    apiserver.set_rbac(rules);
    for sa in named {
        assert_eq!(mint_status(&minter, sa).await, 200, "{sa} is named");
    }
    for sa in others {
        assert_eq!(mint_status(&minter, sa).await, 403, "{sa} is not named");
    }
    apiserver.shutdown().await;
}

fn seed(text: &str) -> SeedServiceAccount {
    let (namespace, name) = text.split_once('/').unwrap();
    SeedServiceAccount::new(namespace, name)
}

/// The printed Roles as the stand-in's rules, for the subjects of the RoleBindings that
/// reference them (a ServiceAccount subject authenticates as `system:serviceaccount:NS:NAME`).
fn stand_in_rules(yaml: &str) -> Vec<RbacRule> {
    let objects: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.iter().all(|k| matches!(*k, "Role" | "RoleBinding")),
        "literal names need no cluster-wide objects: {kinds:?}"
    );
    let mut rules = Vec::new();
    for binding in objects.iter().filter(|o| o["kind"] == "RoleBinding") {
        let namespace = binding["metadata"]["namespace"].as_str().unwrap();
        let role = objects
            .iter()
            .find(|o| {
                o["kind"] == "Role"
                    && o["metadata"]["name"] == binding["roleRef"]["name"]
                    && o["metadata"]["namespace"] == namespace
            })
            .expect("the binding's Role is printed");
        for subject in binding["subjects"].as_array().unwrap() {
            assert_eq!(subject["kind"], "ServiceAccount");
            let user = format!(
                "system:serviceaccount:{}:{}",
                subject["namespace"].as_str().unwrap(),
                subject["name"].as_str().unwrap()
            );
            for rule in role["rules"].as_array().unwrap() {
                rules.push(RbacRule {
                    user: user.clone(),
                    verbs: strings(&rule["verbs"]),
                    api_groups: strings(&rule["apiGroups"]),
                    resources: strings(&rule["resources"]),
                    resource_names: strings(&rule["resourceNames"]),
                    non_resource_urls: strings(&rule["nonResourceURLs"]),
                    namespace: Some(namespace.to_owned()),
                });
            }
        }
    }
    rules
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The service's own minter, authenticated to the stand-in as tokenvend.
async fn minter(apiserver: &ApiServer) -> KubeMinter {
    let config = kube_config_for(apiserver, SERVICE_TOKEN, Duration::from_secs(5))
        .await
        .unwrap();
    KubeMinter::new(
        kube::Client::try_from(config).unwrap(),
        Duration::from_secs(5),
        std::sync::Arc::new(Metrics::new()),
        std::sync::Arc::new(ApiContact::default()),
    )
}

/// 200 when a token was minted, else the API server's status code.
async fn mint_status(minter: &KubeMinter, service_account: &str) -> u16 {
    let request = MintRequest {
        service_account: ServiceAccountRef::parse(service_account).unwrap(),
        audiences: Vec::new(),
        expiration_secs: 600,
    };
    match minter.mint(&request).await {
        Ok(_) => 200,
        Err(MintError::Api { code, .. }) => code,
        Err(other) => panic!("{service_account}: {other}"),
    }
}
