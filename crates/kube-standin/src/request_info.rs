//! kube-apiserver's `RequestInfo`: what a request asks to do (verb, resource, subresource,
//! name, namespace, or a non-resource path), parsed from method and URL as
//! `RequestInfoFactory.NewRequestInfo` does. Authorization decides on it.

use axum::http::Method;

/// kube-apiserver's `RequestInfo`: what a request asks to do, as the authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub verb: String,
    pub path: String,
    pub namespace: Option<String>,
    /// `None` for a non-resource request (`/version`, `/openid/v1/jwks`, ...).
    pub resource: Option<ResourceAttributes>,
}

/// The resource half of a `RequestInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

impl ResourceAttributes {
    /// `resource/subresource`, or `resource`: what RBAC rules match against.
    pub fn combined(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

impl RequestInfo {
    /// Parses a request the way `RequestInfoFactory.NewRequestInfo` does.
    pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Self {
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        let non_resource = || RequestInfo {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_owned(),
            namespace: None,
            resource: None,
        };
        let (api_group, rest) = match parts.as_slice() {
            ["api", rest @ ..] if rest.len() >= 2 => (String::new(), rest),
            ["apis", group, rest @ ..] if rest.len() >= 2 => ((*group).to_owned(), rest),
            _ => return non_resource(),
        };
        let api_version = rest[0].to_owned();
        let mut parts = &rest[1..];
        let mut namespace = None;
        if parts.first() == Some(&"namespaces") && parts.len() > 1 {
            namespace = Some(parts[1].to_owned());
            if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
                parts = &parts[2..];
            }
        }
        let resource = parts.first().map_or("", |p| *p).to_owned();
        let name = parts.get(1).map_or("", |p| *p).to_owned();
        let subresource = parts.get(2).map_or("", |p| *p).to_owned();
        let verb = resource_verb(method, name.is_empty(), query);
        RequestInfo {
            verb,
            path: path.to_owned(),
            namespace,
            resource: Some(ResourceAttributes {
                api_group,
                api_version,
                resource,
                subresource,
                name,
            }),
        }
    }
}

fn resource_verb(method: &Method, collection: bool, query: Option<&str>) -> String {
    let watch = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    });
    let verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD if collection && watch => "watch",
        Method::GET | Method::HEAD if collection => "list",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "",
    };
    verb.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_request(namespace: &str, name: &str) -> RequestInfo {
        let path = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token");
        RequestInfo::parse(&Method::POST, &path, None)
    }

    #[test]
    fn request_info_parses_the_token_subresource() {
        let info = token_request("payments", "billing");
        assert_eq!(info.verb, "create");
        assert_eq!(info.namespace.as_deref(), Some("payments"));
        let resource = info.resource.unwrap();
        assert_eq!(
            (resource.resource.as_str(), resource.name.as_str()),
            ("serviceaccounts", "billing")
        );
        assert_eq!(resource.subresource, "token");
    }

    #[test]
    fn request_info_tells_lists_gets_and_non_resource_paths_apart() {
        let list = RequestInfo::parse(&Method::GET, "/api/v1/secrets", Some("limit=2"));
        assert_eq!(
            (list.verb.as_str(), list.namespace.as_deref()),
            ("list", None)
        );
        let get = RequestInfo::parse(&Method::GET, "/api/v1/namespaces/ns", None);
        assert_eq!(get.verb, "get");
        assert_eq!(get.resource.unwrap().resource, "namespaces");
        assert!(
            RequestInfo::parse(&Method::GET, "/api/v1", None)
                .resource
                .is_none()
        );
        assert!(
            RequestInfo::parse(&Method::GET, "/apis/authentication.k8s.io/v1", None)
                .resource
                .is_none()
        );
        let review = RequestInfo::parse(
            &Method::POST,
            "/apis/authentication.k8s.io/v1/tokenreviews",
            None,
        );
        assert_eq!(review.resource.unwrap().api_group, "authentication.k8s.io");
    }
}
