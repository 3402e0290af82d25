//! The exec-plugin cache: kubectl runs its exec plugin for every command, so the credential is
//! kept in a private file (mode 0600, directory 0700) and reused until shortly before it expires.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;

use super::private_file;
use super::service::TokenDocument;

/// A cached credential is not handed out when it expires sooner than this: kubectl may use it
/// for a while, and the clocks of this machine and the API server may differ.
pub const REUSE_MARGIN: Duration = Duration::from_secs(60);

/// One cache file.
#[derive(Debug, Clone)]
pub struct CredentialCache {
    path: PathBuf,
}

impl CredentialCache {
    /// A cache in `path`.
    pub fn at(path: PathBuf) -> Self {
        Self { path }
    }

    /// The default cache for a request: `$XDG_CACHE_HOME/tokenvend/` (else `~/.cache/tokenvend/`),
    /// one file per distinct request `key`. `None` without a home directory.
    pub fn for_key(key: &str) -> Option<Self> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
        Some(Self::at(base.join("tokenvend").join(file_name(key))))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached document, if there is one that is valid for longer than [`REUSE_MARGIN`]
    /// after `now`. An unreadable cache counts as empty.
    pub fn load(&self, now: Timestamp) -> Option<TokenDocument> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let document: TokenDocument = serde_json::from_str(&text).ok()?;
        let left = document.expiration_timestamp.as_second() - now.as_second();
        let margin = i64::try_from(REUSE_MARGIN.as_secs()).unwrap_or(i64::MAX);
        (left > margin).then_some(document)
    }

    /// Stores `document`, creating the directory (mode 0700) if needed.
    ///
    /// # Errors
    /// The directory or file cannot be written.
    pub fn store(&self, document: &TokenDocument) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir)?;
        }
        let text = serde_json::to_vec(document).expect("documents serialise");
        private_file::replace(&self.path, &text)
    }
}

/// The cache file for `key`: named by the first 128 bits of its SHA-256, in hex, so that
/// the name says nothing about the server or the ID token source.
fn file_name(key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("exec-credential-{hex}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(expires: Timestamp) -> TokenDocument {
        serde_json::from_value(serde_json::json!({
            "token": "a.b.c",
            "expirationTimestamp": expires.to_string(),
        }))
        .unwrap()
    }

    #[test]
    fn a_cached_credential_is_reused_until_shortly_before_it_expires() {
        let dir =
            std::env::temp_dir().join(format!("tokenvend-cache-{}", uuid::Uuid::new_v4().simple()));
        let cache = CredentialCache::at(dir.join("sub").join("cache.json"));
        let now = Timestamp::now();
        assert!(cache.load(now).is_none());
        cache
            .store(&document(now + Duration::from_secs(600)))
            .unwrap();
        assert_eq!(cache.load(now).unwrap().token, "a.b.c");
        assert!(cache.load(now + Duration::from_secs(539)).is_some());
        assert!(cache.load(now + Duration::from_secs(541)).is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn different_requests_get_different_cache_files() {
        let a = CredentialCache::for_key("https://a\n{}").unwrap();
        let b = CredentialCache::for_key("https://b\n{}").unwrap();
        assert_ne!(a.path(), b.path());
    }
}
