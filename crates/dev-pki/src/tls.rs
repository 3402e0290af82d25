//! A throwaway certificate authority and HTTPS serving for loopback servers.
//!
//! The Kubernetes API stand-in must be reached over HTTPS, as kube clients insist on it; the CA
//! generated here lives only as long as the process, and its certificate is handed to clients
//! through a kubeconfig (`certificate-authority-data`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serving::ServerLimits;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a TLS handshake may take before the connection is dropped: a client that connects
/// and says nothing must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long in-flight requests get to finish once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a certificate or TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("invalid PEM: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("rustls refused the configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A self-signed CA that issues server certificates for loopback servers.
pub struct DevCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate and its private key, both PEM.
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl DevCa {
    /// A new CA (P-256 key) whose subject common name is `common_name`.
    ///
    /// # Errors
    /// Only if key generation or signing fails.
    pub fn generate(common_name: &str) -> anyhow::Result<Self> {
        Ok(Self::generate_ca(common_name)?)
    }

    fn generate_ca(common_name: &str) -> Result<Self, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate signed by this CA. SANs that parse as IP addresses ("127.0.0.1",
    /// "::1") become IP SANs, the others DNS SANs.
    ///
    /// # Errors
    /// A SAN that is neither an IP address nor a valid DNS name, or a signing failure.
    pub fn issue_server_cert(&self, sans: &[&str]) -> anyhow::Result<ServerCert> {
        Ok(self.issue(sans)?)
    }

    fn issue(&self, sans: &[&str]) -> Result<ServerCert, TlsError> {
        let names: Vec<String> = sans.iter().map(|san| (*san).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        if let Some(first) = sans.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl ServerCert {
    /// A rustls server configuration (aws-lc-rs provider, ALPN `http/1.1`) presenting this
    /// certificate.
    ///
    /// # Errors
    /// The PEM does not parse or rustls rejects the key.
    pub fn server_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        Ok(self.rustls_config()?)
    }

    fn rustls_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then stops accepting,
/// gives in-flight requests a few seconds to finish, and returns.
///
/// Each connection runs in its own task; handlers can extract `ConnectInfo<SocketAddr>` with
/// the peer address. A failed or stalled handshake drops only that connection.
///
/// # Errors
/// Only a failure of `accept` itself that is not about a single connection.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = ServerLimits {
        handshake_timeout: HANDSHAKE_TIMEOUT,
        drain_timeout: DRAIN_TIMEOUT,
        ..ServerLimits::default()
    };
    serving::serve(
        listener,
        router,
        Some(TlsAcceptor::from(config)),
        limits,
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use std::net::SocketAddr;

    fn install_provider() {
        serving::crypto::install_providers().unwrap();
    }

    async fn serve(
        ca: &DevCa,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let cert = ca
            .issue_server_cert(&["127.0.0.1", "localhost", "::1"])
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = cert.server_config().unwrap();
        let task = tokio::spawn(serve_tls(listener, config, router, async move {
            let _ = stopped.await;
        }));
        (addr, stop, task)
    }

    fn client_trusting(ca: &DevCa) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([root])
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_client_trusting_the_ca_reaches_the_router_and_sees_its_peer_address() {
        install_provider();
        let ca = DevCa::generate("tokenvend dev CA").unwrap();
        let (addr, stop, task) = serve(&ca).await;
        let body = client_trusting(&ca)
            .get(format!("https://{addr}/peer"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "127.0.0.1");
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_client_that_does_not_trust_the_ca_fails_and_the_server_keeps_serving() {
        install_provider();
        let ca = DevCa::generate("tokenvend dev CA").unwrap();
        let other = DevCa::generate("someone else").unwrap();
        let (addr, stop, task) = serve(&ca).await;
        let url = format!("https://{addr}/peer");
        assert!(client_trusting(&other).get(&url).send().await.is_err());
        let ok = client_trusting(&ca).get(&url).send().await.unwrap();
        assert!(ok.status().is_success());
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[test]
    fn the_server_config_offers_http1_only() {
        install_provider();
        let ca = DevCa::generate("ca").unwrap();
        let config = ca
            .issue_server_cert(&["localhost"])
            .unwrap()
            .server_config()
            .unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn the_ca_certificate_is_pem() {
        let ca = DevCa::generate("ca").unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
