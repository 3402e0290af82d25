//! Where the caller's OIDC ID token comes from: the GitHub Actions ID-token endpoint, a file
//! (re-read on every use, for projected service-account tokens and cloud workload-identity
//! files that their owner rotates), an environment variable (GitLab CI `id_tokens`), or stdin.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The variables a GitHub Actions job with `permissions: id-token: write` receives.
pub const ACTIONS_URL_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub const ACTIONS_TOKEN_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// A place to obtain an ID token from.
#[derive(Debug, Clone)]
pub enum IdTokenSource {
    /// `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with the request token as bearer.
    GitHubActions { audience: String },
    /// A file holding the token, re-read each time.
    File(PathBuf),
    /// An environment variable holding the token.
    Env(String),
    /// Standard input, read once: it cannot be re-read.
    Stdin,
}

/// Why no ID token was obtained. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0} is not set: is this a GitHub Actions job with `permissions: id-token: write`?")]
    ActionsVariableMissing(&'static str),
    #[error("{ACTIONS_URL_VAR} is not a URL")]
    ActionsUrl,
    #[error("the GitHub Actions ID-token request failed: {0}")]
    ActionsRequest(String),
    #[error("the GitHub Actions ID-token endpoint answered {0}")]
    ActionsStatus(u16),
    #[error("cannot read the ID token file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the environment variable {0} is not set or not UTF-8")]
    EnvMissing(String),
    #[error("cannot read the ID token from stdin: {0}")]
    Stdin(std::io::Error),
    #[error("the ID token from {0} is empty")]
    Empty(String),
}

/// The Actions endpoint's answer.
#[derive(Deserialize)]
struct ActionsToken {
    value: String,
}

impl IdTokenSource {
    /// Obtains a fresh ID token, trimmed of surrounding whitespace.
    ///
    /// # Errors
    /// The source is unavailable, unreadable, or yields an empty token.
    pub async fn fetch(&self, http: &reqwest::Client) -> Result<SecretString, SourceError> {
        let raw = match self {
            Self::GitHubActions { audience } => github_actions(http, audience).await?,
            Self::File(path) => read_file(path).await?,
            Self::Env(name) => std::env::var(name)
                .map(SecretString::from)
                .map_err(|_| SourceError::EnvMissing(name.clone()))?,
            Self::Stdin => read_stdin().await?,
        };
        let token = raw.expose_secret().trim();
        if token.is_empty() {
            return Err(SourceError::Empty(self.to_string()));
        }
        Ok(SecretString::from(token.to_owned()))
    }

    /// Whether every call to [`IdTokenSource::fetch`] can yield a fresh token.
    pub fn is_repeatable(&self) -> bool {
        !matches!(self, Self::Stdin)
    }
}

impl std::fmt::Display for IdTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::GitHubActions { audience } => write!(f, "github-actions (audience {audience})"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(name) => write!(f, "env {name}"),
            Self::Stdin => f.write_str("stdin"),
        }
    }
}

async fn github_actions(
    http: &reqwest::Client,
    audience: &str,
) -> Result<SecretString, SourceError> {
    let url = std::env::var(ACTIONS_URL_VAR)
        .map_err(|_| SourceError::ActionsVariableMissing(ACTIONS_URL_VAR))?;
    let request_token = std::env::var(ACTIONS_TOKEN_VAR)
        .map(SecretString::from)
        .map_err(|_| SourceError::ActionsVariableMissing(ACTIONS_TOKEN_VAR))?;
    let mut url = reqwest::Url::parse(&url).map_err(|_| SourceError::ActionsUrl)?;
    url.query_pairs_mut().append_pair("audience", audience);
    let response = http
        .get(url)
        .bearer_auth(request_token.expose_secret())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        // Without the URL: it is the runner's, and error texts end up in job logs.
        .map_err(|e| SourceError::ActionsRequest(e.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(SourceError::ActionsStatus(response.status().as_u16()));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| SourceError::ActionsRequest(e.without_url().to_string()))?;
    let body: ActionsToken = serde_json::from_slice(&bytes)
        .map_err(|_| SourceError::ActionsRequest("the answer has no `value`".into()))?;
    Ok(SecretString::from(body.value))
}

async fn read_file(path: &PathBuf) -> Result<SecretString, SourceError> {
    tokio::fs::read_to_string(path)
        .await
        .map(SecretString::from)
        .map_err(|source| SourceError::File {
            path: path.clone(),
            source,
        })
}

async fn read_stdin() -> Result<SecretString, SourceError> {
    tokio::task::spawn_blocking(|| std::io::read_to_string(std::io::stdin()))
        .await
        .map_err(|e| SourceError::Stdin(std::io::Error::other(e)))?
        .map(SecretString::from)
        .map_err(SourceError::Stdin)
}
