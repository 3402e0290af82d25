//! The call to tokenvend's `POST /v1/token`: what to ask for, and the answer read back as a
//! [`TokenDocument`]. Always the JSON answer: documents that a tool runs (kubeconfigs) are
//! built by the client from its plain data, never taken from the server.

use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// One request to the service may take this long, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Error bodies are copied into messages up to this many characters.
const MAX_ERROR_BODY: usize = 1024;

/// What to ask the service for; every field optional (the policy's defaults apply).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenWish {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audiences: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_seconds: Option<u64>,
}

/// The service's JSON answer, as far as the client needs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenDocument {
    pub token: String,
    pub expiration_timestamp: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountName>,
    /// Where the token is used; older servers do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterData>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// `serviceAccount` of the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceAccountName {
    pub namespace: String,
    pub name: String,
}

/// `cluster` of the answer: the API server and, base64 of PEM, its trust roots.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterData {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
}

/// Refuses a URL that would carry a credential in clear: `https://`, or plain `http://` to
/// 127.0.0.1, localhost or [::1] only. `what` names the URL's origin in the message.
pub fn check_transport(url: &str, what: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| anyhow::anyhow!("{what} {url:?} is not a URL: {e}"))?;
    match (parsed.scheme(), parsed.host_str()) {
        ("https", Some(_)) => Ok(()),
        // The host as written, too: the URL parser reads `0x7f.0.0.1` or `2130706433` as
        // 127.0.0.1, but kubectl (Go) would look such a name up in DNS.
        ("http", Some(host @ ("127.0.0.1" | "localhost" | "[::1]")))
            if written_host(url).is_some_and(|written| written.eq_ignore_ascii_case(host)) =>
        {
            Ok(())
        }
        ("http", _) => anyhow::bail!(
            "{what} {url:?}: refusing plain http:// off loopback, which would carry tokens in \
             clear; use https:// (plain http:// is for 127.0.0.1, localhost and [::1] only)"
        ),
        _ => anyhow::bail!("{what} {url:?} must be an https:// URL"),
    }
}

/// The host of an `http://` URL exactly as written (no user info, port or path).
fn written_host(url: &str) -> Option<&str> {
    let rest = url
        .get(..7)?
        .eq_ignore_ascii_case("http://")
        .then(|| &url[7..])?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    Some(match authority.strip_prefix('[') {
        Some(_) => &authority[..=authority.find(']')?],
        None => authority.split(':').next()?,
    })
}

/// Why the service gave no token. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot reach {server}: {message}")]
    Transport { server: String, message: String },
    #[error("tokenvend answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("tokenvend's answer could not be read: {0}")]
    Unreadable(String),
}

impl ServiceError {
    /// Whether retrying the same request later may succeed (network trouble, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Unreadable(_) => true,
            Self::Refused { status, .. } => *status >= 500 || *status == 429,
        }
    }
}

/// A client for one tokenvend server.
#[derive(Debug, Clone)]
pub struct Service {
    http: reqwest::Client,
    server: String,
}

impl Service {
    /// A client for `server` (its base URL), trusting `ca_file` in addition to the system roots.
    ///
    /// # Errors
    /// `server` is not `https://` (or plain `http://` to loopback), checked before any
    /// connection; the CA file cannot be read or parsed, or the HTTP client cannot be built.
    pub fn new(server: &str, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        check_transport(server, "--server")?;
        Ok(Self {
            http: http_client(ca_file)?,
            server: server.trim_end_matches('/').to_owned(),
        })
    }

    /// The HTTP client, shared with the ID-token sources.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Exchanges `id_token` for a token, as the JSON document.
    ///
    /// # Errors
    /// See [`ServiceError`].
    pub async fn token(
        &self,
        id_token: &SecretString,
        wish: &TokenWish,
    ) -> Result<TokenDocument, ServiceError> {
        let response = self
            .http
            .post(format!("{}/v1/token?format=json", self.server))
            .bearer_auth(id_token.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(wish).expect("a wish serialises"))
            .send()
            .await
            .map_err(|e| ServiceError::Transport {
                server: self.server.clone(),
                message: e.without_url().to_string(),
            })?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| ServiceError::Unreadable(e.without_url().to_string()))?;
        if !status.is_success() {
            // Error bodies are the service's error documents (openapi.yaml), which never echo a token.
            let body: String = body.chars().take(MAX_ERROR_BODY).collect();
            return Err(ServiceError::Refused {
                status: status.as_u16(),
                body: body.trim_end().to_owned(),
            });
        }
        serde_json::from_str(&body).map_err(|e| ServiceError::Unreadable(e.to_string()))
    }
}

/// The answer to one revocation request.
#[derive(Debug)]
pub enum RevokeAnswer {
    /// 200: the token is revoked, or was never revocable (the server does not say which).
    Done,
    /// 503 or 429: try again after this long (the server's `Retry-After`, when it sent one).
    Later(Option<Duration>),
}

impl Service {
    /// Asks the service to revoke `token` (`POST /oauth2/revoke`, RFC 7009), once.
    ///
    /// # Errors
    /// See [`ServiceError`]; an error body is cut, and the token is blotted out of it should
    /// a server echo it.
    pub async fn revoke(&self, token: &SecretString) -> Result<RevokeAnswer, ServiceError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token.expose_secret())
            .append_pair("token_type_hint", "access_token")
            .finish();
        let response = self
            .http
            .post(format!("{}/oauth2/revoke", self.server))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| ServiceError::Transport {
                server: self.server.clone(),
                message: e.without_url().to_string(),
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        match status {
            200 => Ok(RevokeAnswer::Done),
            429 | 503 => Ok(RevokeAnswer::Later(retry_after)),
            _ => {
                let body: String = text
                    .replace(token.expose_secret(), "[token]")
                    .chars()
                    .take(MAX_ERROR_BODY)
                    .collect();
                Err(ServiceError::Refused {
                    status,
                    body: body.trim_end().to_owned(),
                })
            }
        }
    }
}

fn http_client(ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tokenvend-client/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", path.display()))?;
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder.build()?)
}

#[cfg(test)]
mod transport_tests {
    use super::check_transport;

    #[test]
    fn plain_http_is_allowed_only_to_a_loopback_host_written_as_such() {
        for (url, allowed) in [
            ("https://tokenvend.example.com", true),
            ("http://127.0.0.1:8080", true),
            ("http://localhost:8080/v1", true),
            ("HTTP://LOCALHOST", true),
            ("http://[::1]:8080", true),
            ("http://tokenvend.example.com", false),
            ("http://127.0.0.1.evil.example", false),
            ("http://localhost@evil.example", false),
            ("http://user@127.0.0.1", false),
            ("http://0x7f.0.0.1", false),
            ("http://2130706433", false),
            ("http://127.1", false),
            ("ftp://127.0.0.1", false),
        ] {
            assert_eq!(check_transport(url, "--server").is_ok(), allowed, "{url}");
        }
    }
}
