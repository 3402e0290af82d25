//! The `issuers:` entries: trust anchors, each compiled into [`IssuerSettings`].

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::ConfigDuration;
use crate::oidc::{IssuerSettings, KeySource};
use crate::policy::InvalidKey;

/// The longest ID-token lifetime accepted when the issuer sets none.
const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// One entry of `issuers:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawIssuer {
    pub name: String,
    pub url: String,
    pub audiences: Vec<String>,
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub max_token_lifetime: Option<ConfigDuration>,
    #[serde(default)]
    pub require_claims: Vec<String>,
    #[serde(default)]
    pub replay_protection: bool,
    #[serde(default)]
    pub key_refresh_cooldown: Option<ConfigDuration>,
    /// Undocumented, for tests: how long cached keys outlive an issuer outage (default 24 h).
    #[serde(default)]
    pub max_key_staleness: Option<ConfigDuration>,
}

impl RawIssuer {
    /// Validates the entry; the error names the key at fault.
    pub fn compile(&self) -> Result<IssuerSettings, InvalidKey> {
        let fail = |key: &str, message: String| InvalidKey::new(key, message);
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(fail(
                "name",
                "must be non-empty [A-Za-z0-9_-] (it becomes a metric label)".into(),
            ));
        }
        check_url(&self.url).map_err(|message| fail("url", message))?;
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(fail(
                "audiences",
                "at least one non-empty audience is required".into(),
            ));
        }
        let key_source = match &self.jwks_url {
            Some(url) => {
                check_url(url).map_err(|message| fail("jwksUrl", message))?;
                KeySource::JwksUrl(url.clone())
            }
            None => KeySource::Discovery,
        };
        Ok(IssuerSettings {
            name: self.name.clone(),
            url: self.url.clone(),
            audiences: self.audiences.clone(),
            algorithms: self
                .algorithms()
                .map_err(|message| fail("algorithms", message))?,
            key_source,
            ca_file: self.ca_file.clone(),
            max_token_lifetime: self
                .max_token_lifetime
                .map_or(DEFAULT_MAX_TOKEN_LIFETIME, |d| d.0),
            require_claims: self.require_claims.clone(),
            replay_protection: self.replay_protection,
            key_refresh_cooldown: self.key_refresh_cooldown()?,
            max_key_staleness: self.max_key_staleness()?,
        })
    }

    /// At least a second: a cooldown of zero would let unknown kids drive fetches at line rate.
    fn key_refresh_cooldown(&self) -> Result<Duration, InvalidKey> {
        let cooldown = self
            .key_refresh_cooldown
            .map_or(crate::oidc::REFRESH_COOLDOWN, |d| d.0);
        if cooldown < Duration::from_secs(1) {
            return Err(InvalidKey::new("keyRefreshCooldown", "must be at least 1s"));
        }
        Ok(cooldown)
    }

    /// At least a second, like the cooldown it must outlast to be refreshed on demand.
    fn max_key_staleness(&self) -> Result<Duration, InvalidKey> {
        let staleness = self
            .max_key_staleness
            .map_or(crate::oidc::MAX_STALENESS, |d| d.0);
        if staleness < Duration::from_secs(1) {
            return Err(InvalidKey::new("maxKeyStaleness", "must be at least 1s"));
        }
        Ok(staleness)
    }

    fn algorithms(&self) -> Result<Vec<Algorithm>, String> {
        let Some(names) = &self.algorithms else {
            return Ok(vec![Algorithm::RS256]);
        };
        if names.is_empty() {
            return Err("must allow at least one algorithm".into());
        }
        names.iter().map(|name| parse_algorithm(name)).collect()
    }
}

/// Asymmetric signature algorithms only: a symmetric key cannot be published in a JWKS.
fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let algorithm = match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        other => {
            return Err(format!(
                "{other:?} is not allowed (RS256/384/512, PS256/384/512, ES256, ES384)"
            ));
        }
    };
    Ok(algorithm)
}

/// Issuer and JWKS URLs follow the same rule as the fetcher: https, or http on loopback only.
fn check_url(text: &str) -> Result<(), String> {
    crate::oidc::check_endpoint_url(text).map(drop)
}
