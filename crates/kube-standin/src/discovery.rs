//! Discovery: the service-account issuer's OIDC documents
//! (`pkg/serviceaccount/openidmetadata.go`) and the API discovery documents kubectl and other
//! clients read before a request (`/api`, `/apis`, `/version`, resource lists).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::authn::Caller;
use super::request_info::RequestInfo;
use super::state::ApiState;
use super::status::Status;
use dev_pki::keys::jwk_set;

/// `GetCacheAgeMaxSeconds()` for static keys.
const ISSUER_CACHE_CONTROL: &str = "public, max-age=3600";

/// The version the stand-in claims to be; its behaviour follows 1.34+ (the crate's README.md).
const GIT_VERSION: &str = "v1.36.0";

/// The OpenID provider configuration, in `openidmetadata.go`'s field order.
#[derive(Debug, Serialize)]
struct OpenIdConfiguration<'a> {
    issuer: &'a str,
    jwks_uri: String,
    response_types_supported: [&'static str; 1],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: [&'static str; 1],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Version {
    major: &'static str,
    minor: &'static str,
    git_version: &'static str,
    git_commit: &'static str,
    git_tree_state: &'static str,
    build_date: &'static str,
    go_version: &'static str,
    compiler: &'static str,
    platform: &'static str,
}

fn authorize(state: &ApiState, caller: &Caller, uri: &Uri) -> Result<(), Status> {
    state.authorize(
        &caller.0,
        &RequestInfo::parse(&Method::GET, uri.path(), uri.query()),
    )
}

/// Kube installs the issuer discovery routes only for an `https` issuer without query or
/// fragment; otherwise the paths do not exist.
fn issuer_routes_installed(issuer: &str) -> bool {
    issuer.starts_with("https://") && !issuer.contains('?') && !issuer.contains('#')
}

fn with_content_type(
    body: String,
    content_type: &'static str,
    cache_control: Option<&'static str>,
) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(cache_control) = cache_control {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
    }
    response
}

/// `GET /.well-known/openid-configuration`.
pub async fn openid_configuration(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    uri: Uri,
) -> Result<Response, Status> {
    authorize(&state, &caller, &uri)?;
    if !issuer_routes_installed(&state.issuer) {
        return Err(Status::no_such_path());
    }
    let document = OpenIdConfiguration {
        issuer: &state.issuer,
        jwks_uri: format!("{}/openid/v1/jwks", state.url),
        response_types_supported: ["id_token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"],
    };
    let body = serde_json::to_string(&document).expect("a document of strings serialises");
    Ok(with_content_type(
        body,
        "application/json",
        Some(ISSUER_CACHE_CONTROL),
    ))
}

/// `GET /openid/v1/jwks`.
pub async fn jwks(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    uri: Uri,
) -> Result<Response, Status> {
    authorize(&state, &caller, &uri)?;
    if !issuer_routes_installed(&state.issuer) {
        return Err(Status::no_such_path());
    }
    let body = jwk_set(&[&state.key]);
    Ok(with_content_type(
        body,
        "application/jwk-set+json",
        Some(ISSUER_CACHE_CONTROL),
    ))
}

/// `GET /version`.
pub async fn version(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    uri: Uri,
) -> Result<Response, Status> {
    authorize(&state, &caller, &uri)?;
    let version = Version {
        major: "1",
        minor: "36",
        git_version: GIT_VERSION,
        git_commit: "0000000000000000000000000000000000000000",
        git_tree_state: "clean",
        build_date: "2026-01-01T00:00:00Z",
        go_version: "go1.25.0",
        compiler: "gc",
        platform: "linux/amd64",
    };
    let body = serde_json::to_string(&version).expect("strings serialise");
    Ok(with_content_type(body, "application/json", None))
}

/// The discovery documents under `/api` and `/apis`, by path.
pub async fn api_discovery(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    uri: Uri,
) -> Result<Response, Status> {
    authorize(&state, &caller, &uri)?;
    let address = state.url.trim_start_matches("https://");
    let document = match uri.path().trim_end_matches('/') {
        "/api" => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
        }),
        "/apis" => {
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [authentication_group()]})
        }
        "/apis/authentication.k8s.io" => {
            let mut group = authentication_group();
            group["kind"] = json!("APIGroup");
            group["apiVersion"] = json!("v1");
            group
        }
        "/api/v1" => resource_list("v1", &core_resources()),
        "/apis/authentication.k8s.io/v1" => {
            resource_list("authentication.k8s.io/v1", &authentication_resources())
        }
        _ => return Err(Status::no_such_path()),
    };
    Ok(with_content_type(
        document.to_string(),
        "application/json",
        None,
    ))
}

fn authentication_group() -> Value {
    let version = json!({"groupVersion": "authentication.k8s.io/v1", "version": "v1"});
    json!({"name": "authentication.k8s.io", "versions": [version], "preferredVersion": version})
}

fn resource_list(group_version: &str, resources: &[Value]) -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

fn resource(name: &str, singular: &str, namespaced: bool, kind: &str, verbs: &[&str]) -> Value {
    json!({"name": name, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": verbs})
}

fn core_resources() -> Vec<Value> {
    let mut token = resource(
        "serviceaccounts/token",
        "",
        true,
        "TokenRequest",
        &["create"],
    );
    token["group"] = json!("authentication.k8s.io");
    token["version"] = json!("v1");
    vec![
        resource("nodes", "node", false, "Node", &["get", "list"]),
        resource("pods", "pod", true, "Pod", &["get", "list"]),
        resource("secrets", "secret", true, "Secret", &["get", "list"]),
        resource(
            "serviceaccounts",
            "serviceaccount",
            true,
            "ServiceAccount",
            &["get", "list"],
        ),
        token,
    ]
}

fn authentication_resources() -> Vec<Value> {
    vec![
        resource(
            "selfsubjectreviews",
            "selfsubjectreview",
            false,
            "SelfSubjectReview",
            &["create"],
        ),
        resource(
            "tokenreviews",
            "tokenreview",
            false,
            "TokenReview",
            &["create"],
        ),
    ]
}
