//! The policy file format: raw, strict serde structs exactly as written in YAML.
//! They are compiled once by [`super::compile`]; nothing reads them after load.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::ConfigDuration;

/// One entry of `policies:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPolicy {
    pub name: String,
    pub issuer: String,
    /// Claim name (or JSON pointer, starting with `/`) → matcher. Every entry must hold.
    #[serde(rename = "match", default)]
    pub matches: BTreeMap<String, serde_json::Value>,
    pub grant: RawGrant,
}

/// The `grant:` block of a policy as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawGrant {
    pub service_accounts: Vec<String>,
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    #[serde(default)]
    pub ttl: Option<ConfigDuration>,
    #[serde(default)]
    pub max_ttl: Option<ConfigDuration>,
}
