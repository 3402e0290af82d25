//! Logs of a full exchange at TRACE, captured by the process-wide subscriber (its own test
//! binary, so that no other test's logging interferes), searched for tokens.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokenvend::telemetry::{LogFormat, subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use test_support::app::{CONFIG, REVOCABLE_POLICY, release_claims, spawn_app_with, webapp_claims};

/// Collects everything written to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for Captured {
    type Writer = Self;

    fn make_writer(&'w self) -> Self {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Every segment of a JWT long enough to be recognisable.
fn fragments(token: &str) -> Vec<String> {
    let mut parts: Vec<String> = token
        .split('.')
        .filter(|s| s.len() >= 16)
        .map(str::to_owned)
        .collect();
    parts.push(token.to_owned());
    parts
}

#[tokio::test]
async fn no_token_appears_in_any_log_line_at_any_level() {
    let logs = Captured::default();
    let audit = Captured::default();
    tracing::subscriber::set_global_default(subscriber(
        LogFormat::Json,
        EnvFilter::new("trace"),
        logs.clone(),
        audit.clone(),
    ))
    .unwrap();
    let app = spawn_app_with(&format!("{CONFIG}{REVOCABLE_POLICY}"), |_| {}).await;
    let presented = app.id_token(webapp_claims());

    let response = app.post_token(&presented, None).await;
    assert_eq!(response.status(), 200);
    let first_request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let issued_json: Value = response.json().await.unwrap();
    let issued = issued_json["token"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/token?format=token", app.address);
    let raw = app
        .http
        .post(url)
        .bearer_auth(&presented)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let denied = app.id_token(json!({"sub": "someone", "repository": "acme/nothing"}));
    assert_eq!(app.post_token(&denied, None).await.status(), 403);
    let forged = {
        // Another signature of the right length: flip one character in its middle.
        let mut bytes = presented.clone().into_bytes();
        let at = bytes.len() - 20;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    assert_eq!(app.post_token(&forged, None).await.status(), 401);
    // The granted service account does not exist: the API server answers 404.
    let ghost = app.id_token(json!({"sub": "ghost-sub", "repository": "acme/ghost"}));
    let upstream = app
        .http
        .post(format!("{}/v1/token", app.address))
        .bearer_auth(&ghost)
        .header("x-request-id", "upstream-1")
        .header("user-agent", "logs-test/1")
        .send()
        .await
        .unwrap();
    assert_eq!(upstream.status(), 502);
    // The caller's X-Request-Id is kept beside tokenvend's own id, never in its place.
    let upstream_request_id = upstream.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(upstream_request_id, "upstream-1");
    // Listing grants is recorded like an exchange.
    let listed = app
        .http
        .get(format!("{}/v1/grants", app.address))
        .bearer_auth(&presented)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    // A revocable token, then its revocation.
    let release = app.id_token(release_claims());
    let revocable_response = app.post_token(&release, None).await;
    assert_eq!(revocable_response.status(), 200);
    let revocable_json: Value = revocable_response.json().await.unwrap();
    let revocable = revocable_json["token"].as_str().unwrap().to_owned();
    let revoked = app
        .http
        .post(format!("{}/oauth2/revoke", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={revocable}"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    app.stop().await;

    let (logs, audit) = (logs.text(), audit.text());
    assert!(
        logs.lines().count() > 50,
        "expected trace-level logs, got {} lines",
        logs.lines().count()
    );
    assert_eq!(audit.lines().count(), 8, "{audit}");
    let records: Vec<Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let first = &records[0];
    assert_eq!(first["outcome"], "issued");
    assert_eq!(first["policy"], "deploy");
    assert_eq!(first["issuer"], "local");
    assert_eq!(first["subject"], "repo:acme/webapp:ref:refs/heads/main");
    assert_eq!(first["namespace"], "production");
    assert_eq!(first["service_account"], "deployer");
    assert_eq!(first["token_id"], issued_json["tokenId"]);
    assert_eq!(
        first["token_sha256"],
        tokenvend::exchange::sha256_hex(issued.as_bytes())
    );
    assert_eq!(first["client_ip"], "127.0.0.1");
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "issued",
            "issued",
            "denied",
            "invalid_token",
            "error",
            "listed",
            "issued",
            "revoked"
        ]
    );
    assert_eq!(records[5]["issuer"], "local");
    assert_eq!(
        records[5]["subject"],
        "repo:acme/webapp:ref:refs/heads/main"
    );
    assert_eq!(records[5]["reason"], "listed");
    for record in &records {
        let mut keys: Vec<&str> = record
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut expected = AUDIT_FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected, "{record}");
        assert!(
            record["time"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .is_ok(),
            "{record}"
        );
        assert_eq!(record["client_ip"], "127.0.0.1");
    }
    assert_issued(first, &first_request_id, &presented, &issued_json);
    assert_denied(&records[2], &denied);
    assert_invalid_token(&records[3]);
    assert_upstream_error(&records[4], &ghost, &upstream_request_id);
    assert_revocable(&records[6], &records[7], &revocable_json);
    assert_eq!(records[0]["binding"], Value::Null);
    assert_request_ids_in_log_lines(&logs);
    for token in [
        &release,
        &revocable,
        &presented,
        &issued,
        raw.trim_end(),
        &denied,
        &forged,
        &ghost,
    ] {
        for fragment in fragments(token) {
            assert!(
                !logs.contains(&fragment),
                "a token fragment appears in the logs"
            );
            assert!(
                !audit.contains(&fragment),
                "a token fragment appears in the audit log"
            );
        }
    }
}

/// Every field of the audit record (README, "What it measures and records"), present in every
/// record (null when it does not apply).
const AUDIT_FIELDS: [&str; 18] = [
    "time",
    "request_id",
    "client_request_id",
    "outcome",
    "reason",
    "issuer",
    "subject",
    "jti",
    "policy",
    "namespace",
    "service_account",
    "audiences",
    "expiration_timestamp",
    "token_id",
    "token_sha256",
    "binding",
    "client_ip",
    "user_agent",
];

/// A revocable issuance names its binding; its revocation names the same binding, service
/// account and token (by jti and SHA-256).
fn assert_revocable(issued: &Value, revoked: &Value, response: &Value) {
    let token = response["token"].as_str().unwrap();
    let claims = claims_of(token);
    let binding = format!(
        "production/{}",
        claims["kubernetes.io"]["secret"]["name"].as_str().unwrap()
    );
    assert!(binding.starts_with("production/tokenvend-"), "{binding}");
    assert_eq!(issued["policy"], "release");
    assert_eq!(issued["binding"], binding.as_str());
    assert_eq!(revoked["reason"], "revoked");
    assert_eq!(revoked["binding"], binding.as_str());
    assert_eq!(revoked["namespace"], "production");
    assert_eq!(revoked["service_account"], "releaser");
    assert_eq!(revoked["token_id"], claims["jti"]);
    assert_eq!(revoked["token_id"], response["tokenId"]);
    let sha = tokenvend::exchange::sha256_hex(token.as_bytes());
    assert_eq!(revoked["token_sha256"], sha.as_str());
    assert_eq!(issued["token_sha256"], sha.as_str());
}

/// The payload of a JWT, unverified (the test's own tokens).
fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn assert_issued(record: &Value, request_id: &str, presented: &str, response: &Value) {
    assert_eq!(record["request_id"], request_id);
    assert_eq!(record["client_request_id"], Value::Null);
    assert_eq!(record["reason"], "issued");
    assert_eq!(record["jti"], claims_of(presented)["jti"]);
    assert_eq!(record["audiences"], response["audiences"]);
    let in_record: jiff::Timestamp = record["expiration_timestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let in_response: jiff::Timestamp = response["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(in_record.as_second(), in_response.as_second());
    assert!(record["token_id"].is_string(), "{record}");
    assert_eq!(record["user_agent"], Value::Null);
}

fn assert_denied(record: &Value, presented: &str) {
    assert_eq!(record["reason"], "no_policy_matched");
    assert_eq!(record["issuer"], "local");
    assert_eq!(record["subject"], "someone");
    assert_eq!(record["jti"], claims_of(presented)["jti"]);
    for absent in [
        "policy",
        "namespace",
        "service_account",
        "audiences",
        "expiration_timestamp",
        "token_id",
        "token_sha256",
    ] {
        assert_eq!(record[absent], Value::Null, "{absent}: {record}");
    }
}

fn assert_invalid_token(record: &Value) {
    assert_eq!(record["reason"], "bad_signature");
    // Nothing from an unverified token is recorded.
    for absent in [
        "issuer",
        "subject",
        "jti",
        "policy",
        "namespace",
        "service_account",
        "audiences",
        "expiration_timestamp",
        "token_id",
        "token_sha256",
    ] {
        assert_eq!(record[absent], Value::Null, "{absent}: {record}");
    }
}

fn assert_upstream_error(record: &Value, presented: &str, request_id: &str) {
    assert_eq!(record["request_id"], request_id);
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{record}");
    assert_eq!(record["client_request_id"], "upstream-1");
    assert_eq!(record["reason"], "upstream_404");
    assert_eq!(record["issuer"], "local");
    assert_eq!(record["subject"], "ghost-sub");
    assert_eq!(record["jti"], claims_of(presented)["jti"]);
    assert_eq!(record["policy"], "ghost");
    assert_eq!(record["namespace"], "production");
    assert_eq!(record["service_account"], "ghost");
    assert!(record["audiences"].is_array(), "{record}");
    assert_eq!(record["user_agent"], "logs-test/1");
    for absent in ["expiration_timestamp", "token_id", "token_sha256"] {
        assert_eq!(record[absent], Value::Null, "{absent}: {record}");
    }
}

/// The request id a JSON log line carries: its own span's, or an enclosing span's.
fn request_id_of(line: &Value) -> Option<&str> {
    span_field(line, "request_id")
}

/// A field of the line's own span or of an enclosing one.
fn span_field<'l>(line: &'l Value, field: &str) -> Option<&'l str> {
    line["span"][field].as_str().or_else(|| {
        line["spans"]
            .as_array()?
            .iter()
            .find_map(|span| span[field].as_str())
    })
}

/// Every application log line written while handling a request carries its request id: the
/// request path's own lines, and the kube client's lines for the TokenRequest it sends. A
/// caller's own `X-Request-Id` is beside it.
fn assert_request_ids_in_log_lines(logs: &str) {
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let request_path = lines.iter().filter(|line| {
        let target = line["target"].as_str().unwrap_or_default();
        let kube_token_request = line["span"]["http.url"]
            .as_str()
            .is_some_and(|url| url.contains("/serviceaccounts/"));
        target.starts_with("tokenvend::http")
            || target.starts_with("tokenvend::k8s::mint")
            || kube_token_request
    });
    let mut checked = 0;
    for line in request_path {
        assert!(request_id_of(line).is_some(), "no request id: {line}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} request-path lines");
    let upstream: Vec<&str> = lines
        .iter()
        .filter(|line| span_field(line, "client_request_id") == Some("upstream-1"))
        .filter_map(|line| line["message"].as_str())
        .collect();
    for message in ["token request failed", "request finished", "requesting"] {
        assert!(
            upstream.contains(&message),
            "{message:?} not in {upstream:?}"
        );
    }
}
