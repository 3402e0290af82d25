//! `tokenvend rbac`: the example overlay's RBAC is its output, and the Role it prints, applied
//! to the stand-in's RBAC, lets tokenvend mint exactly the named service accounts.

use std::time::Duration;

use kube_standin::{ApiServer, ApiServerOptions, RbacRule, SeedServiceAccount, SeedUser};
use serde_json::Value;
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
    serving::crypto::install_providers().unwrap();
    let config = scratch_file("config.yaml", CONFIG);
    let yaml = stdout_of(&tokenvend(&["rbac", "--config", config.to_str().unwrap()], None).await);
    let kinds = kinds(&yaml);
    assert!(
        kinds
            .iter()
            .all(|k| matches!(k.as_str(), "Role" | "RoleBinding")),
        "literal names need no cluster-wide objects: {kinds:?}"
    );
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

const TEMPLATED: &str = r#"
issuers:
  - {name: ci, url: "https://ci.example.com", audiences: [tokenvend]}
policies:
  - name: teams
    issuer: ci
    match: {sub: {glob: "team:*"}}
    grant: {serviceAccounts: ["team-${claims.team}/deployer", "kube-system/${claims.team}"]}
"#;

#[tokio::test]
async fn a_templated_namespace_gets_a_named_cluster_rule_and_an_admission_policy() {
    serving::crypto::install_providers().unwrap();
    let config = scratch_file("templated.yaml", TEMPLATED);
    let output = tokenvend(&["rbac", "--config", config.to_str().unwrap()], None).await;
    let yaml = stdout_of(&output);
    assert_eq!(
        kinds(&yaml),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ],
        "no Role in kube-system: a template never renders there"
    );
    let warnings = String::from_utf8_lossy(&output.stderr);
    assert!(
        warnings.contains("\"kube-system\" is a protected namespace"),
        "{warnings}"
    );
    assert!(warnings.contains("ValidatingAdmissionPolicy"), "{warnings}");
    let objects: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    let policy = &objects[2];
    assert_eq!(policy["apiVersion"], "admissionregistration.k8s.io/v1");
    assert_eq!(
        policy["spec"]["matchConditions"][0]["expression"],
        format!("request.userInfo.username == \"{SERVICE_USER}\"")
    );
    let allowed = policy["spec"]["validations"][0]["expression"]
        .as_str()
        .unwrap();
    assert_eq!(
        allowed,
        "(!(request.namespace in [\"kube-node-lease\", \"kube-public\", \"kube-system\", \"tokenvend\"]) \
         && request.namespace.matches(\"^team-[a-z0-9-]+$\") && request.name == \"deployer\")"
    );
    assert_eq!(objects[3]["spec"]["policyName"], policy["metadata"]["name"]);

    // RBAC alone: the cluster-wide rule names the one literal account, in any namespace.
    let apiserver = ApiServer::start(
        "127.0.0.1:0".parse().unwrap(),
        ApiServerOptions {
            service_accounts: ["team-a/deployer", "team-a/admin"]
                .iter()
                .map(|sa| seed(sa))
                .collect(),
            users: vec![SeedUser::new(SERVICE_TOKEN, SERVICE_USER)],
            ..ApiServerOptions::default()
        },
    )
    .await
    .unwrap();
    apiserver.set_rbac(stand_in_rules(&yaml));
    let minter = minter(&apiserver).await;
    assert_eq!(mint_status(&minter, "team-a/deployer").await, 200);
    assert_eq!(mint_status(&minter, "team-a/admin").await, 403);
    apiserver.shutdown().await;
}

fn kinds(yaml: &str) -> Vec<String> {
    let objects: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn seed(text: &str) -> SeedServiceAccount {
    let (namespace, name) = text.split_once('/').unwrap();
    SeedServiceAccount::new(namespace, name)
}

/// The printed Roles and ClusterRoles as the stand-in's rules, for the subjects of the
/// bindings that reference them (a ServiceAccount subject authenticates as
/// `system:serviceaccount:NS:NAME`). Admission objects are not the stand-in's business.
fn stand_in_rules(yaml: &str) -> Vec<RbacRule> {
    let objects: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    let mut rules = Vec::new();
    for binding in objects.iter().filter(|o| {
        matches!(
            o["kind"].as_str(),
            Some("RoleBinding" | "ClusterRoleBinding")
        )
    }) {
        let namespace = binding["metadata"]["namespace"].as_str();
        let role = objects
            .iter()
            .find(|o| {
                o["kind"] == binding["roleRef"]["kind"]
                    && o["metadata"]["name"] == binding["roleRef"]["name"]
                    && o["metadata"]["namespace"].as_str() == namespace
            })
            .expect("the binding's role is printed");
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
                    namespace: namespace.map(str::to_owned),
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
        binding: None,
    };
    match minter.mint(&request).await {
        Ok(_) => 200,
        Err(MintError::Api { code, .. }) => code,
        Err(other) => panic!("{service_account}: {other}"),
    }
}

const REVOCABLE: &str = r#"
issuers:
  - {name: ci, url: "https://ci.example.com", audiences: [tokenvend]}
policies:
  - name: deploy
    issuer: ci
    match: {sub: deploy}
    grant: {serviceAccounts: [payments/deployer], revocable: true}
  - name: read
    issuer: ci
    match: {sub: read}
    grant: {serviceAccounts: [staging/reader]}
"#;

/// 2xx as 200, else the API server's status code.
fn code<T>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(kube::Error::Api(status)) => status.code,
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn revocable_grants_let_tokenvend_write_binding_secrets_in_their_namespaces_and_read_none() {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
    use tokenvend::k8s::binding::{BindingSpec, Selector};

    serving::crypto::install_providers().unwrap();
    let config = scratch_file("revocable.yaml", REVOCABLE);
    let yaml = stdout_of(&tokenvend(&["rbac", "--config", config.to_str().unwrap()], None).await);
    let apiserver = ApiServer::start(
        "127.0.0.1:0".parse().unwrap(),
        ApiServerOptions {
            service_accounts: vec![seed("payments/deployer"), seed("staging/reader")],
            secrets: vec![kube_standin::SeedSecret::opaque("payments", "database")],
            users: vec![SeedUser::new(SERVICE_TOKEN, SERVICE_USER)],
            ..ApiServerOptions::default()
        },
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(
        kube_config_for(&apiserver, SERVICE_TOKEN, Duration::from_secs(5))
            .await
            .unwrap(),
    )
    .unwrap();
    let binding = |namespace: &'static str| {
        BindingSpec {
            namespace,
            service_account: "deployer",
            policy: "deploy",
            issuer: "ci",
            iss: "https://ci.example.com",
            sub: "deploy",
            expires: jiff::Timestamp::now() + jiff::SignedDuration::from_mins(15),
        }
        .secret()
    };
    let payments: Api<Secret> = Api::namespaced(client.clone(), "payments");
    let staging: Api<Secret> = Api::namespaced(client.clone(), "staging");
    // Without the printed rules nothing is allowed: the rules are what grants.
    assert_eq!(
        code(
            payments
                .create(&PostParams::default(), &binding("payments"))
                .await
        ),
        403
    );
    apiserver.set_rbac(stand_in_rules(&yaml));

    let created = payments
        .create(&PostParams::default(), &binding("payments"))
        .await
        .unwrap();
    assert_eq!(
        code(
            staging
                .create(&PostParams::default(), &binding("staging"))
                .await
        ),
        403,
        "staging has no revocable grant"
    );
    // No read verb on secrets, anywhere.
    assert_eq!(code(payments.get("database").await), 403);
    assert_eq!(code(payments.list(&ListParams::default()).await), 403);
    assert_eq!(
        code(
            Api::<Secret>::all(client.clone())
                .list(&ListParams::default())
                .await
        ),
        403
    );
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some("not-a-token".to_owned()),
            audiences: None,
        },
        ..TokenReview::default()
    };
    assert_eq!(
        code(
            Api::<TokenReview>::all(client.clone())
                .create(&PostParams::default(), &review)
                .await
        ),
        200
    );
    let precondition = DeleteParams {
        preconditions: Some(Preconditions {
            uid: created.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let name = created.metadata.name.unwrap();
    assert_eq!(code(payments.delete(&name, &precondition).await), 200);
    let selector = Selector::default().to_label_selector();
    assert_eq!(
        code(
            payments
                .delete_collection(
                    &DeleteParams::default(),
                    &ListParams::default().labels(&selector)
                )
                .await
        ),
        200
    );
    assert_eq!(
        apiserver.secrets().len(),
        1,
        "the collection delete matched only bindings: the other Secret stays"
    );
    apiserver.shutdown().await;
}

#[tokio::test]
async fn with_team_files_the_command_says_a_later_revocable_team_policy_needs_new_rbac() {
    let output = tokenvend(&["rbac", "--config", "config/teams.yaml"], None).await;
    stdout_of(&output);
    let warnings = String::from_utf8_lossy(&output.stderr);
    assert!(
        warnings.contains("makes a policy revocable") && warnings.contains("regenerated"),
        "{warnings}"
    );
    let plain = tokenvend(&["rbac", "--config", "config/github-actions.yaml"], None).await;
    assert!(!String::from_utf8_lossy(&plain.stderr).contains("revocable"));
}

/// `kubectl apply` of the output on a cluster without the admission policy API would apply
/// every rule and fail only on the policy: the policy comes first, before any rule on
/// secrets, and the output says why the order matters.
#[tokio::test]
async fn the_admission_policy_is_printed_before_any_rule_on_secrets() {
    let output = tokenvend(&["rbac", "--config", "config/github-actions.yaml"], None).await;
    let printed = stdout_of(&output);
    let documents: Vec<&str> = printed.split("---\n").skip(1).collect();
    let position = |kind: &str| {
        documents
            .iter()
            .position(|document| document.contains(&format!("kind: {kind}\n")))
            .unwrap_or_else(|| panic!("no {kind}:\n{printed}"))
    };
    let first_secrets_rule = documents
        .iter()
        .position(|document| {
            (document.contains("kind: Role\n") || document.contains("kind: ClusterRole\n"))
                && document.contains("- secrets\n")
        })
        .expect("a rule on secrets");
    assert!(
        position("ValidatingAdmissionPolicy") < first_secrets_rule
            && position("ValidatingAdmissionPolicyBinding") < first_secrets_rule,
        "{printed}"
    );
    let header: String = printed
        .lines()
        .take_while(|line| line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(header.contains("order"), "{header}");
    assert!(header.contains("1.30"), "{header}");
}
