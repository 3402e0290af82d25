use super::admission::{NAME_PLACEHOLDER, NAMESPACE_PLACEHOLDER, pattern_of};
use super::*;

fn targets(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(ns, name)| ((*ns).to_owned(), (*name).to_owned()))
        .collect()
}

fn subject() -> ServiceAccountRef {
    ServiceAccountRef::parse(DEFAULT_SUBJECT).unwrap()
}

fn protected() -> BTreeSet<String> {
    ["kube-system", "kube-public", "kube-node-lease", "tokenvend"]
        .map(str::to_owned)
        .into()
}

fn plan(targets: &[(String, String)], subject: &ServiceAccountRef) -> RbacPlan {
    super::plan(targets, subject, &protected())
}

fn roles(plan: &RbacPlan) -> Vec<&Role> {
    plan.objects
        .iter()
        .filter_map(|o| match o {
            RbacObject::Role(role) => Some(role),
            _ => None,
        })
        .collect()
}

#[test]
fn literal_names_become_one_role_and_binding_per_namespace() {
    let plan = plan(
        &targets(&[
            ("production", "deployer"),
            ("staging", "deployer"),
            ("production", "backup"),
            ("production", "deployer"),
        ]),
        &subject(),
    );
    assert!(plan.warnings.is_empty());
    assert_eq!(plan.objects.len(), 4);
    let roles = roles(&plan);
    assert_eq!(roles[0].metadata.namespace.as_deref(), Some("production"));
    let rule = &roles[0].rules.as_ref().unwrap()[0];
    assert_eq!(rule.verbs, ["create"]);
    assert_eq!(rule.api_groups.as_deref(), Some(&[String::new()][..]));
    assert_eq!(
        rule.resources.as_deref(),
        Some(&["serviceaccounts/token".to_owned()][..])
    );
    assert_eq!(
        rule.resource_names.as_deref(),
        Some(&["backup".to_owned(), "deployer".to_owned()][..])
    );
    assert_eq!(roles[1].metadata.namespace.as_deref(), Some("staging"));
}

#[test]
fn bindings_name_the_tokenvend_service_account() {
    let subject = ServiceAccountRef::parse("platform/vend").unwrap();
    let plan = plan(&targets(&[("production", "deployer")]), &subject);
    let RbacObject::RoleBinding(binding) = &plan.objects[1] else {
        panic!("expected a RoleBinding: {plan:?}");
    };
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(binding.role_ref.name, "vend-minter");
    let subjects = binding.subjects.as_ref().unwrap();
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(
        (subjects[0].namespace.as_deref(), subjects[0].name.as_str()),
        (Some("platform"), "vend")
    );
}

#[test]
fn a_templated_name_widens_only_its_namespace_with_a_warning() {
    let plan = plan(
        &targets(&[
            ("production", "${claims.repository_id}"),
            ("production", "deployer"),
            ("staging", "deployer"),
        ]),
        &subject(),
    );
    let roles = roles(&plan);
    assert_eq!(roles[0].rules.as_ref().unwrap()[0].resource_names, None);
    assert_eq!(
        roles[1].rules.as_ref().unwrap()[0].resource_names,
        Some(vec!["deployer".to_owned()])
    );
    assert_eq!(plan.warnings.len(), 1);
    assert!(plan.warnings[0].contains("production"), "{plan:?}");
    assert!(plan.warnings[0].contains("${claims.repository_id}"));
}

#[test]
fn a_templated_namespace_needs_a_cluster_role_with_a_warning_and_an_admission_policy() {
    let plan = plan(
        &targets(&[
            ("team-${claims.team}", "deployer"),
            ("staging", "deployer"),
            ("staging", "${claims.app}-reader"),
        ]),
        &subject(),
    );
    assert_eq!(plan.objects.len(), 6);
    let RbacObject::ClusterRole(role) = &plan.objects[2] else {
        panic!("expected a ClusterRole: {plan:?}");
    };
    assert_eq!(
        role.metadata.name.as_deref(),
        Some("tokenvend-tokenvend-minter")
    );
    // The templated namespace's account name is literal: the cluster-wide rule names it.
    assert_eq!(
        role.rules.as_ref().unwrap()[0].resource_names,
        Some(vec!["deployer".to_owned()])
    );
    let RbacObject::ClusterRoleBinding(binding) = &plan.objects[3] else {
        panic!("expected a ClusterRoleBinding: {plan:?}");
    };
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    let RbacObject::ValidatingAdmissionPolicy(policy) = &plan.objects[4] else {
        panic!("expected a ValidatingAdmissionPolicy: {plan:?}");
    };
    let spec = policy.spec.as_ref().unwrap();
    assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
    let rule = &spec
        .match_constraints
        .as_ref()
        .unwrap()
        .resource_rules
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        rule.resources.as_deref(),
        Some(&["serviceaccounts/token".to_owned()][..])
    );
    assert_eq!(rule.operations.as_deref(), Some(&["CREATE".to_owned()][..]));
    assert_eq!(
        spec.match_conditions.as_ref().unwrap()[0].expression,
        r#"request.userInfo.username == "system:serviceaccount:tokenvend:tokenvend""#
    );
    assert_eq!(
        spec.validations.as_ref().unwrap()[0].expression,
        "(request.namespace == \"staging\" && (request.name in [\"deployer\"] || \
         request.name.matches(\"^[a-z0-9.-]+-reader$\"))) || \
         (!(request.namespace in [\"kube-node-lease\", \"kube-public\", \"kube-system\", \"tokenvend\"]) && \
         request.namespace.matches(\"^team-[a-z0-9-]+$\") && request.name == \"deployer\")"
    );
    let RbacObject::ValidatingAdmissionPolicyBinding(binding) = &plan.objects[5] else {
        panic!("expected a ValidatingAdmissionPolicyBinding: {plan:?}");
    };
    let binding = binding.spec.as_ref().unwrap();
    assert_eq!(binding.policy_name, policy.metadata.name);
    assert_eq!(
        binding.validation_actions.as_deref(),
        Some(&["Deny".to_owned()][..])
    );
    assert_eq!(plan.warnings.len(), 2, "{:?}", plan.warnings);
    assert!(plan.warnings[1].contains("team-${claims.team}/deployer"));
    assert!(plan.warnings[1].contains("ValidatingAdmissionPolicy"));
}

#[test]
fn admission_patterns_match_what_a_template_can_render_and_nothing_else() {
    let namespace =
        regex::Regex::new(&pattern_of("team-${claims.team}-ci", NAMESPACE_PLACEHOLDER)).unwrap();
    for (candidate, expected) in [
        ("team-a-ci", true),
        ("team-a-b-ci", true),
        ("team--ci", false),
        ("team-ci", false),
        ("kube-system", false),
        ("xteam-a-ci", false),
        ("team-a-cix", false),
        ("team-a.b-ci", false),
    ] {
        assert_eq!(namespace.is_match(candidate), expected, "{candidate}");
    }
    let name = regex::Regex::new(&pattern_of("app.${claims.x}", NAME_PLACEHOLDER)).unwrap();
    assert!(name.is_match("app.web.v2"));
    assert!(
        !name.is_match("appxweb"),
        "a literal dot is not any character"
    );
}

#[test]
fn a_templated_name_in_a_protected_namespace_gets_no_rule() {
    let plan = plan(
        &targets(&[
            ("kube-system", "${claims.x}"),
            ("kube-system", "backup"),
            ("tokenvend", "${claims.y}"),
        ]),
        &subject(),
    );
    // tokenvend never renders a template into a protected namespace: no rule for it, and the
    // literal name keeps its Role.
    let roles = roles(&plan);
    assert_eq!(roles.len(), 1, "{plan:?}");
    assert_eq!(roles[0].metadata.namespace.as_deref(), Some("kube-system"));
    assert_eq!(
        roles[0].rules.as_ref().unwrap()[0].resource_names,
        Some(vec!["backup".to_owned()])
    );
    assert_eq!(plan.warnings.len(), 2, "{:?}", plan.warnings);
    assert!(
        plan.warnings
            .iter()
            .all(|w| w.contains("protected namespace")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn no_targets_means_no_objects() {
    assert_eq!(plan(&[], &subject()), RbacPlan::default());
}

#[test]
fn yaml_is_a_stream_of_kubernetes_objects_after_the_header() {
    let yaml = plan(&targets(&[("production", "deployer")]), &subject()).to_yaml("# head\n");
    assert!(yaml.starts_with("# head\n---\napiVersion: rbac.authorization.k8s.io/v1\n"));
    assert_eq!(yaml.matches("---\n").count(), 2, "{yaml}");
    assert!(yaml.contains("kind: Role\n"), "{yaml}");
    assert!(yaml.contains("kind: RoleBinding\n"), "{yaml}");
    assert!(yaml.contains("serviceaccounts/token"), "{yaml}");
}

#[test]
fn team_ceilings_bind_a_literal_namespace_by_role_and_a_glob_through_the_admission_policy() {
    let team = [
        "payments-*".to_owned(),
        "payments".to_owned(),
        "kube-system".to_owned(),
    ];
    let plan = super::plan_with_teams(
        &targets(&[("production", "deployer")]),
        &team,
        &subject(),
        &protected(),
    );
    let roles = roles(&plan);
    let namespaces: Vec<_> = roles
        .iter()
        .map(|r| r.metadata.namespace.as_deref().unwrap())
        .collect();
    assert_eq!(
        namespaces,
        ["payments", "production"],
        "no rule in a protected namespace"
    );
    assert_eq!(roles[0].rules.as_ref().unwrap()[0].resource_names, None);
    let cluster_role = plan.objects.iter().find_map(|o| match o {
        RbacObject::ClusterRole(role) => Some(role),
        _ => None,
    });
    assert_eq!(
        cluster_role
            .expect("a cluster rule for the glob")
            .rules
            .as_ref()
            .unwrap()[0]
            .resource_names,
        None
    );
    let expression = plan
        .objects
        .iter()
        .find_map(|o| match o {
            RbacObject::ValidatingAdmissionPolicy(policy) => Some(
                policy.spec.as_ref().unwrap().validations.as_ref().unwrap()[0]
                    .expression
                    .clone(),
            ),
            _ => None,
        })
        .expect("an admission policy");
    assert!(
        expression.contains("(!(request.namespace in [\"kube-node-lease\", \"kube-public\", \"kube-system\", \"tokenvend\"]) && request.namespace.matches(\"^payments-[a-z0-9-]*$\"))"),
        "{expression}"
    );
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("team ceilings allow namespaces by pattern (payments-*)")),
        "{:?}",
        plan.warnings
    );
}
