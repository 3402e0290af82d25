//! Fetching an issuer's keys over HTTPS: discovery (or a configured `jwksUrl`), then the JWKS.
//! No redirects, tight timeouts, capped bodies: an issuer endpoint is a network peer like any other.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::cache::{BoxFuture, FetchError, KeyFetcher};
use super::{IssuerSettings, KeySource};

/// Largest discovery or JWKS body read; the rest is never buffered.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);

/// `https://` with a host and no query, fragment or credentials; `http://` only for loopback
/// (dev and tests). Used for issuer URLs, `jwksUrl` and discovered `jwks_uri`s alike.
pub fn check_endpoint_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!(
            "{text:?} must not carry a query, fragment or credentials"
        ));
    }
    match (url.scheme(), url.host_str()) {
        ("https", Some(_)) | ("http", Some("127.0.0.1" | "localhost" | "[::1]")) => Ok(url),
        ("http", _) => Err(format!(
            "{text:?}: http is only allowed for 127.0.0.1, localhost and [::1]; use https"
        )),
        _ => Err(format!("{text:?} must be an https URL")),
    }
}

/// Fetches one issuer's JWKS over HTTP(S).
pub struct HttpKeyFetcher {
    client: reqwest::Client,
    issuer_url: String,
    source: KeySource,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl HttpKeyFetcher {
    /// Builds the client for one issuer, trusting its `caFile` in addition to the system roots.
    pub fn new(settings: &IssuerSettings) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .user_agent(concat!("tokenvend/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("issuer {}: caFile {}: {e}", settings.name, path.display())
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                anyhow::anyhow!("issuer {}: caFile {}: {e}", settings.name, path.display())
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        Ok(Self {
            client: builder.build()?,
            issuer_url: settings.url.clone(),
            source: settings.key_source.clone(),
        })
    }

    async fn jwks_url(&self) -> Result<Url, FetchError> {
        if let KeySource::JwksUrl(url) = &self.source {
            return check_endpoint_url(url).map_err(FetchError::Discovery);
        }
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer_url.trim_end_matches('/')
        );
        let body = self.get(&discovery_url).await?;
        let document: Discovery = serde_json::from_slice(&body)
            .map_err(|_| FetchError::Discovery("not a discovery document".into()))?;
        // OIDC Discovery §4.3: the document must name exactly the issuer we asked.
        if document.issuer != self.issuer_url {
            return Err(FetchError::Discovery(format!(
                "issuer {:?} does not match the configured URL",
                document.issuer
            )));
        }
        let jwks = check_endpoint_url(&document.jwks_uri).map_err(FetchError::Discovery)?;
        let issuer =
            Url::parse(&self.issuer_url).map_err(|e| FetchError::Discovery(e.to_string()))?;
        if jwks.origin() != issuer.origin() {
            return Err(FetchError::Discovery(format!(
                "jwks_uri {:?} is not on the issuer's host; set jwksUrl to trust it explicitly",
                document.jwks_uri
            )));
        }
        Ok(jwks)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Http(format!("GET {url}: {}", without_url(&e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Http(format!("GET {url}: HTTP {status}")));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY_BYTES as u64)
        {
            return Err(FetchError::Http(format!(
                "GET {url}: body over {MAX_BODY_BYTES} bytes"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::Http(format!("GET {url}: {}", without_url(&e))))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(FetchError::Http(format!(
                    "GET {url}: body over {MAX_BODY_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

impl KeyFetcher for HttpKeyFetcher {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, FetchError>> {
        Box::pin(async move {
            let url = self.jwks_url().await?;
            self.get(url.as_str()).await
        })
    }
}
