//! The policy file format: raw, strict serde structs exactly as written in YAML.
//! They are compiled once by [`super::compile`]; nothing reads them after load.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ConfigDuration;

/// One entry of `policies:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPolicy {
    pub name: String,
    pub issuer: String,
    /// Claim name (or JSON pointer, starting with `/`) → matcher. Every entry must hold.
    #[serde(rename = "match", default)]
    pub matches: BTreeMap<String, serde_json::Value>,
    /// An optional CEL expression over `claims` that must be `true`.
    #[serde(default)]
    pub condition: Option<String>,
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
    /// Bind each token to a Secret of its own, so that deleting the Secret revokes it.
    #[serde(default)]
    pub revocable: bool,
}

/// One entry of `tests:`: claims, a request, and the decision expected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTest {
    pub name: String,
    /// The verified claims to decide on; `iss` selects the issuer (it may be omitted when the
    /// config has a single issuer).
    pub claims: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub request: RawTestRequest,
    pub expect: Expectation,
    /// With `allow`: the policy expected to grant.
    #[serde(default)]
    pub policy: Option<String>,
}

/// The request part of a test, as a caller would send it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTestRequest {
    #[serde(default)]
    pub service_account: Option<String>,
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    #[serde(default)]
    pub expiration_seconds: Option<u64>,
}

/// The decision a test expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expectation {
    Allow,
    Deny,
}
