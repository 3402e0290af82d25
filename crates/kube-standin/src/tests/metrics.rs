//! `GET /metrics` over HTTPS: 401 without a valid token, 403 without `get` on the
//! non-resource URL, the counters for an account granted it.

use serde_json::json;

use super::*;

const READER: &str = "reader-token";

fn with_reader() -> ApiServerOptions {
    let mut options = options();
    options.users.push(SeedUser::new(READER, "reader"));
    options
        .rbac
        .push(RbacRule::non_resource("reader", &["get"], &["/metrics"]));
    options
}

#[tokio::test]
async fn metrics_need_a_valid_token() {
    let server = start(with_reader()).await;
    for token in [None, Some("not-a-known-token")] {
        let reply = get(&server, "/metrics", token).await;
        assert_eq!(reply.status, 401, "{}", reply.text);
        assert_eq!(
            reply.json(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_are_forbidden_to_an_account_without_get_on_the_path() {
    let server = start(with_reader()).await;
    let reply = get(&server, "/metrics", Some(NOBODY)).await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message":"forbidden: User \"nobody\" cannot get path \"/metrics\"",
            "reason":"Forbidden","details":{},"code":403})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_granted_account_reads_the_request_counters() {
    let server = start(with_reader()).await;
    let _ = get(&server, "/metrics", Some(NOBODY)).await;
    let _ = mint_bound_token(&server, &["https://vault.example.com"]).await;
    let reply = get(&server, "/metrics", Some(READER)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.header("content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let lines: Vec<&str> = reply.text.lines().collect();
    assert!(
        lines.contains(&"# TYPE apiserver_request_total counter"),
        "{}",
        reply.text
    );
    assert!(
        lines.contains(&r#"apiserver_request_total{code="201",group="",resource="serviceaccounts",subresource="token",verb="POST"} 1"#),
        "{}",
        reply.text
    );
    assert!(
        lines.contains(&r#"apiserver_request_total{code="403",group="",resource="",subresource="",verb="GET"} 1"#),
        "{}",
        reply.text
    );
    // A service-account token of an account granted the path reads it too.
    let token = server.mint_token("payments", "billing", &[], 600).unwrap();
    assert_eq!(get(&server, "/metrics", Some(&token)).await.status, 403);
    server.add_rbac_rule(RbacRule::non_resource(
        "system:serviceaccount:payments:billing",
        &["get"],
        &["/metrics"],
    ));
    assert_eq!(get(&server, "/metrics", Some(&token)).await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn secret_writes_are_counted_with_kube_verbs() {
    let server = start(with_reader()).await;
    let collection = "/api/v1/namespaces/payments/secrets";
    let reply = post(
        &server,
        collection,
        Some(ADMIN),
        r#"{"metadata":{"name":"b"}}"#,
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(
        delete(&server, &format!("{collection}/b"), Some(ADMIN), None)
            .await
            .status,
        200
    );
    assert_eq!(
        delete(&server, &format!("{collection}/b"), Some(ADMIN), None)
            .await
            .status,
        404
    );
    let reply = delete(
        &server,
        &format!("{collection}?labelSelector=x"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = get(&server, "/metrics", Some(READER)).await;
    let lines: Vec<&str> = reply.text.lines().collect();
    for line in [
        r#"apiserver_request_total{code="201",group="",resource="secrets",subresource="",verb="POST"} 1"#,
        r#"apiserver_request_total{code="200",group="",resource="secrets",subresource="",verb="DELETE"} 1"#,
        r#"apiserver_request_total{code="404",group="",resource="secrets",subresource="",verb="DELETE"} 1"#,
        r#"apiserver_request_total{code="200",group="",resource="secrets",subresource="",verb="DELETECOLLECTION"} 1"#,
    ] {
        assert!(lines.contains(&line), "{line} in {}", reply.text);
    }
    assert_eq!(server.secret_writes(), 4);
    server.shutdown().await;
}
