//! Catalogue rows N1–N17 (docs/threat-model.md): HTTP-level bad inputs, over real connections.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Expect, Why, check, setup};

/// Sends raw bytes on a fresh connection and returns what comes back until the server closes
/// the connection or stays silent for a while.
async fn raw(address: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .unwrap();
    let _ = stream.write_all(request).await;
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

#[tokio::test]
async fn every_row_of_the_http_catalogue_gets_its_expected_answer() {
    let (alpha, _beta, service) = setup().await;
    let token = alpha.token(&alpha.claims());
    let url = format!("{}/v1/token", service.address);
    let http = &service.http;

    // N1: no credential: a bare challenge.
    let response = http.post(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    // N2, N3: two credentials.
    let rows = vec![
        (
            "N2 two Authorization headers",
            http.post(&url)
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .header(AUTHORIZATION, "Bearer other.other.other"),
        ),
        (
            "N3 header and query",
            http.post(format!("{url}?access_token={token}"))
                .bearer_auth(&token),
        ),
        (
            "N3 header and form field",
            http.post(&url)
                .bearer_auth(&token)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(format!("access_token={token}")),
        ),
        (
            "N5 two spaces",
            http.post(&url)
                .header(AUTHORIZATION, format!("Bearer  {token}")),
        ),
        (
            "N5 a tab",
            http.post(&url)
                .header(AUTHORIZATION, format!("Bearer\t{token}")),
        ),
        (
            "N5 no token",
            http.post(&url).header(AUTHORIZATION, "Bearer"),
        ),
        (
            "N5 two tokens",
            http.post(&url)
                .header(AUTHORIZATION, format!("Bearer {token} {token}")),
        ),
        (
            "N5 Basic",
            http.post(&url).header(AUTHORIZATION, "Basic dXNlcjpwYXNz"),
        ),
        (
            "N5 Token scheme",
            http.post(&url)
                .header(AUTHORIZATION, format!("Token {token}")),
        ),
        (
            "N6 access_token in the query",
            http.post(format!("{url}?access_token={token}")),
        ),
        (
            "N6 token in the query",
            http.post(format!("{url}?token={token}")),
        ),
        (
            "N6 id_token in the query",
            http.post(format!("{url}?format=json&id_token={token}")),
        ),
        (
            "unknown query parameter",
            http.post(format!("{url}?dry=1")).bearer_auth(&token),
        ),
    ];
    for (case, request) in rows {
        check(
            case,
            request.send().await.unwrap(),
            Expect::BadRequest,
            &token,
        )
        .await;
    }

    // N4: the scheme is case-insensitive; N5: HTTP itself trims a trailing space.
    for (case, value) in [
        ("N4 bearer", format!("bearer {token}")),
        ("N4 BEARER", format!("BEARER {token}")),
        (
            "N5 trailing space (trimmed by HTTP)",
            format!("Bearer {token} "),
        ),
    ] {
        let response = http
            .post(&url)
            .header(AUTHORIZATION, value)
            .send()
            .await
            .unwrap();
        check(case, response, Expect::Issued, &token).await;
    }

    // N7: huge headers are refused by the HTTP layer, an over-long token by the gate.
    let huge = "a".repeat(1 << 20);
    match http
        .post(&url)
        .header(AUTHORIZATION, format!("Bearer {huge}"))
        .send()
        .await
    {
        Ok(response) => assert_eq!(response.status(), 431, "N7 1 MB header"),
        Err(error) => assert!(
            error.is_request() || error.is_connect() || error.is_body(),
            "N7: {error}"
        ),
    }
    let mut many = String::from("POST /v1/token HTTP/1.1\r\nHost: x\r\n");
    for i in 0..10_000 {
        many.push_str(&format!("x-{i}: y\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw(&service.address, many.as_bytes()).await;
    assert!(
        answer.is_empty() || status_line(&answer).contains("431"),
        "N7 10,000 headers: {}",
        status_line(&answer)
    );
    let long = format!(
        "{}.{}.{}",
        "a".repeat(8192),
        "b".repeat(8192),
        "c".repeat(100)
    );
    service
        .expect(
            "N7 token over 16 KiB",
            &long,
            Expect::Rejected(Why::Malformed),
        )
        .await;

    // N9: bodies over 16 KiB.
    let big = json!({"serviceAccount": "x".repeat(20_000)});
    let response = http
        .post(&url)
        .bearer_auth(&token)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413, "N9 20 KiB body");
    let declared = format!(
        "POST /v1/token HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
    );
    let answer = raw(&service.address, declared.as_bytes()).await;
    assert!(
        status_line(&answer).contains("413"),
        "N9 Content-Length 10 GB: {answer:?}"
    );

    // N10: one media type.
    for (case, content_type) in [
        ("N10 text/plain", "text/plain"),
        ("N10 multipart", "multipart/form-data; boundary=x"),
        ("N10 form", "application/x-www-form-urlencoded"),
    ] {
        let response = http
            .post(&url)
            .bearer_auth(&token)
            .header(CONTENT_TYPE, content_type)
            .body(r#"{"audiences":["x"]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{case}");
    }
    let response = http
        .post(&url)
        .bearer_auth(&token)
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body("{}")
        .send()
        .await
        .unwrap();
    check("N10 JSON with a charset", response, Expect::Issued, &token).await;

    // N11: other methods: 405 with Allow, and no CORS.
    for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"] {
        let response = http
            .request(method.parse().unwrap(), &url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "N11 {method}");
        assert_eq!(response.headers()["allow"], "POST", "N11 {method}");
        assert!(
            !response
                .headers()
                .contains_key("access-control-allow-origin"),
            "N11 {method}"
        );
    }

    // N12: one canonical path. Sent raw: an HTTP client would normalise some of these itself.
    for path in [
        "/v1/token/",
        "//v1/token",
        "/v1/%74oken",
        "/v1/token;x",
        "/V1/TOKEN",
        "/v1/./token",
    ] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        let answer = raw(&service.address, request.as_bytes()).await;
        assert!(
            status_line(&answer).contains("404"),
            "N12 {path}: {}",
            status_line(&answer)
        );
    }

    // N13: Content-Length and Transfer-Encoding together. hyper frames by Transfer-Encoding
    // (RFC 9112 §6.3: the chunked `{}` is the whole body, not the 40 bytes Content-Length claims),
    // answers, and closes the connection, so the bytes after the last chunk are never served as
    // a request of their own.
    let smuggle = format!(
        "POST /v1/token HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    let answer = raw(&service.address, smuggle.as_bytes()).await;
    let statuses: Vec<&str> = answer
        .lines()
        .filter(|line| line.starts_with("HTTP/1.1"))
        .collect();
    assert_eq!(statuses, ["HTTP/1.1 200 OK"], "N13: {answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "N13: {answer}"
    );
    assert!(
        !answer.contains("{\"status\":\"ok\"}"),
        "N13: the smuggled request was served"
    );

    // N15: a kid built to forge log lines is just an unknown kid.
    let injected = crate::harness::forge(
        &alpha.rsa,
        jsonwebtoken::Algorithm::RS256,
        &json!({"alg": "RS256", "kid": "x\r\nFAKE LOG LINE \u{1b}[31m"}),
        &alpha.claims(),
    );
    service
        .expect(
            "N15 log injection kid",
            &injected,
            Expect::Rejected(Why::Kid),
        )
        .await;

    // N17: token responses are not cacheable.
    let response = service.exchange(&token).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
}

#[tokio::test]
async fn a_slowloris_connection_is_dropped() {
    let (_alpha, _beta, service) = setup().await;
    let mut slow = TcpStream::connect(service.address.trim_start_matches("http://"))
        .await
        .unwrap();
    slow.write_all(b"POST /v1/token HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut buffer = [0u8; 1024];
    // N8: one header byte every 2 s never completes a head; the server gives up (5 s deadline).
    let closed = loop {
        tokio::select! {
            read = slow.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break true,
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_secs(2)) => {
                if slow.write_all(b"x").await.is_err() {
                    break true;
                }
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            break false;
        }
    };
    assert!(closed, "N8: the connection was kept open");
}
