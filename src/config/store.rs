//! The `store:` block: where replay records and rate limits are shared between replicas.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigDuration;
use crate::store::{DEFAULT_TIMEOUT, StoreSettings, check_url};

/// The longest `store.timeout`: every request to a replay-protected issuer may wait this long.
const MAX_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawStore {
    url: String,
    password_file: Option<PathBuf>,
    #[serde(rename = "caFile")]
    ca_file: Option<PathBuf>,
    timeout: Option<ConfigDuration>,
}

impl RawStore {
    /// Validated settings, or a message naming the key (`store.url: ...`). Reads no file and
    /// opens no connection: `check` runs it offline.
    pub(super) fn compile(self) -> Result<StoreSettings, String> {
        check_url(&self.url).map_err(|message| format!("store.url: {message}"))?;
        if self.ca_file.is_some() && !self.url.starts_with("rediss://") {
            return Err("store.caFile: only for rediss:// (TLS) URLs".to_owned());
        }
        let timeout = self.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
        if timeout > MAX_TIMEOUT {
            return Err(format!(
                "store.timeout: at most {}s (each request to a replay-protected issuer may wait this long)",
                MAX_TIMEOUT.as_secs()
            ));
        }
        Ok(StoreSettings {
            url: self.url,
            password_file: self.password_file,
            ca_file: self.ca_file,
            timeout,
        })
    }
}
