//! What revocable grants add to the plan (docs/revocation.md): tokenvend creates a binding
//! Secret per token and deletes it to revoke, so it needs `create`, `delete` and
//! `deletecollection` on `secrets`, in exactly the namespaces of revocable grants, and
//! `create` on `tokenreviews` to authenticate a token presented for revocation. It never gets
//! `get`, `list` or `watch` on secrets: it needs none, and they would let it read every
//! credential in those namespaces.
//!
//! `create` on secrets cannot be narrowed by RBAC (`resourceNames` cannot name an object that
//! does not exist yet), and in a namespace it would let a compromised tokenvend create a
//! legacy token Secret for any account there. So the plan also carries a
//! ValidatingAdmissionPolicy with which the API server refuses any Secret write of tokenvend's
//! own account but to Secrets of the binding type without data. A DELETE is judged on the
//! stored object (`oldObject`); a `deletecollection` is admitted object by object as DELETEs.
//!
//! Templated namespaces follow the minting rules: a ClusterRole (no namespace can be listed),
//! and the admission policy confines the Secret writes to the namespaces the templates can
//! render, never a protected one.

use std::collections::BTreeSet;

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicySpec, Validation,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::admission::{NAMESPACE_PLACEHOLDER, deny_binding, pattern_of};
use super::{RbacObject, RbacPlan, is_templated, role_ref, subjects};
use crate::k8s::binding::BINDING_TYPE;
use crate::policy::ServiceAccountRef;

/// The verbs on `secrets` that binding Secrets need: create one per token, delete one to
/// revoke, delete a collection to sweep expired ones. No read verb, ever.
pub const SECRET_VERBS: [&str; 3] = ["create", "delete", "deletecollection"];

/// The admission expression: every Secret write of tokenvend's account is a binding Secret
/// without data (on DELETE, the stored object is).
pub fn binding_only_expression() -> String {
    format!(
        "request.operation == \"DELETE\" \
         ? (has(oldObject.type) && oldObject.type == \"{BINDING_TYPE}\") \
         : (has(object.type) && object.type == \"{BINDING_TYPE}\" \
         && !has(object.data) && !has(object.stringData))"
    )
}

/// Adds the revocation objects for grants in `namespaces` (as written; templated ones
/// included) to `plan`. Nothing when `namespaces` is empty (no grant is revocable).
pub fn add(
    plan: &mut RbacPlan,
    namespaces: &[String],
    subject: &ServiceAccountRef,
    protected: &BTreeSet<String>,
) {
    if namespaces.is_empty() {
        return;
    }
    let (templated, literal): (BTreeSet<&String>, BTreeSet<&String>) =
        namespaces.iter().partition(|ns| is_templated(ns));
    for namespace in &literal {
        plan.objects.push(RbacObject::Role(Role {
            metadata: metadata(bindings_name(subject), Some(namespace)),
            rules: Some(vec![secret_rule()]),
        }));
        plan.objects.push(RbacObject::RoleBinding(RoleBinding {
            metadata: metadata(bindings_name(subject), Some(namespace)),
            role_ref: role_ref("Role", bindings_name(subject)),
            subjects: subjects(subject),
        }));
    }
    let cluster_name = format!("{}-{}", subject.namespace(), bindings_name(subject));
    let mut cluster_rules = vec![PolicyRule {
        api_groups: Some(vec!["authentication.k8s.io".to_owned()]),
        resources: Some(vec!["tokenreviews".to_owned()]),
        verbs: vec!["create".to_owned()],
        ..PolicyRule::default()
    }];
    let namespace_clause = if templated.is_empty() {
        None
    } else {
        plan.warnings.push(format!(
            "warning: revocable grants with templated namespaces ({}) cannot be bound per \
             namespace; the ClusterRole {cluster_name:?} lets tokenvend create and delete \
             Secrets in EVERY namespace, and the ValidatingAdmissionPolicy {:?} confines it to \
             data-less binding Secrets in the namespaces the grants can render (never a \
             protected one)",
            templated
                .iter()
                .map(|ns| ns.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            policy_name(subject)
        ));
        cluster_rules.push(secret_rule());
        Some(namespace_clause(&literal, &templated, protected))
    };
    plan.objects.push(RbacObject::ClusterRole(ClusterRole {
        metadata: metadata(cluster_name.clone(), None),
        rules: Some(cluster_rules),
        aggregation_rule: None,
    }));
    plan.objects
        .push(RbacObject::ClusterRoleBinding(ClusterRoleBinding {
            metadata: metadata(cluster_name.clone(), None),
            role_ref: role_ref("ClusterRole", cluster_name),
            subjects: subjects(subject),
        }));
    // The policy and its binding go first, before any object of the plan: applied in order,
    // the policy is in force before any rule on secrets exists, and on a cluster without the
    // policy API the first error is about the policy.
    let (policy, binding) = admission(subject, namespace_clause);
    plan.objects.splice(
        0..0,
        [
            RbacObject::ValidatingAdmissionPolicy(policy),
            RbacObject::ValidatingAdmissionPolicyBinding(binding),
        ],
    );
}

/// `{subject name}-token-bindings`, for the namespaced objects.
fn bindings_name(subject: &ServiceAccountRef) -> String {
    format!("{}-token-bindings", subject.name())
}

/// `{subject namespace}-{subject name}-token-bindings-only`: cluster-scoped.
pub(super) fn policy_name(subject: &ServiceAccountRef) -> String {
    format!(
        "{}-{}-token-bindings-only",
        subject.namespace(),
        subject.name()
    )
}

fn metadata(name: String, namespace: Option<&str>) -> ObjectMeta {
    let mut metadata = super::metadata(name, namespace);
    if let Some(labels) = &mut metadata.labels {
        labels.insert(
            "app.kubernetes.io/component".to_owned(),
            "revocation-rbac".to_owned(),
        );
    }
    metadata
}

fn secret_rule() -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["secrets".to_owned()]),
        verbs: SECRET_VERBS.iter().map(|verb| (*verb).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// `request.namespace` is a literal revocable namespace, or a templated one's rendering
/// outside the protected namespaces.
fn namespace_clause(
    literal: &BTreeSet<&String>,
    templated: &BTreeSet<&String>,
    protected: &BTreeSet<String>,
) -> String {
    let quoted = |text: &str| format!("\"{text}\"");
    let list = |items: Vec<&String>| {
        let quoted: Vec<String> = items.into_iter().map(|item| quoted(item)).collect();
        format!("[{}]", quoted.join(", "))
    };
    let mut clauses = Vec::new();
    if !literal.is_empty() {
        clauses.push(format!(
            "request.namespace in {}",
            list(literal.iter().copied().collect())
        ));
    }
    let patterns: Vec<String> = templated
        .iter()
        .map(|ns| {
            format!(
                "request.namespace.matches({})",
                quoted(&pattern_of(ns, NAMESPACE_PLACEHOLDER))
            )
        })
        .collect();
    clauses.push(format!(
        "(!(request.namespace in {}) && ({}))",
        list(protected.iter().collect()),
        patterns.join(" || ")
    ));
    format!("({})", clauses.join(" || "))
}

fn admission(
    subject: &ServiceAccountRef,
    namespace_clause: Option<String>,
) -> (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding) {
    let name = policy_name(subject);
    let mut validations = vec![Validation {
        expression: binding_only_expression(),
        message: Some(format!(
            "tokenvend may only create and delete its own Secrets of type {BINDING_TYPE}, \
             without data"
        )),
        ..Validation::default()
    }];
    if let Some(expression) = namespace_clause {
        validations.push(Validation {
            expression,
            message: Some(
                "tokenvend may only write binding Secrets in the namespaces of revocable grants"
                    .to_owned(),
            ),
            ..Validation::default()
        });
    }
    let policy = ValidatingAdmissionPolicy {
        metadata: metadata(name.clone(), None),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_owned()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: Some(vec![String::new()]),
                    api_versions: Some(vec!["v1".to_owned()]),
                    operations: Some(vec![
                        "CREATE".to_owned(),
                        "UPDATE".to_owned(),
                        "DELETE".to_owned(),
                    ]),
                    resources: Some(vec!["secrets".to_owned()]),
                    ..NamedRuleWithOperations::default()
                }]),
                ..MatchResources::default()
            }),
            match_conditions: Some(vec![MatchCondition {
                name: "tokenvend-itself".to_owned(),
                expression: format!(
                    "request.userInfo.username == \"system:serviceaccount:{}:{}\"",
                    subject.namespace(),
                    subject.name()
                ),
            }]),
            validations: Some(validations),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        status: None,
    };
    (policy, deny_binding(metadata(name.clone(), None), name))
}

/// The namespaces (as written) of every revocable grant, sorted and distinct.
pub fn revocable_namespaces<'a>(
    grants: impl Iterator<Item = &'a crate::policy::GrantRule>,
) -> Vec<String> {
    let namespaces: BTreeSet<String> = grants
        .filter(|grant| grant.revocable)
        .flat_map(|grant| &grant.service_accounts)
        .map(|account| account.written_parts().0)
        .collect();
    namespaces.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::config::Config;

    const CONFIG: &str = r#"
issuers:
  - {name: ci, url: "https://ci.example.com", audiences: [tokenvend]}
policies:
  - name: payments
    issuer: ci
    match: {sub: payments}
    grant: {serviceAccounts: [payments/deployer, payments/backup, shared/reader], revocable: true}
  - name: production
    issuer: ci
    match: {sub: production}
    grant: {serviceAccounts: [production/deployer, shared/reader]}
  - name: teams
    issuer: ci
    match: {sub: {glob: "team:*"}}
    grant: {serviceAccounts: ["team-${claims.team}/deployer"], revocable: REVOCABLE}
"#;

    fn subject() -> ServiceAccountRef {
        ServiceAccountRef::parse("tokenvend/tokenvend").unwrap()
    }

    fn protected() -> BTreeSet<String> {
        ["kube-system", "kube-public", "kube-node-lease", "tokenvend"]
            .map(str::to_owned)
            .into()
    }

    /// The revocation objects for CONFIG (the templated grant revocable or not), as YAML
    /// read back, and the warnings.
    fn emitted(config: &str) -> (Vec<Value>, Vec<String>) {
        let config = Config::parse(config, std::path::Path::new("config.yaml")).unwrap();
        let namespaces = revocable_namespaces(config.policies.iter().map(|p| &p.grant));
        let mut plan = RbacPlan::default();
        add(&mut plan, &namespaces, &subject(), &protected());
        let yaml = plan.to_yaml("");
        (serde_saphyr::from_multiple(&yaml).unwrap(), plan.warnings)
    }

    fn secret_rules(object: &Value) -> Vec<&Value> {
        object["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|rule| {
                rule["resources"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r == "secrets" || r == "*"))
            })
            .collect()
    }

    fn verbs(rule: &Value) -> Vec<&str> {
        rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    }

    #[test]
    fn secrets_are_written_in_exactly_the_namespaces_of_revocable_grants_and_never_read() {
        let (objects, warnings) = emitted(&CONFIG.replace("REVOCABLE", "false"));
        assert!(warnings.is_empty(), "{warnings:?}");
        let mut namespaces = Vec::new();
        for object in &objects {
            for rule in secret_rules(object) {
                assert_eq!(verbs(rule), ["create", "delete", "deletecollection"]);
                assert_eq!(rule["apiGroups"], serde_json::json!([""]));
                assert!(rule.get("resourceNames").is_none());
                assert_eq!(object["kind"], "Role", "{object}");
                namespaces.push(object["metadata"]["namespace"].as_str().unwrap());
            }
        }
        assert_eq!(namespaces, ["payments", "shared"]);
        // Each Role has its RoleBinding to tokenvend's account.
        let bindings: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "RoleBinding")
            .collect();
        assert_eq!(bindings.len(), 2);
        for binding in bindings {
            assert_eq!(binding["roleRef"]["name"], "tokenvend-token-bindings");
            assert_eq!(binding["subjects"][0]["namespace"], "tokenvend");
            assert_eq!(binding["subjects"][0]["name"], "tokenvend");
        }
        // TokenReviews, cluster-wide (the resource is cluster-scoped).
        let cluster_role = objects.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
        assert_eq!(
            cluster_role["rules"],
            serde_json::json!([{"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}])
        );
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                // First: applied in order, the admission policy is in force before any rule
                // on secrets is.
                "ValidatingAdmissionPolicy",
                "ValidatingAdmissionPolicyBinding",
                "Role",
                "RoleBinding",
                "Role",
                "RoleBinding",
                "ClusterRole",
                "ClusterRoleBinding",
            ]
        );
    }

    #[test]
    fn the_admission_policy_allows_tokenvend_only_data_less_binding_secrets() {
        let (objects, _) = emitted(&CONFIG.replace("REVOCABLE", "false"));
        let policy = &objects[0];
        assert_eq!(policy["apiVersion"], "admissionregistration.k8s.io/v1");
        assert_eq!(
            policy["metadata"]["name"],
            "tokenvend-tokenvend-token-bindings-only"
        );
        let spec = &policy["spec"];
        assert_eq!(spec["failurePolicy"], "Fail");
        assert_eq!(
            spec["matchConstraints"]["resourceRules"],
            serde_json::json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["secrets"]}])
        );
        assert_eq!(
            spec["matchConditions"][0]["expression"],
            "request.userInfo.username == \"system:serviceaccount:tokenvend:tokenvend\""
        );
        assert_eq!(spec["validations"].as_array().unwrap().len(), 1);
        assert_eq!(
            spec["validations"][0]["expression"],
            "request.operation == \"DELETE\" \
             ? (has(oldObject.type) && oldObject.type == \"tokenvend.io/token-binding\") \
             : (has(object.type) && object.type == \"tokenvend.io/token-binding\" \
             && !has(object.data) && !has(object.stringData))"
        );
        let binding = &objects[1];
        assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
        assert_eq!(
            binding["spec"]["validationActions"],
            serde_json::json!(["Deny"])
        );
    }

    #[test]
    fn a_templated_revocable_namespace_is_cluster_wide_and_confined_by_admission() {
        let (objects, warnings) = emitted(&CONFIG.replace("REVOCABLE", "true"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("team-${claims.team}"), "{warnings:?}");
        let cluster_role = objects.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
        let rules = secret_rules(cluster_role);
        assert_eq!(rules.len(), 1);
        assert_eq!(verbs(rules[0]), ["create", "delete", "deletecollection"]);
        let policy = objects
            .iter()
            .find(|o| o["kind"] == "ValidatingAdmissionPolicy")
            .unwrap();
        assert_eq!(
            policy["spec"]["validations"][1]["expression"],
            "(request.namespace in [\"payments\", \"shared\"] || \
             (!(request.namespace in [\"kube-node-lease\", \"kube-public\", \"kube-system\", \"tokenvend\"]) \
             && (request.namespace.matches(\"^team-[a-z0-9-]+$\"))))"
        );
    }

    #[test]
    fn without_revocable_grants_nothing_is_added() {
        let config = CONFIG
            .replace("REVOCABLE", "false")
            .replace("revocable: true", "revocable: false");
        let (objects, warnings) = emitted(&config);
        assert!(objects.is_empty() && warnings.is_empty(), "{objects:?}");
    }
}
