//! The ValidatingAdmissionPolicy that confines a cluster-wide minting rule. RBAC cannot name
//! namespaces by pattern, so a templated namespace needs a ClusterRole; this policy lets the
//! API server refuse every TokenRequest of tokenvend's own account that no grant could make:
//! in a namespace no literal or template names, for a name not granted there, or, for a
//! template, in a protected namespace (tokenvend never renders one there).
//!
//! Facts relied on (admissionregistration.k8s.io/v1, GA in Kubernetes 1.30): `resources`
//! names a subresource as `serviceaccounts/token`; for it `request.name` is the service
//! account's name and `request.namespace` its namespace; `matches` is RE2 and unanchored.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use regex::Regex;

use super::{is_templated, metadata};
use crate::policy::ServiceAccountRef;

/// What a placeholder can render to inside a namespace (a DNS-1123 label) and a name (a
/// DNS-1123 subdomain): a superset, since the API server refuses anything else anyway.
pub(super) const NAMESPACE_PLACEHOLDER: &str = "[a-z0-9-]+";
pub(super) const NAME_PLACEHOLDER: &str = "[a-z0-9.-]+";

/// The anchored RE2 pattern of a written namespace or name (`team-${claims.x}` →
/// `^team-[a-z0-9-]+$`). Written parts are valid Kubernetes names once filled in, so the only
/// literal needing care is `.`; it is written `[.]` so that the CEL string needs no escapes.
pub(super) fn pattern_of(written: &str, placeholder: &str) -> String {
    let placeholders = Regex::new(r"\$\{[^}]*\}").expect("valid regex");
    let literal = |text: &str| text.replace('.', "[.]");
    let mut pattern = String::from("^");
    let mut rest = 0;
    for found in placeholders.find_iter(written) {
        pattern.push_str(&literal(&written[rest..found.start()]));
        pattern.push_str(placeholder);
        rest = found.end();
    }
    pattern.push_str(&literal(&written[rest..]));
    pattern.push('$');
    pattern
}

/// The policy and its binding for `subject`: literal namespaces with the names granted there
/// (already without templated names in protected namespaces), and the templated targets.
pub(super) fn token_namespaces(
    subject: &ServiceAccountRef,
    literal: &BTreeMap<String, BTreeSet<String>>,
    templated: &[(String, String)],
    globs: &[String],
    protected: &BTreeSet<String>,
) -> (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding) {
    let name = policy_name(subject);
    let policy = ValidatingAdmissionPolicy {
        metadata: metadata(name.clone(), None),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_owned()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: Some(vec![String::new()]),
                    api_versions: Some(vec!["v1".to_owned()]),
                    operations: Some(vec!["CREATE".to_owned()]),
                    resources: Some(vec!["serviceaccounts/token".to_owned()]),
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
            validations: Some(vec![Validation {
                expression: allowed(literal, templated, globs, protected),
                message: Some(
                    "tokenvend may only create tokens for the service accounts its policies \
                     grant, and never from a template in a protected namespace"
                        .to_owned(),
                ),
                ..Validation::default()
            }]),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        status: None,
    };
    (policy, deny_binding(metadata(name.clone(), None), name))
}

/// The binding (named and labelled by `meta`) that puts policy `name` in force for every
/// request it matches, denying what it does not admit.
pub(super) fn deny_binding(meta: ObjectMeta, name: String) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: meta,
        spec: Some(ValidatingAdmissionPolicyBindingSpec {
            policy_name: Some(name),
            validation_actions: Some(vec!["Deny".to_owned()]),
            ..ValidatingAdmissionPolicyBindingSpec::default()
        }),
    }
}

/// `{subject namespace}-{subject name}-token-namespaces`: cluster-scoped, so it names the install.
pub(super) fn policy_name(subject: &ServiceAccountRef) -> String {
    format!(
        "{}-{}-token-namespaces",
        subject.namespace(),
        subject.name()
    )
}

/// The CEL condition: one clause per literal namespace, one per templated target.
fn allowed(
    literal: &BTreeMap<String, BTreeSet<String>>,
    templated: &[(String, String)],
    globs: &[String],
    protected: &BTreeSet<String>,
) -> String {
    let mut clauses: Vec<String> = literal
        .iter()
        .map(|(namespace, names)| {
            format!(
                "(request.namespace == {} && {})",
                quoted(namespace),
                names_allowed(names)
            )
        })
        .collect();
    let protected_list = list(protected.iter());
    for (namespace, name) in templated {
        clauses.push(format!(
            "(!(request.namespace in {protected_list}) && request.namespace.matches({}) && {})",
            quoted(&pattern_of(namespace, NAMESPACE_PLACEHOLDER)),
            names_allowed(&BTreeSet::from([name.clone()]))
        ));
    }
    // A team ceiling's namespace glob (`payments-*`), any account name.
    for glob in globs {
        let pattern = format!("^{}$", glob.replace('*', "[a-z0-9-]*"));
        clauses.push(format!(
            "(!(request.namespace in {protected_list}) && request.namespace.matches({}))",
            quoted(&pattern)
        ));
    }
    clauses.join(" || ")
}

/// `request.name` is one of the literal names or matches one of the templated ones.
fn names_allowed(names: &BTreeSet<String>) -> String {
    let (templated, literal): (Vec<&String>, Vec<&String>) =
        names.iter().partition(|name| is_templated(name));
    let mut tests = Vec::new();
    match literal.as_slice() {
        [] => {}
        [one] if templated.is_empty() => tests.push(format!("request.name == {}", quoted(one))),
        many => tests.push(format!("request.name in {}", list(many.iter().copied()))),
    }
    for name in templated {
        tests.push(format!(
            "request.name.matches({})",
            quoted(&pattern_of(name, NAME_PLACEHOLDER))
        ));
    }
    if tests.len() == 1 {
        tests.remove(0)
    } else {
        format!("({})", tests.join(" || "))
    }
}

/// A CEL string literal; the text is a Kubernetes name or a pattern without `"` or `\`.
fn quoted(text: &str) -> String {
    format!("\"{text}\"")
}

fn list<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let quoted: Vec<String> = items.map(|item| quoted(item)).collect();
    format!("[{}]", quoted.join(", "))
}
