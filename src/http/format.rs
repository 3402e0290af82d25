//! How a minted token is handed back (`format=`, see openapi.yaml): the JSON document, the
//! bare token, a kubeconfig, or a kubectl ExecCredential. Every rendering carries the no-store
//! headers.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::exchange::Issued;
use crate::k8s::{ExecCredential, KubeconfigCluster, kubeconfig};
use crate::policy::Grant;

/// How the minted token is returned.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    #[default]
    Json,
    Token,
    Kubeconfig,
    ExecCredential,
}

/// The JSON response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenResponse<'a> {
    token: &'a str,
    expiration_timestamp: String,
    service_account: ServiceAccountName<'a>,
    audiences: &'a [String],
    policy: &'a str,
    token_id: Option<&'a str>,
    /// Present (`true`) when the token is bound to a Secret: `POST /oauth2/revoke` revokes it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    revocable: bool,
    cluster: ClusterDocument<'a>,
}

/// Where the token is used, as plain data: what a client needs to build its own kubeconfig.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterDocument<'a> {
    server: &'a str,
    /// Base64 of the PEM trust roots; absent: the system roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_authority_data: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct ServiceAccountName<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Renders `issued` in `format`, with the no-store headers and, when the policy shortened the
/// requested lifetime, a `Warning`.
pub fn render(issued: &Issued, format: Format, cluster: &KubeconfigCluster) -> Response {
    let token = issued.minted.token.expose_secret();
    let mut response = match format {
        Format::Token => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{token}\n"),
        )
            .into_response(),
        Format::Json => axum::Json(json_document(issued, cluster)).into_response(),
        Format::ExecCredential => {
            axum::Json(ExecCredential::new(token, issued.minted.expiration)).into_response()
        }
        Format::Kubeconfig => (
            [(header::CONTENT_TYPE, "application/yaml")],
            kubeconfig(cluster, &issued.grant.service_account, token),
        )
            .into_response(),
    };
    let headers = response.headers_mut();
    no_store(headers);
    if let Some(warning) = reduction_warning(&issued.grant) {
        headers.insert(header::WARNING, warning);
    }
    response
}

fn json_document<'a>(issued: &'a Issued, cluster: &'a KubeconfigCluster) -> TokenResponse<'a> {
    TokenResponse {
        token: issued.minted.token.expose_secret(),
        expiration_timestamp: issued.minted.expiration.to_string(),
        service_account: ServiceAccountName {
            namespace: issued.grant.service_account.namespace(),
            name: issued.grant.service_account.name(),
        },
        audiences: &issued.minted.audiences,
        policy: &issued.grant.policy,
        token_id: issued.minted.token_id.as_deref(),
        revocable: issued.minted.binding.is_some(),
        cluster: ClusterDocument {
            server: &cluster.server,
            certificate_authority_data: cluster.certificate_authority_data(),
        },
    }
}

/// Marks a response that carries a token or a caller's grants as not to be stored by any
/// cache, HTTP/1.0 ones included (RFC 6749 §5.1).
pub(super) fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// `299 tokenvend "..."` when the policy reduced the requested expiration.
pub fn reduction_warning(grant: &Grant) -> Option<HeaderValue> {
    let asked = grant.reduced_from_secs?;
    let text = format!(
        r#"299 tokenvend "requested expiration of {asked} seconds reduced to {} seconds by policy {}""#,
        grant.expiration_secs, grant.policy
    );
    HeaderValue::from_str(&text).ok()
}
