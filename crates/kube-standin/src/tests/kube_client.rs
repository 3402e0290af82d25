//! The real kube client against the stand-in, configured only from `ApiServer::kubeconfig`.

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::*;

pub(super) async fn kube_client(server: &ApiServer, token: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig(token)).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.default_retry = false;
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn kube_creates_a_token_request_over_https() {
    let server = start(options()).await;
    let accounts: Api<ServiceAccount> =
        Api::namespaced(kube_client(&server, MINTER).await, "payments");
    let request = TokenRequest {
        metadata: Default::default(),
        spec: TokenRequestSpec {
            audiences: vec!["https://vault.example.com".into()],
            expiration_seconds: Some(900),
            bound_object_ref: Some(BoundObjectReference {
                kind: Some("Pod".into()),
                api_version: Some("v1".into()),
                name: Some("web-0".into()),
                uid: Some(POD_UID.into()),
            }),
        },
        status: None,
    };
    let created = accounts
        .create_token_request("billing", &PostParams::default(), &request)
        .await
        .unwrap();
    assert_eq!(created.metadata.uid.as_deref(), Some(SA_UID));
    assert_eq!(created.spec.expiration_seconds, Some(900));
    assert_eq!(created.spec.audiences, ["https://vault.example.com"]);
    let status = created.status.unwrap();
    assert!(status.token.starts_with("eyJhbGciOiJSUzI1NiIsImtpZCI6"));
    assert_eq!(server.token_requests(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn kube_sees_a_missing_service_account_as_a_not_found_api_error() {
    let server = start(options()).await;
    let accounts: Api<ServiceAccount> =
        Api::namespaced(kube_client(&server, MINTER).await, "payments");
    let request = TokenRequest {
        spec: TokenRequestSpec::default(),
        ..Default::default()
    };
    let error = accounts
        .create_token_request("ghost", &PostParams::default(), &request)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = error else {
        panic!("expected an API error, got {error:?}")
    };
    assert_eq!(status.reason, "NotFound");
    assert_eq!(status.code, 404);
    assert!(status.is_not_found());
    server.shutdown().await;
}

#[tokio::test]
async fn kube_lists_token_secrets_through_every_page() {
    let server = start(ApiServerOptions {
        list_page_size_default: Some(2),
        ..options()
    })
    .await;
    let secrets: Api<Secret> = Api::all(kube_client(&server, ADMIN).await);
    let mut params = ListParams::default()
        .fields("type=kubernetes.io/service-account-token")
        .limit(2);
    let mut names = Vec::new();
    loop {
        let page = secrets.list(&params).await.unwrap();
        names.extend(page.items.iter().map(|s| s.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(names.len(), 6);
    server.shutdown().await;
}
