//! Logs of a full exchange at TRACE, captured by the process-wide subscriber (its own test
//! binary, so that no other test's logging interferes), searched for tokens.

#[allow(
    dead_code,
    reason = "shared with the api tests; this binary uses part of it"
)]
#[path = "api/helpers.rs"]
mod helpers;

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokenvend::telemetry::{LogFormat, subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::helpers::{spawn_app, webapp_claims};

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
    let app = spawn_app().await;
    let presented = app.id_token(webapp_claims());

    let response = app.post_token(&presented, None).await;
    assert_eq!(response.status(), 200);
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
    app.stop().await;

    let (logs, audit) = (logs.text(), audit.text());
    assert!(
        logs.lines().count() > 50,
        "expected trace-level logs, got {} lines",
        logs.lines().count()
    );
    assert_eq!(audit.lines().count(), 4, "{audit}");
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
        tokenvend::audit::sha256_hex(issued.as_bytes())
    );
    assert_eq!(first["client_ip"], "127.0.0.1");
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["issued", "issued", "denied", "invalid_token"]);
    assert_eq!(records[2]["reason"], "no_policy_matched");
    assert_eq!(records[3]["reason"], "bad_signature");
    for token in [&presented, &issued, raw.trim_end(), &denied, &forged] {
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
