//! RBAC for minting (`tokenvend rbac`): the least-privilege Role and RoleBinding per target
//! namespace that let tokenvend's own service account `create` `serviceaccounts/token` for
//! exactly the service accounts the policies name (`resourceNames` restrict this
//! subresource because the name is in the URL: see "Referring to resources" in the Kubernetes
//! RBAC documentation, and `plugin/pkg/auth/authorizer/rbac` in kubernetes/kubernetes).
//!
//! Pure: `(namespace, name)` pairs in, Kubernetes objects out. A templated part (`${…}`, which
//! is resolved per request from the caller's claims) cannot be listed ahead of time, so it
//! widens the rule, and the plan carries a warning saying how far:
//! - a templated **name** drops `resourceNames` from that namespace's Role: every service
//!   account in the namespace may be minted;
//! - a templated **namespace** needs a ClusterRole and ClusterRoleBinding (with
//!   `resourceNames` when every such grant's account name is literal), so the plan adds a
//!   ValidatingAdmissionPolicy ([`admission`]) with which the API server refuses tokens in
//!   namespaces no grant names, and from templates in protected namespaces.
//!
//! Never wider than evaluation: a templated name in a protected namespace gets no rule at all,
//! since tokenvend never renders a template into one.

mod admission;
pub mod revocation;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::policy::{GrantedAccount, PolicySet, ServiceAccountRef};

/// What marks a templated namespace or name in a policy grant.
pub const TEMPLATE_MARKER: &str = "${";

/// The service account tokenvend runs as when `--service-account` is not given.
pub const DEFAULT_SUBJECT: &str = "tokenvend/tokenvend";

/// One generated RBAC object; serialises as the Kubernetes object itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RbacObject {
    Role(Role),
    RoleBinding(RoleBinding),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    ValidatingAdmissionPolicy(ValidatingAdmissionPolicy),
    ValidatingAdmissionPolicyBinding(ValidatingAdmissionPolicyBinding),
}

/// The generated objects, in a stable order, and the warnings about wider rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RbacPlan {
    pub objects: Vec<RbacObject>,
    /// One line per widened rule, for stderr.
    pub warnings: Vec<String>,
}

/// Every `(namespace, name)` that some policy grants, in policy order (duplicates allowed).
pub fn granted_targets(policies: &PolicySet) -> Vec<(String, String)> {
    policies
        .iter()
        .flat_map(|policy| &policy.grant.service_accounts)
        .map(GrantedAccount::written_parts)
        .collect()
}

/// The Roles and bindings that let `subject` mint tokens for `targets` and nothing else, given
/// the namespaces no template may render into (`kubernetes.protectedNamespaces` and
/// tokenvend's own).
pub fn plan(
    targets: &[(String, String)],
    subject: &ServiceAccountRef,
    protected: &BTreeSet<String>,
) -> RbacPlan {
    plan_with_teams(targets, &[], subject, protected)
}

/// [`plan`], plus the namespaces team ceilings allow (globs): team files change without the
/// main file, so their grants are bound by what the ceilings allow, any account name. A
/// ceiling namespace without `*` gets a Role in it (no `resourceNames`); a glob widens the
/// ClusterRole to every account name, confined by the admission policy to namespaces matching
/// the glob and never a protected one.
pub fn plan_with_teams(
    targets: &[(String, String)],
    team_namespaces: &[String],
    subject: &ServiceAccountRef,
    protected: &BTreeSet<String>,
) -> RbacPlan {
    let mut plan = RbacPlan::default();
    let mut targets = targets.to_vec();
    let mut globs: Vec<String> = Vec::new();
    for namespace in team_namespaces {
        if namespace.contains('*') {
            globs.push(namespace.clone());
        } else if !protected.contains(namespace) {
            targets.push((namespace.clone(), "${team}".to_owned()));
        }
    }
    globs.sort();
    globs.dedup();
    let (templated_namespaces, mut by_namespace) = group(&targets);
    by_namespace.retain(|namespace, names| {
        if protected.contains(namespace) {
            let dropped: Vec<String> = names.iter().filter(|n| is_templated(n)).cloned().collect();
            if !dropped.is_empty() {
                plan.warnings.push(protected_warning(namespace, &dropped));
                names.retain(|name| !is_templated(name));
            }
        }
        !names.is_empty()
    });
    for (namespace, names) in &by_namespace {
        let resource_names = if names.iter().any(|name| is_templated(name)) {
            plan.warnings.push(wide_name_warning(namespace, names));
            None
        } else {
            Some(names.iter().cloned().collect())
        };
        plan.objects
            .push(RbacObject::Role(role(subject, namespace, resource_names)));
        plan.objects
            .push(RbacObject::RoleBinding(role_binding(subject, namespace)));
    }
    if !templated_namespaces.is_empty() || !globs.is_empty() {
        let names: Option<Vec<String>> = templated_namespaces
            .iter()
            .map(|(_, name)| (!is_templated(name)).then(|| name.clone()))
            .collect::<Option<BTreeSet<String>>>()
            .map(|names| names.into_iter().collect())
            .filter(|_| globs.is_empty());
        if !globs.is_empty() {
            plan.warnings.push(format!(
                "warning: team ceilings allow namespaces by pattern ({}); the ClusterRole lets \
                 tokenvend mint tokens for EVERY service account in EVERY namespace, and the \
                 ValidatingAdmissionPolicy {:?} confines it to namespaces matching them (never a \
                 protected one)",
                globs.join(", "),
                admission::policy_name(subject)
            ));
        }
        if !templated_namespaces.is_empty() {
            plan.warnings.push(wide_namespace_warning(
                &templated_namespaces,
                names.as_deref(),
                &admission::policy_name(subject),
            ));
        }
        plan.objects
            .push(RbacObject::ClusterRole(cluster_role(subject, names)));
        plan.objects
            .push(RbacObject::ClusterRoleBinding(cluster_role_binding(
                subject,
            )));
        let (policy, binding) = admission::token_namespaces(
            subject,
            &by_namespace,
            &templated_namespaces,
            &globs,
            protected,
        );
        plan.objects
            .push(RbacObject::ValidatingAdmissionPolicy(policy));
        plan.objects
            .push(RbacObject::ValidatingAdmissionPolicyBinding(binding));
    }
    plan
}

impl RbacPlan {
    /// The objects as one multi-document YAML stream, after `header` (comment lines).
    ///
    /// # Panics
    /// Never in practice: Kubernetes objects always serialise.
    pub fn to_yaml(&self, header: &str) -> String {
        let mut out = String::from(header);
        for object in &self.objects {
            out.push_str("---\n");
            out.push_str(&serde_saphyr::to_string(object).expect("RBAC objects serialise"));
        }
        out
    }
}

fn is_templated(part: &str) -> bool {
    part.contains(TEMPLATE_MARKER)
}

/// Splits targets into the entries with a templated namespace (sorted, distinct), and literal
/// namespaces with their sorted, distinct names.
#[allow(clippy::type_complexity)] // two plain collections, named at the call site
fn group(
    targets: &[(String, String)],
) -> (Vec<(String, String)>, BTreeMap<String, BTreeSet<String>>) {
    let mut templated = Vec::new();
    let mut by_namespace: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (namespace, name) in targets {
        if is_templated(namespace) {
            templated.push((namespace.clone(), name.clone()));
        } else {
            by_namespace
                .entry(namespace.clone())
                .or_default()
                .insert(name.clone());
        }
    }
    templated.sort();
    templated.dedup();
    (templated, by_namespace)
}

fn wide_name_warning(namespace: &str, names: &BTreeSet<String>) -> String {
    let templated: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| is_templated(n))
        .collect();
    format!(
        "warning: {namespace}: templated service-account names ({}) cannot be listed in \
         resourceNames; the Role in namespace {namespace:?} lets tokenvend mint tokens for \
         EVERY service account in it",
        templated.join(", ")
    )
}

fn protected_warning(namespace: &str, dropped: &[String]) -> String {
    format!(
        "warning: {namespace}: templated service-account names ({}) get no rule: \
         {namespace:?} is a protected namespace, which tokenvend never renders a template into",
        dropped.join(", ")
    )
}

fn wide_namespace_warning(
    templated: &[(String, String)],
    names: Option<&[String]>,
    policy: &str,
) -> String {
    let written: Vec<String> = templated
        .iter()
        .map(|(ns, name)| format!("{ns}/{name}"))
        .collect();
    let accounts = match names {
        Some(names) => format!("the service accounts named {}", names.join(", ")),
        None => "EVERY service account".to_owned(),
    };
    format!(
        "warning: templated namespaces ({}) cannot be bound per namespace; the ClusterRole \
         lets tokenvend mint tokens for {accounts} in EVERY namespace. Apply the \
         ValidatingAdmissionPolicy {policy:?} with it (Kubernetes 1.30 or later): the API \
         server then refuses tokens outside the namespaces the grants name or the templates \
         can render, and in any protected namespace from a template",
        written.join(", ")
    )
}

/// `{subject name}-minter`, for the namespaced objects.
fn role_name(subject: &ServiceAccountRef) -> String {
    format!("{}-minter", subject.name())
}

/// `{subject namespace}-{subject name}-minter`: cluster-scoped, so it names the install.
fn cluster_role_name(subject: &ServiceAccountRef) -> String {
    format!("{}-{}-minter", subject.namespace(), subject.name())
}

fn metadata(name: String, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: namespace.map(str::to_owned),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "tokenvend".to_owned()),
            (
                "app.kubernetes.io/component".to_owned(),
                "minter-rbac".to_owned(),
            ),
        ])),
        ..ObjectMeta::default()
    }
}

fn create_tokens(resource_names: Option<Vec<String>>) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["serviceaccounts/token".to_owned()]),
        verbs: vec!["create".to_owned()],
        resource_names,
        non_resource_urls: None,
    }
}

fn subjects(subject: &ServiceAccountRef) -> Option<Vec<Subject>> {
    Some(vec![Subject {
        api_group: None,
        kind: "ServiceAccount".to_owned(),
        name: subject.name().to_owned(),
        namespace: Some(subject.namespace().to_owned()),
    }])
}

fn role_ref(kind: &str, name: String) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".to_owned(),
        kind: kind.to_owned(),
        name,
    }
}

fn role(subject: &ServiceAccountRef, namespace: &str, names: Option<Vec<String>>) -> Role {
    Role {
        metadata: metadata(role_name(subject), Some(namespace)),
        rules: Some(vec![create_tokens(names)]),
    }
}

fn role_binding(subject: &ServiceAccountRef, namespace: &str) -> RoleBinding {
    RoleBinding {
        metadata: metadata(role_name(subject), Some(namespace)),
        role_ref: role_ref("Role", role_name(subject)),
        subjects: subjects(subject),
    }
}

fn cluster_role(subject: &ServiceAccountRef, names: Option<Vec<String>>) -> ClusterRole {
    ClusterRole {
        metadata: metadata(cluster_role_name(subject), None),
        rules: Some(vec![create_tokens(names)]),
        aggregation_rule: None,
    }
}

fn cluster_role_binding(subject: &ServiceAccountRef) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: metadata(cluster_role_name(subject), None),
        role_ref: role_ref("ClusterRole", cluster_role_name(subject)),
        subjects: subjects(subject),
    }
}

#[cfg(test)]
mod tests;
