//! The audit record (DESIGN §6): one JSON line per decision on the `audit` logger target.
//! It never holds a token: the issued one appears only as its SHA-256.

use serde::Serialize;

/// Claim strings copied into the record are cut to this many characters.
const MAX_FIELD_CHARS: usize = 256;

/// What was decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Issued,
    Denied,
    InvalidToken,
    InvalidRequest,
    Error,
    /// `dryRun=true`: the decision was to issue, and nothing was minted.
    DryRun,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Denied => "denied",
            Self::InvalidToken => "invalid_token",
            Self::InvalidRequest => "invalid_request",
            Self::Error => "error",
            Self::DryRun => "dry_run",
        }
    }
}

/// One decision, filled in as the request progresses and written once at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditRecord {
    pub time: String,
    pub request_id: String,
    pub outcome: Option<Outcome>,
    pub reason: Option<String>,
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub jti: Option<String>,
    pub policy: Option<String>,
    pub namespace: Option<String>,
    pub service_account: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub expiration_timestamp: Option<String>,
    pub token_id: Option<String>,
    pub token_sha256: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl AuditRecord {
    pub fn new(request_id: &str, client_ip: Option<String>, user_agent: Option<&str>) -> Self {
        Self {
            request_id: request_id.to_owned(),
            client_ip,
            user_agent: user_agent.map(cap),
            ..Self::default()
        }
    }

    /// Records a caller-controlled string (a claim, a header), length-capped.
    pub fn capped(text: &str) -> String {
        cap(text)
    }

    /// Writes the record as one JSON line on the `audit` target. `reason` is used unless a
    /// more precise one was recorded on the way.
    pub fn write(mut self, outcome: Outcome, reason: &str) {
        self.time = jiff::Timestamp::now().to_string();
        self.outcome = Some(outcome);
        self.reason.get_or_insert_with(|| reason.to_owned());
        match serde_json::to_string(&self) {
            Ok(line) => tracing::info!(target: "audit", "{line}"),
            Err(error) => tracing::error!(%error, "audit record could not be serialised"),
        }
    }
}

fn cap(text: &str) -> String {
    text.chars().take(MAX_FIELD_CHARS).collect()
}

/// Lower-case hex SHA-256, for recording an issued token without recording it.
pub fn sha256_hex(data: &[u8]) -> String {
    use std::fmt::Write;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_hex_of_the_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn caller_strings_are_capped() {
        assert_eq!(
            AuditRecord::capped(&"é".repeat(1000)).chars().count(),
            MAX_FIELD_CHARS
        );
    }
}
