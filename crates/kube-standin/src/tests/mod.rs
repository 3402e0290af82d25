//! Tests of the stand-in over real HTTPS, pinning its responses to what kube-apiserver answers
//! (the crate's README.md). One seeded cluster (`payments/billing` and friends) serves them
//! all.

mod kube_client;
mod metrics;
mod reads;
mod reviews;
mod secrets;
mod token_request;

use std::net::SocketAddr;

use axum::http::HeaderMap;
use serde_json::Value;

use super::{
    ApiServer, ApiServerOptions, RbacRule, SeedNode, SeedPod, SeedSecret, SeedServiceAccount,
    SeedUser,
};

pub const SA_UID: &str = "5d1f0000-0000-4000-8000-00000000sa01";
pub const POD_UID: &str = "7b0c0000-0000-4000-8000-0000000pod01";
pub const NODE_UID: &str = "646e0000-0000-4000-8000-000000node01";
/// `system:masters`: may do anything.
pub const ADMIN: &str = "admin-token";
/// User `minter`: may create tokens in `payments` and review tokens.
pub const MINTER: &str = "minter-token";
/// User `nobody`: authenticated, no permissions.
pub const NOBODY: &str = "nobody-token";

pub fn options() -> ApiServerOptions {
    let mut secrets: Vec<SeedSecret> = (1..=5)
        .map(|i| SeedSecret::service_account_token("payments", &format!("legacy-{i}"), "billing"))
        .collect();
    secrets.push(SeedSecret::opaque("payments", "plain").with_label("app", "web"));
    secrets.push(
        SeedSecret::service_account_token("web", "web-token", "web").with_label("app", "web"),
    );
    ApiServerOptions {
        service_accounts: vec![
            SeedServiceAccount::new("payments", "billing").with_uid(SA_UID),
            SeedServiceAccount::new("payments", "other"),
            SeedServiceAccount::new("web", "web"),
        ],
        secrets,
        pods: vec![
            SeedPod::new("payments", "web-0", "billing")
                .with_uid(POD_UID)
                .on_node("node-a"),
            SeedPod::new("payments", "other-0", "other"),
        ],
        nodes: vec![SeedNode {
            name: "node-a".into(),
            uid: Some(NODE_UID.into()),
        }],
        users: vec![
            SeedUser::new(ADMIN, "admin").in_group("system:masters"),
            SeedUser::new(MINTER, "minter"),
            SeedUser::new(NOBODY, "nobody"),
        ],
        rbac: vec![
            RbacRule::create_tokens("minter", "payments", &[]),
            RbacRule::review_tokens("minter"),
        ],
        ..ApiServerOptions::default()
    }
}

pub async fn start(options: ApiServerOptions) -> ApiServer {
    serving::crypto::install_providers().unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    ApiServer::start(addr, options).await.unwrap()
}

/// An HTTP response, read whole.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
}

fn client(server: &ApiServer) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(server.ca_pem().as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([root])
        .build()
        .unwrap()
}

async fn send(request: reqwest::RequestBuilder, token: Option<&str>) -> Reply {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Reply {
        status,
        headers,
        text: response.text().await.unwrap(),
    }
}

/// `POST path` with a JSON body.
pub async fn post(server: &ApiServer, path: &str, token: Option<&str>, body: &str) -> Reply {
    let request = client(server)
        .post(format!("{}{path}", server.url()))
        .header("content-type", "application/json")
        .body(body.to_owned());
    send(request, token).await
}

/// `POST path` with an arbitrary Content-Type.
pub async fn post_as(
    server: &ApiServer,
    path: &str,
    token: &str,
    content_type: &str,
    body: &str,
) -> Reply {
    let request = client(server)
        .post(format!("{}{path}", server.url()))
        .header("content-type", content_type)
        .body(body.to_owned());
    send(request, Some(token)).await
}

/// `DELETE path`, with a JSON body when one is given.
pub async fn delete(
    server: &ApiServer,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut request = client(server).delete(format!("{}{path}", server.url()));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    send(request, token).await
}

pub async fn get(server: &ApiServer, path: &str, token: Option<&str>) -> Reply {
    send(client(server).get(format!("{}{path}", server.url())), token).await
}

/// The TokenRequest path of `namespace/name`.
pub fn token_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token")
}

/// Mints a token for `payments/billing` bound to pod `web-0`, for the given audiences.
pub async fn mint_bound_token(server: &ApiServer, audiences: &[&str]) -> String {
    let body = serde_json::json!({
        "spec": {"audiences": audiences, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-0"}}
    });
    let reply = post(
        server,
        &token_path("payments", "billing"),
        Some(MINTER),
        &body.to_string(),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json()["status"]["token"].as_str().unwrap().to_owned()
}
