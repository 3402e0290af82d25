//! Reads over HTTPS: ServiceAccount GET, lists with selectors and pagination, unknown paths
//! (the crate's README.md, "Reads").

use serde_json::Value;

use super::*;
use crate::ApiServerOptions;

const TOKEN_SECRETS: &str = "fieldSelector=type%3Dkubernetes.io%2Fservice-account-token";

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_service_account_is_served_and_a_missing_one_is_404() {
    let server = start(options()).await;
    let reply = get(
        &server,
        "/api/v1/namespaces/payments/serviceaccounts/billing",
        Some(ADMIN),
    )
    .await;
    assert_eq!(reply.status, 200);
    let account = reply.json();
    assert_eq!(
        (account["kind"].as_str(), account["apiVersion"].as_str()),
        (Some("ServiceAccount"), Some("v1"))
    );
    assert_eq!(account["metadata"]["uid"], SA_UID);
    let missing = get(
        &server,
        "/api/v1/namespaces/payments/serviceaccounts/ghost",
        Some(ADMIN),
    )
    .await;
    assert_eq!(
        missing.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"serviceaccounts \"ghost\" not found","reason":"NotFound","details":{"name":"ghost","kind":"serviceaccounts"},"code":404}"#
    );
    let forbidden = get(
        &server,
        "/api/v1/namespaces/payments/serviceaccounts/billing",
        Some(NOBODY),
    )
    .await;
    assert_eq!(forbidden.status, 403);
    server.shutdown().await;
}

#[tokio::test]
async fn token_secrets_are_listed_across_pages_with_continue_tokens() {
    let server = start(options()).await;
    let mut seen = Vec::new();
    let mut query = format!("?{TOKEN_SECRETS}&limit=2");
    let mut pages = 0;
    loop {
        let list = get(&server, &format!("/api/v1/secrets{query}"), Some(ADMIN))
            .await
            .json();
        assert_eq!(
            (list["kind"].as_str(), list["apiVersion"].as_str()),
            (Some("SecretList"), Some("v1"))
        );
        assert!(
            list["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|rv| !rv.is_empty())
        );
        assert!(
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|item| item.get("kind").is_none())
        );
        assert!(
            list["metadata"].get("remainingItemCount").is_none(),
            "selectors hide the remaining count"
        );
        seen.extend(names(&list));
        pages += 1;
        let Some(token) = list["metadata"]["continue"].as_str() else {
            break;
        };
        query = format!("?{TOKEN_SECRETS}&limit=2&continue={token}");
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        [
            "legacy-1",
            "legacy-2",
            "legacy-3",
            "legacy-4",
            "legacy-5",
            "web-token"
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_token_secret_carries_the_service_account_annotations_and_data() {
    let server = start(options()).await;
    let list = get(
        &server,
        &format!("/api/v1/namespaces/payments/secrets?{TOKEN_SECRETS}&limit=1"),
        Some(ADMIN),
    )
    .await
    .json();
    let secret = &list["items"][0];
    assert_eq!(secret["type"], "kubernetes.io/service-account-token");
    assert_eq!(
        secret["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        "billing"
    );
    assert_eq!(
        secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        SA_UID
    );
    let data = secret["data"].as_object().unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["ca.crt", "namespace", "token"]
    );
    assert_eq!(
        list["metadata"]["remainingItemCount"],
        Value::Null,
        "a field selector hides the count"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_unfiltered_page_reports_the_remaining_item_count() {
    let server = start(options()).await;
    let list = get(
        &server,
        "/api/v1/namespaces/payments/secrets?limit=4",
        Some(ADMIN),
    )
    .await
    .json();
    assert_eq!(
        names(&list),
        ["legacy-1", "legacy-2", "legacy-3", "legacy-4"]
    );
    assert_eq!(list["metadata"]["remainingItemCount"], 2);
    server.shutdown().await;
}

#[tokio::test]
async fn label_selectors_filter_lists_across_namespaces() {
    let server = start(options()).await;
    let list = get(
        &server,
        "/api/v1/secrets?labelSelector=app%3Dweb",
        Some(ADMIN),
    )
    .await
    .json();
    assert_eq!(names(&list), ["plain", "web-token"]);
    let list = get(
        &server,
        "/api/v1/secrets?labelSelector=app%2Ctype%21%3Dx",
        Some(ADMIN),
    )
    .await
    .json();
    assert_eq!(names(&list), ["plain", "web-token"]);
    let bad = get(
        &server,
        "/api/v1/secrets?fieldSelector=spec.x%3D1",
        Some(ADMIN),
    )
    .await;
    assert_eq!(
        (bad.status, bad.json()["message"].as_str()),
        (400, Some("field label not supported: spec.x"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_default_page_size_paginates_clients_that_send_no_limit() {
    let server = start(ApiServerOptions {
        list_page_size_default: Some(2),
        ..options()
    })
    .await;
    let list = get(&server, "/api/v1/serviceaccounts?", Some(ADMIN))
        .await
        .json();
    assert_eq!(list["kind"], "ServiceAccountList");
    assert_eq!(names(&list), ["billing", "other"]);
    assert!(list["metadata"]["continue"].is_string());
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_are_401_404_or_403_as_in_kube() {
    let server = start(options()).await;
    assert_eq!(get(&server, "/nope", None).await.status, 401);
    let missing = get(
        &server,
        "/api/v1/namespaces/payments/configmaps",
        Some(ADMIN),
    )
    .await;
    assert_eq!(
        missing.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","details":{},"code":404}"#
    );
    let forbidden = get(
        &server,
        "/api/v1/namespaces/payments/configmaps",
        Some(NOBODY),
    )
    .await;
    assert_eq!(
        forbidden.json()["message"],
        r#"configmaps is forbidden: User "nobody" cannot list resource "configmaps" in API group "" in the namespace "payments""#
    );
    let path = get(&server, "/metrics", Some(NOBODY)).await;
    assert_eq!(
        path.json()["message"],
        r#"forbidden: User "nobody" cannot get path "/metrics""#
    );
    let wrong_method = get(&server, &token_path("payments", "billing"), Some(ADMIN)).await;
    assert_eq!(
        (wrong_method.status, wrong_method.json()["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
    server.shutdown().await;
}
