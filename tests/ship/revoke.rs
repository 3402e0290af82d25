//! `tokenvend revoke`, the binary, against the stand-in: binding Secrets created as tokenvend
//! creates them (and a token bound to one), revoked by policy, subject, time and name, with
//! the operator's own kubeconfig; and how it fails.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use kube_standin::{
    ApiServer, ApiServerOptions, Fault, FaultTarget, RbacRule, SeedSecret, SeedServiceAccount,
    SeedUser,
};
use serde_json::Value;
use tokenvend::dev::session::kube_config_for;
use tokenvend::k8s::binding::{BINDING_TYPE, BindingSpec};

use crate::support::{ScratchFile, scratch_file, tokenvend};

const ISSUER_URL: &str = "https://ci.example.com";

const CONFIG: &str = r#"
issuers:
  - {name: ci, url: "https://ci.example.com", audiences: [tokenvend]}
policies:
  - name: deploy
    issuer: ci
    match: {sub: {glob: "deploy:*"}}
    grant: {serviceAccounts: [payments/deployer, production/deployer], revocable: true}
  - name: backup
    issuer: ci
    match: {sub: {glob: "backup:*"}}
    grant: {serviceAccounts: [payments/backup], revocable: true}
"#;

/// Creates bindings, mints bound tokens and reviews them (the test's own hand).
const ADMIN_TOKEN: &str = "admin-token";
/// The operator: lists Secrets in all namespaces, deletes them.
const OPERATOR_TOKEN: &str = "operator-token";
/// May list and delete Secrets in `payments` only.
const PAYMENTS_OPERATOR_TOKEN: &str = "payments-operator-token";
/// May do nothing.
const NOBODY_TOKEN: &str = "nobody-token";

/// A Secret that looks like a binding by its labels but is a plain Opaque Secret with data.
const IMPOSTOR: (&str, &str) = ("payments", "tokenvend-impostor");
/// A binding created long ago (seeded with its creation time).
const OLD_BINDING: (&str, &str) = ("payments", "tokenvend-old01");
const OLD: i64 = 1_700_000_000;

fn spec<'a>(
    namespace: &'a str,
    account: &'a str,
    policy: &'a str,
    sub: &'a str,
) -> BindingSpec<'a> {
    BindingSpec {
        namespace,
        service_account: account,
        policy,
        issuer: "ci",
        iss: ISSUER_URL,
        sub,
        expires: Timestamp::now() + jiff::SignedDuration::from_mins(15),
    }
}

/// A seed carrying exactly what `secret` carries.
fn seed_from(secret: &Secret, name: &str, type_: &str) -> SeedSecret {
    SeedSecret {
        namespace: secret.metadata.namespace.clone().unwrap(),
        name: name.to_owned(),
        type_: type_.to_owned(),
        labels: secret.metadata.labels.clone().unwrap(),
        annotations: secret.metadata.annotations.clone().unwrap(),
        ..SeedSecret::default()
    }
}

fn options() -> ApiServerOptions {
    let old = seed_from(
        &spec("payments", "deployer", "deploy", "deploy:old").secret(),
        OLD_BINDING.1,
        BINDING_TYPE,
    )
    .created_at(Timestamp::from_second(OLD).unwrap());
    let mut impostor = seed_from(
        &spec("payments", "deployer", "deploy", "deploy:x").secret(),
        IMPOSTOR.1,
        "",
    );
    impostor.data.insert("password".into(), b"hunter2".to_vec());
    let all = |user: &str, verbs: &[&str]| RbacRule::allow(user, verbs, &[""], &["secrets"]);
    ApiServerOptions {
        service_accounts: [
            "payments/deployer",
            "payments/backup",
            "production/deployer",
        ]
        .iter()
        .map(|sa| {
            let (namespace, name) = sa.split_once('/').unwrap();
            SeedServiceAccount::new(namespace, name)
        })
        .collect(),
        secrets: vec![old, impostor, SeedSecret::opaque("payments", "app-config")],
        users: vec![
            SeedUser::new(ADMIN_TOKEN, "admin"),
            SeedUser::new(OPERATOR_TOKEN, "operator"),
            SeedUser::new(PAYMENTS_OPERATOR_TOKEN, "payments-operator"),
            SeedUser::new(NOBODY_TOKEN, "nobody"),
        ],
        rbac: vec![
            all("admin", &["create", "get", "list", "delete"]),
            RbacRule::allow("admin", &["create"], &[""], &["serviceaccounts/token"]),
            RbacRule::allow(
                "admin",
                &["create"],
                &["authentication.k8s.io"],
                &["tokenreviews"],
            ),
            all("operator", &["get", "list", "delete"]),
            all("payments-operator", &["list", "delete"]).in_namespace("payments"),
        ],
        // Revocation is observed at once; the cache is the stand-in's own concern.
        token_success_cache_ttl: Duration::ZERO,
        ..ApiServerOptions::default()
    }
}

struct Cluster {
    apiserver: ApiServer,
    admin: kube::Client,
    config: ScratchFile,
}

impl Cluster {
    async fn start() -> Self {
        serving::crypto::install_providers().unwrap();
        let apiserver = ApiServer::start("127.0.0.1:0".parse().unwrap(), options())
            .await
            .unwrap();
        let admin = kube::Client::try_from(
            kube_config_for(&apiserver, ADMIN_TOKEN, Duration::from_secs(5))
                .await
                .unwrap(),
        )
        .unwrap();
        Self {
            apiserver,
            admin,
            config: scratch_file("config.yaml", CONFIG),
        }
    }

    /// Creates a binding as tokenvend would; returns its name.
    async fn bind(&self, spec: &BindingSpec<'_>) -> String {
        let api: Api<Secret> = Api::namespaced(self.admin.clone(), spec.namespace);
        let created = api
            .create(&PostParams::default(), &spec.secret())
            .await
            .unwrap();
        created.metadata.name.unwrap()
    }

    /// A token for `namespace/account` bound to the Secret `name`.
    async fn bound_token(&self, namespace: &str, account: &str, name: &str) -> String {
        let secret = Api::<Secret>::namespaced(self.admin.clone(), namespace)
            .get(name)
            .await
            .unwrap();
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(900),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Secret".into()),
                    name: Some(name.into()),
                    uid: secret.metadata.uid,
                }),
            },
            ..TokenRequest::default()
        };
        Api::<ServiceAccount>::namespaced(self.admin.clone(), namespace)
            .create_token_request(account, &PostParams::default(), &request)
            .await
            .unwrap()
            .status
            .unwrap()
            .token
    }

    async fn authenticated(&self, token: &str) -> bool {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.admin.clone())
            .create(&PostParams::default(), &review)
            .await
            .unwrap();
        reviewed.status.and_then(|s| s.authenticated) == Some(true)
    }

    fn names(&self) -> BTreeSet<String> {
        self.apiserver
            .secrets()
            .iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s.metadata.namespace.as_deref().unwrap(),
                    s.metadata.name.as_deref().unwrap()
                )
            })
            .collect()
    }

    /// `tokenvend revoke --config CONFIG ARGS` as the user of `token`.
    async fn revoke(&self, token: &str, args: &[&str]) -> std::process::Output {
        let kubeconfig = scratch_file("kubeconfig", &self.apiserver.kubeconfig(token));
        let mut all = vec!["revoke", "--config", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        tokenvend(&all, Some(&kubeconfig)).await
    }
}

fn lines(output: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn revoked(output: &std::process::Output) -> BTreeSet<String> {
    lines(output)
        .iter()
        .filter(|line| line["outcome"] == "revoked")
        .map(|line| line["binding"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn revoke_by_policy_deletes_all_and_only_its_live_bindings_and_their_tokens_die() {
    let cluster = Cluster::start().await;
    let deploy_a = cluster
        .bind(&spec("payments", "deployer", "deploy", "deploy:a"))
        .await;
    let deploy_b = cluster
        .bind(&spec("production", "deployer", "deploy", "deploy:b"))
        .await;
    let backup = cluster
        .bind(&spec("payments", "backup", "backup", "backup:a"))
        .await;
    let token = cluster.bound_token("payments", "deployer", &deploy_a).await;
    let backup_token = cluster.bound_token("payments", "backup", &backup).await;
    assert!(cluster.authenticated(&token).await);
    let before = cluster.names();
    let writes = cluster.apiserver.secret_writes();

    // --dry-run lists and changes nothing.
    let dry = cluster
        .revoke(OPERATOR_TOKEN, &["--policy", "deploy", "--dry-run"])
        .await;
    assert!(dry.status.success(), "{}", stderr(&dry));
    let listed: BTreeSet<String> = lines(&dry)
        .iter()
        .inspect(|line| assert_eq!(line["outcome"], "dry_run"))
        .map(|line| line["binding"].as_str().unwrap().to_owned())
        .collect();
    let expected = BTreeSet::from([
        format!("payments/{deploy_a}"),
        format!("production/{deploy_b}"),
        format!("{}/{}", OLD_BINDING.0, OLD_BINDING.1),
    ]);
    assert_eq!(listed, expected);
    assert!(stderr(&dry).contains("would revoke"), "{}", stderr(&dry));
    assert_eq!(cluster.names(), before);
    assert_eq!(cluster.apiserver.secret_writes(), writes);
    assert!(cluster.authenticated(&token).await);

    let run = cluster
        .revoke(OPERATOR_TOKEN, &["--policy", "deploy"])
        .await;
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(revoked(&run), expected);
    for line in lines(&run) {
        assert_eq!(line["via"], "cli");
        assert_eq!(line["policy"], "deploy");
        assert!(line["reason"].is_null(), "{line}");
    }
    let table = stderr(&run);
    assert!(
        table.contains("BINDING") && table.contains("deploy:a"),
        "{table}"
    );
    assert!(table.contains("payments/deployer"), "{table}");
    let after = cluster.names();
    let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
    assert_eq!(gone, expected, "only the deploy policy's bindings");
    assert!(after.contains(&format!("payments/{backup}")));
    assert!(after.contains(&format!("{}/{}", IMPOSTOR.0, IMPOSTOR.1)));
    // The token bound to a revoked binding is refused; the other policy's still works.
    assert!(!cluster.authenticated(&token).await);
    assert!(cluster.authenticated(&backup_token).await);

    // Again: nothing matches any more, and that is no error.
    let again = cluster
        .revoke(OPERATOR_TOKEN, &["--policy", "deploy"])
        .await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(lines(&again).is_empty());
    cluster.apiserver.shutdown().await;
}

#[tokio::test]
async fn conditions_combine_subject_issuer_and_creation_time() {
    let cluster = Cluster::start().await;
    let mine = cluster
        .bind(&spec("payments", "deployer", "deploy", "deploy:a"))
        .await;
    let theirs = cluster
        .bind(&spec("payments", "deployer", "deploy", "deploy:b"))
        .await;
    // The subject, with its issuer: only that caller's binding.
    let by_subject = cluster
        .revoke(
            OPERATOR_TOKEN,
            &[
                "--issuer",
                "ci",
                "--subject",
                "deploy:a",
                "--output",
                "json",
            ],
        )
        .await;
    assert!(by_subject.status.success(), "{}", stderr(&by_subject));
    assert_eq!(
        revoked(&by_subject),
        BTreeSet::from([format!("payments/{mine}")])
    );
    assert!(
        !stderr(&by_subject).contains("BINDING"),
        "--output json: no table"
    );
    // Issued before a time an hour ago: only the old binding, not the live one.
    let by_time = cluster
        .revoke(
            OPERATOR_TOKEN,
            &["--policy", "deploy", "--issued-before", "1h"],
        )
        .await;
    assert!(by_time.status.success(), "{}", stderr(&by_time));
    assert_eq!(
        revoked(&by_time),
        BTreeSet::from([format!("{}/{}", OLD_BINDING.0, OLD_BINDING.1)])
    );
    assert!(cluster.names().contains(&format!("payments/{theirs}")));
    // An issuer the config does not know is refused before any call.
    let unknown = cluster
        .revoke(OPERATOR_TOKEN, &["--issuer", "gitlab", "--subject", "x"])
        .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no such issuer"),
        "{}",
        stderr(&unknown)
    );
    cluster.apiserver.shutdown().await;
}

#[tokio::test]
async fn a_named_secret_that_is_not_a_binding_is_refused_and_kept() {
    let cluster = Cluster::start().await;
    let before = cluster.names();
    let named = format!("{}/{}", IMPOSTOR.0, IMPOSTOR.1);
    let output = cluster.revoke(OPERATOR_TOKEN, &["--binding", &named]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("is not a tokenvend binding"), "{message}");
    assert!(message.contains("Opaque"), "{message}");
    assert!(
        !message.contains("hunter2")
            && !String::from_utf8_lossy(&output.stdout).contains("hunter2")
    );
    assert_eq!(cluster.names(), before);
    // A real binding by name goes.
    let old = format!("{}/{}", OLD_BINDING.0, OLD_BINDING.1);
    let output = cluster.revoke(OPERATOR_TOKEN, &["--binding", &old]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(revoked(&output), BTreeSet::from([old.clone()]));
    assert!(!cluster.names().contains(&old));
    cluster.apiserver.shutdown().await;
}

#[tokio::test]
async fn without_any_condition_nothing_is_revoked() {
    let cluster = Cluster::start().await;
    let output = cluster.revoke(OPERATOR_TOKEN, &[]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--issued-before now"),
        "{}",
        stderr(&output)
    );
    let all = cluster
        .revoke(OPERATOR_TOKEN, &["--issued-before", "now", "--dry-run"])
        .await;
    assert!(all.status.success(), "{}", stderr(&all));
    assert_eq!(
        lines(&all).len(),
        1,
        "the one binding, not the other Secrets"
    );
    cluster.apiserver.shutdown().await;
}

#[tokio::test]
async fn a_forbidden_cluster_wide_list_falls_back_to_the_grants_namespaces() {
    let cluster = Cluster::start().await;
    let payments = cluster
        .bind(&spec("payments", "deployer", "deploy", "deploy:a"))
        .await;
    let production = cluster
        .bind(&spec("production", "deployer", "deploy", "deploy:b"))
        .await;
    // Allowed in payments only: payments' bindings go, production's list is refused, and
    // the run says so and fails.
    let output = cluster
        .revoke(PAYMENTS_OPERATOR_TOKEN, &["--policy", "deploy"])
        .await;
    let message = stderr(&output);
    assert!(message.contains("searching the namespaces"), "{message}");
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(message.contains("namespace production"), "{message}");
    assert!(message.to_lowercase().contains("forbidden"), "{message}");
    assert_eq!(
        revoked(&output),
        BTreeSet::from([
            format!("payments/{payments}"),
            format!("{}/{}", OLD_BINDING.0, OLD_BINDING.1)
        ])
    );
    assert!(
        cluster
            .names()
            .contains(&format!("production/{production}"))
    );

    let nobody = cluster.revoke(NOBODY_TOKEN, &["--policy", "deploy"]).await;
    assert_eq!(nobody.status.code(), Some(1));
    assert!(
        stderr(&nobody).contains("cannot list binding Secrets"),
        "{}",
        stderr(&nobody)
    );
    assert!(
        stderr(&nobody).to_lowercase().contains("forbidden"),
        "{}",
        stderr(&nobody)
    );
    cluster.apiserver.shutdown().await;
}

#[tokio::test]
async fn a_failed_delete_is_reported_after_the_others_are_revoked() {
    let cluster = Cluster::start().await;
    let a = cluster
        .bind(&spec("payments", "deployer", "deploy", "deploy:a"))
        .await;
    let b = cluster
        .bind(&spec("production", "deployer", "deploy", "deploy:b"))
        .await;
    cluster.apiserver.inject_for(
        FaultTarget::SecretDelete,
        Fault::Status {
            code: 500,
            retry_after: None,
            times: 1,
        },
    );
    let output = cluster
        .revoke(OPERATOR_TOKEN, &["--policy", "deploy"])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let lines = lines(&output);
    assert_eq!(lines.len(), 3);
    let failed: Vec<&Value> = lines.iter().filter(|l| l["outcome"] == "error").collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    assert!(stderr(&output).contains("1 of 3 binding(s) could not be revoked"));
    // The first delete failed; the other two went.
    let left: Vec<String> = [format!("payments/{a}"), format!("production/{b}")]
        .into_iter()
        .chain([format!("{}/{}", OLD_BINDING.0, OLD_BINDING.1)])
        .filter(|name| cluster.names().contains(name))
        .collect();
    assert_eq!(left, [failed[0]["binding"].as_str().unwrap()]);

    // The API server down: the list fails, clearly, and nothing is touched.
    cluster.apiserver.inject_for(
        FaultTarget::Any,
        Fault::Status {
            code: 503,
            retry_after: Some(1),
            times: 100,
        },
    );
    let down = cluster
        .revoke(OPERATOR_TOKEN, &["--policy", "deploy"])
        .await;
    assert_eq!(down.status.code(), Some(1));
    assert!(
        stderr(&down).contains("cannot list binding Secrets in all namespaces"),
        "{}",
        stderr(&down)
    );
    cluster.apiserver.shutdown().await;
}
