//! Authorization: RBAC rule matching (`rbac.go` `RuleAllows`) over a request's attributes,
//! the built-in grants every cluster has, and the 403 body.

use super::errors::GroupResource;
use super::request_info::{RequestInfo, ResourceAttributes};
use super::status::Status;
use super::user::UserInfo;

/// One RBAC permission granted to a user or a group: the rule of a Role (when `namespace` is
/// set) or of a ClusterRole bound cluster-wide (when it is `None`).
///
/// `user` is matched against the username and, as a RoleBinding subject of kind Group would be,
/// against the user's groups. `"*"` is a wildcard in `verbs`, `api_groups` and `resources`;
/// `resources` entries are matched against `resource/subresource` (and `*/subresource`);
/// non-empty `resource_names` restrict the rule to those names. A rule with
/// `non_resource_urls` grants those paths (`/metrics`, or a prefix ending in `*`) and no
/// resource, as a ClusterRole's `nonResourceURLs` rule does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RbacRule {
    pub user: String,
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
    /// `None`: cluster-wide (ClusterRole + ClusterRoleBinding).
    pub namespace: Option<String>,
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

impl RbacRule {
    /// A cluster-wide rule.
    pub fn allow(user: &str, verbs: &[&str], api_groups: &[&str], resources: &[&str]) -> Self {
        Self {
            user: user.to_owned(),
            verbs: owned(verbs),
            api_groups: owned(api_groups),
            resources: owned(resources),
            ..Self::default()
        }
    }

    /// Restricts the rule to one namespace (a Role instead of a ClusterRole).
    #[must_use]
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }

    /// Restricts the rule to these object names.
    #[must_use]
    pub fn named(mut self, names: &[&str]) -> Self {
        self.resource_names = owned(names);
        self
    }

    /// `create serviceaccounts/token` for the named service accounts of `namespace` (all of
    /// them when `names` is empty): what tokenvend needs.
    pub fn create_tokens(user: &str, namespace: &str, names: &[&str]) -> Self {
        Self::allow(user, &["create"], &[""], &["serviceaccounts/token"])
            .in_namespace(namespace)
            .named(names)
    }

    /// `create tokenreviews.authentication.k8s.io`, as `system:auth-delegator` grants.
    pub fn review_tokens(user: &str) -> Self {
        Self::allow(
            user,
            &["create"],
            &["authentication.k8s.io"],
            &["tokenreviews"],
        )
    }

    /// A ClusterRole rule granting `verbs` on the non-resource `urls`, e.g.
    /// `nonResourceURLs: ["/metrics"], verbs: [get]` (what a metrics reader needs).
    pub fn non_resource(user: &str, verbs: &[&str], urls: &[&str]) -> Self {
        Self {
            user: user.to_owned(),
            verbs: owned(verbs),
            non_resource_urls: owned(urls),
            ..Self::default()
        }
    }

    fn applies_to(&self, user: &UserInfo) -> bool {
        self.user == user.username || user.groups.contains(&self.user)
    }

    /// `RuleAllows`: a resource rule for a resource request, a non-resource rule (never
    /// namespaced) for a non-resource path.
    fn allows(&self, user: &UserInfo, request: &RequestInfo) -> bool {
        let Some(resource) = &request.resource else {
            return self.namespace.is_none()
                && self.applies_to(user)
                && matches_any(&self.verbs, &request.verb)
                && self
                    .non_resource_urls
                    .iter()
                    .any(|url| non_resource_url_matches(url, &request.path));
        };
        let scope_matches = match &self.namespace {
            None => true,
            Some(namespace) => request.namespace.as_deref() == Some(namespace.as_str()),
        };
        self.applies_to(user)
            && scope_matches
            && matches_any(&self.verbs, &request.verb)
            && matches_any(&self.api_groups, &resource.api_group)
            && self.resource_matches(resource)
            && (self.resource_names.is_empty() || self.resource_names.contains(&resource.name))
    }

    fn resource_matches(&self, resource: &ResourceAttributes) -> bool {
        let combined = resource.combined();
        self.resources.iter().any(|rule| {
            rule == "*"
                || *rule == combined
                || (!resource.subresource.is_empty()
                    && *rule == format!("*/{}", resource.subresource))
        })
    }
}

/// `NonResourceURLMatches`: `*` matches every path, `/prefix/*` every path under it, any other
/// entry only itself.
fn non_resource_url_matches(rule: &str, path: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => rule == path,
    }
}

fn matches_any(allowed: &[String], requested: &str) -> bool {
    allowed.iter().any(|item| item == "*" || item == requested)
}

/// Decides requests: the built-in grants first, then the configured rules.
pub fn authorize(rules: &[RbacRule], user: &UserInfo, request: &RequestInfo) -> Result<(), Status> {
    if builtin_allows(user, request) || rules.iter().any(|rule| rule.allows(user, request)) {
        Ok(())
    } else {
        Err(forbidden(user, request))
    }
}

/// The default ClusterRoles and bindings every cluster has, as far as the stand-in's endpoints
/// go: `system:masters` may do anything; `system:discovery`, `system:public-info-viewer` and
/// `system:basic-user` for authenticated users; `system:public-info-viewer` for anonymous
/// ones. Issuer discovery is granted to all authenticated users (kube binds it to
/// `system:serviceaccounts` only; clusters commonly widen that).
fn builtin_allows(user: &UserInfo, request: &RequestInfo) -> bool {
    let in_group = |group: &str| user.groups.iter().any(|g| g == group);
    if in_group("system:masters") {
        return true;
    }
    let authenticated = in_group("system:authenticated");
    match &request.resource {
        None => {
            let public = request.verb == "get"
                && matches!(
                    request.path.as_str(),
                    "/version" | "/version/" | "/healthz" | "/livez" | "/readyz"
                );
            let discovery = request.verb == "get"
                && (matches!(
                    request.path.as_str(),
                    "/api"
                        | "/apis"
                        | "/.well-known/openid-configuration"
                        | "/.well-known/openid-configuration/"
                        | "/openid/v1/jwks"
                        | "/openid/v1/jwks/"
                ) || request.path.starts_with("/api/")
                    || request.path.starts_with("/apis/"));
            public || (authenticated && discovery)
        }
        Some(resource) => {
            authenticated
                && request.verb == "create"
                && matches!(
                    (resource.api_group.as_str(), resource.resource.as_str()),
                    ("authentication.k8s.io", "selfsubjectreviews")
                        | (
                            "authorization.k8s.io",
                            "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
                        )
                )
        }
    }
}

/// The 403 of `ForbiddenStatusError` with `forbiddenMessage`. The RBAC authorizer's reason is
/// empty, as it is in kube unless role resolution failed.
fn forbidden(user: &UserInfo, request: &RequestInfo) -> Status {
    let username = &user.username;
    let Some(resource) = &request.resource else {
        let message = format!(
            "User {username:?} cannot {} path {:?}",
            request.verb, request.path
        );
        return Status::forbidden(
            GroupResource {
                group: "",
                resource: "",
            },
            "",
            &message,
            "",
        );
    };
    let scope = match &request.namespace {
        Some(namespace) => format!("in the namespace {namespace:?}"),
        None => "at the cluster scope".to_owned(),
    };
    let message = format!(
        "User {username:?} cannot {} resource {:?} in API group {:?} {scope}",
        request.verb,
        resource.combined(),
        resource.api_group
    );
    let group_resource = GroupResource {
        group: &resource.api_group,
        resource: &resource.resource,
    };
    Status::forbidden(group_resource, &resource.name, &message, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            groups: owned(groups),
            ..UserInfo::default()
        }
    }

    fn token_request(namespace: &str, name: &str) -> RequestInfo {
        let path = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token");
        RequestInfo::parse(&Method::POST, &path, None)
    }

    #[test]
    fn rules_match_subresources_wildcards_names_and_namespaces() {
        let minter = user("minter", &["system:authenticated"]);
        let cases = [
            (
                RbacRule::create_tokens("minter", "payments", &["billing"]),
                "payments",
                "billing",
                true,
            ),
            (
                RbacRule::create_tokens("minter", "payments", &["billing"]),
                "payments",
                "other",
                false,
            ),
            (
                RbacRule::create_tokens("minter", "payments", &[]),
                "payments",
                "other",
                true,
            ),
            (
                RbacRule::create_tokens("minter", "payments", &[]),
                "web",
                "billing",
                false,
            ),
            (
                RbacRule::allow("minter", &["create"], &[""], &["serviceaccounts"]),
                "payments",
                "billing",
                false,
            ),
            (
                RbacRule::allow("minter", &["create"], &[""], &["*/token"]),
                "payments",
                "billing",
                true,
            ),
            (
                RbacRule::allow("minter", &["*"], &["*"], &["*"]),
                "payments",
                "billing",
                true,
            ),
            (
                RbacRule::allow("minter", &["get"], &[""], &["serviceaccounts/token"]),
                "payments",
                "billing",
                false,
            ),
            (
                RbacRule::allow(
                    "system:authenticated",
                    &["create"],
                    &[""],
                    &["serviceaccounts/token"],
                ),
                "x",
                "y",
                true,
            ),
            (
                RbacRule::allow("someone-else", &["*"], &["*"], &["*"]),
                "payments",
                "billing",
                false,
            ),
        ];
        for (rule, namespace, name, expected) in cases {
            let allowed = authorize(
                std::slice::from_ref(&rule),
                &minter,
                &token_request(namespace, name),
            )
            .is_ok();
            assert_eq!(allowed, expected, "{rule:?} on {namespace}/{name}");
        }
    }

    #[test]
    fn forbidden_token_request_reads_like_kube_apiserver() {
        let minter = user(
            "system:serviceaccount:minter:minter",
            &["system:authenticated"],
        );
        let status = authorize(&[], &minter, &token_request("payments", "billing")).unwrap_err();
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"serviceaccounts \"billing\" is forbidden: User \"system:serviceaccount:minter:minter\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"payments\"","reason":"Forbidden","details":{"name":"billing","kind":"serviceaccounts"},"code":403}"#
        );
    }

    #[test]
    fn cluster_scoped_forbidden_ends_at_the_cluster_scope() {
        let request = RequestInfo::parse(
            &Method::POST,
            "/apis/authentication.k8s.io/v1/tokenreviews",
            None,
        );
        let status =
            authorize(&[], &user("alice", &["system:authenticated"]), &request).unwrap_err();
        assert_eq!(
            status.message,
            r#"tokenreviews.authentication.k8s.io is forbidden: User "alice" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope"#
        );
    }

    #[test]
    fn anonymous_users_may_not_read_the_jwks_but_authenticated_ones_may() {
        let request = RequestInfo::parse(&Method::GET, "/openid/v1/jwks", None);
        let anonymous = user("system:anonymous", &["system:unauthenticated"]);
        let status = authorize(&[], &anonymous, &request).unwrap_err();
        assert_eq!(
            status.message,
            r#"forbidden: User "system:anonymous" cannot get path "/openid/v1/jwks""#
        );
        assert!(authorize(&[], &user("a", &["system:authenticated"]), &request).is_ok());
        let version = RequestInfo::parse(&Method::GET, "/version", None);
        assert!(authorize(&[], &anonymous, &version).is_ok());
    }

    #[test]
    fn non_resource_urls_are_granted_only_by_a_rule_that_names_them() {
        let reader = user("reader", &["system:authenticated"]);
        let metrics = RequestInfo::parse(&Method::GET, "/metrics", None);
        let status = authorize(&[], &reader, &metrics).unwrap_err();
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"forbidden: User \"reader\" cannot get path \"/metrics\"","reason":"Forbidden","details":{},"code":403}"#
        );
        let cases = [
            (
                RbacRule::non_resource("reader", &["get"], &["/metrics"]),
                true,
            ),
            (
                RbacRule::non_resource("reader", &["get"], &["/metrics/*"]),
                false,
            ),
            (RbacRule::non_resource("reader", &["get"], &["*"]), true),
            (RbacRule::non_resource("reader", &["*"], &["/metr*"]), true),
            (
                RbacRule::non_resource("reader", &["post"], &["/metrics"]),
                false,
            ),
            (
                RbacRule::non_resource("reader", &["get"], &["/healthz"]),
                false,
            ),
            (
                RbacRule::non_resource("someone-else", &["get"], &["/metrics"]),
                false,
            ),
            (
                RbacRule::non_resource("reader", &["get"], &["/metrics"]).in_namespace("ns"),
                false,
            ),
            (RbacRule::allow("reader", &["*"], &["*"], &["*"]), false),
        ];
        for (rule, expected) in cases {
            let allowed = authorize(std::slice::from_ref(&rule), &reader, &metrics).is_ok();
            assert_eq!(allowed, expected, "{rule:?}");
        }
        // A non-resource rule grants no resource.
        let wide = RbacRule::non_resource("reader", &["*"], &["*"]);
        assert!(authorize(&[wide], &reader, &token_request("a", "b")).is_err());
    }

    #[test]
    fn every_authenticated_user_may_review_itself_and_masters_may_do_anything() {
        let request = RequestInfo::parse(
            &Method::POST,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            None,
        );
        assert!(authorize(&[], &user("a", &["system:authenticated"]), &request).is_ok());
        let admin = user("admin", &["system:masters", "system:authenticated"]);
        assert!(authorize(&[], &admin, &token_request("any", "thing")).is_ok());
    }
}
