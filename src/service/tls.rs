//! TLS on the public listener, with the certificate and key re-read when their files change
//! (cert-manager rotating a Secret volume). Each new handshake picks the pair in force at that
//! moment; connections already established keep the one they were set up with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the files are compared with what is being served.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Where the PEM certificate chain and private key are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a certificate and key could not be (re)loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} is not valid PEM: {source}", path.display())]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the key does not fit the certificate or is unsupported: {0}")]
    Key(#[from] rustls::Error),
}

/// Serves the latest valid certificate and key read from [`TlsFiles`].
pub struct ReloadingCert {
    files: TlsFiles,
    current: RwLock<Current>,
}

/// The pair being served and the file contents it came from (to notice changes).
struct Current {
    certified: Arc<CertifiedKey>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl ReloadingCert {
    /// Reads the files once.
    ///
    /// # Errors
    /// A file cannot be read or parsed, or the key does not belong to the certificate.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let cert_pem = read(&files.cert)?;
        let key_pem = read(&files.key)?;
        let certified = Arc::new(certified_key(&files, &cert_pem, &key_pem)?);
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Current {
                certified,
                cert_pem,
                key_pem,
            }),
        }))
    }

    /// A rustls server configuration (HTTP/1.1 over ALPN) that asks this resolver for its
    /// certificate on every handshake.
    ///
    /// # Errors
    /// Only if the process's crypto provider rejects the default protocol versions.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Re-reads the files; if they changed and form a valid pair, serves the new pair.
    /// Returns whether it switched.
    ///
    /// # Errors
    /// The files changed but cannot be read or do not form a valid pair (for instance while
    /// only one of them has been replaced); the previous pair stays in force.
    pub async fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let cert_pem = read_async(&self.files.cert).await?;
        let key_pem = read_async(&self.files.key).await?;
        {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if current.cert_pem == cert_pem && current.key_pem == key_pem {
                return Ok(false);
            }
        }
        let certified = Arc::new(certified_key(&self.files, &cert_pem, &key_pem)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Current {
            certified,
            cert_pem,
            key_pem,
        };
        Ok(true)
    }

    /// Polls the files every `interval` for as long as the task runs. Failures are logged and
    /// retried at the next poll.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match self.reload_if_changed().await {
                Ok(true) => {
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded")
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "TLS certificate not reloaded; still serving the previous one");
                }
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        Some(Arc::clone(&current.certified))
    }
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

async fn read_async(path: &Path) -> Result<Vec<u8>, TlsError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Parses the chain and key and checks that the key belongs to the leaf certificate.
fn certified_key(
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: files.cert.clone(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsError::Pem {
        path: files.key.clone(),
        source,
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Ok(CertifiedKey::from_der(chain, key, &provider)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dev_pki::tls::DevCa;

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn files_in(name: &str) -> (Dir, TlsFiles) {
        let dir = std::env::temp_dir().join(format!("tokenvend-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        (Dir(dir), files)
    }

    fn write(files: &TlsFiles, cert: &str, key: &str) {
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
    }

    fn served(resolver: &ReloadingCert) -> Vec<u8> {
        let current = resolver.current.read().unwrap();
        current.certified.cert[0].to_vec()
    }

    #[tokio::test]
    async fn a_changed_pair_is_served_and_an_inconsistent_one_is_refused() {
        let ca = DevCa::generate("ca").unwrap();
        let (first, second) = (
            ca.issue_server_cert(&["localhost"]).unwrap(),
            ca.issue_server_cert(&["localhost"]).unwrap(),
        );
        let (_dir, files) = files_in("reload");
        write(&files, &first.cert_pem, &first.key_pem);
        let resolver = ReloadingCert::load(files.clone()).unwrap();
        let original = served(&resolver);
        assert!(!resolver.reload_if_changed().await.unwrap());

        // Half-rotated: the new certificate with the old key. The old pair stays.
        std::fs::write(&files.cert, &second.cert_pem).unwrap();
        assert!(matches!(
            resolver.reload_if_changed().await,
            Err(TlsError::Key(_))
        ));
        assert_eq!(served(&resolver), original);

        std::fs::write(&files.key, &second.key_pem).unwrap();
        assert!(resolver.reload_if_changed().await.unwrap());
        assert_ne!(served(&resolver), original);
    }

    #[test]
    fn missing_or_empty_files_are_refused_at_load() {
        let (_dir, files) = files_in("missing");
        assert!(matches!(
            ReloadingCert::load(files.clone()),
            Err(TlsError::Read { .. })
        ));
        write(&files, "", "");
        assert!(matches!(
            ReloadingCert::load(files),
            Err(TlsError::NoCertificate { .. })
        ));
    }
}
