//! Fetching an issuer's keys over HTTPS: discovery (or a configured `jwksUrl`), then the JWKS.
//! No redirects, tight timeouts, capped bodies: an issuer endpoint is a network peer like any other.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::cache::{BoxFuture, FetchError, Fetched, KeyFetcher};
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
        let body = self.get(&discovery_url).await?.body;
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

    async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
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
        let max_age = max_age(response.headers());
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
        Ok(Fetched { body, max_age })
    }
}

/// `Cache-Control: max-age=N`, when the response allows caching at all.
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    let directives: Vec<&str> = value.split(',').map(str::trim).collect();
    if directives
        .iter()
        .any(|d| d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache"))
    {
        return Some(Duration::ZERO);
    }
    directives.iter().find_map(|d| {
        let (name, seconds) = d.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| seconds.trim().parse().ok().map(Duration::from_secs))?
    })
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
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched, FetchError>> {
        Box::pin(async move {
            let url = self.jwks_url().await?;
            self.get(url.as_str()).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{CACHE_CONTROL, HeaderMap, HeaderValue};

    fn cache_control(value: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
        max_age(&headers)
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            cache_control("public, max-age=3600"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(cache_control("MAX-AGE = 60"), Some(Duration::from_secs(60)));
        assert_eq!(cache_control("no-store"), Some(Duration::ZERO));
        assert_eq!(cache_control("public"), None);
        assert_eq!(cache_control("max-age=soon"), None);
        assert_eq!(max_age(&HeaderMap::new()), None);
    }

    #[test]
    fn endpoints_must_be_https_or_loopback_http() {
        for ok in [
            "https://idp.example.com",
            "https://idp.example.com/path",
            "http://127.0.0.1:5556",
            "http://localhost/x",
            "http://[::1]:1",
        ] {
            assert!(check_endpoint_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example.com",
            "ftp://idp",
            "https://idp?x=1",
            "https://idp#f",
            "https://user:pw@idp",
            "not a url",
            "http://127.0.0.2",
        ] {
            assert!(check_endpoint_url(bad).is_err(), "{bad}");
        }
    }
}
