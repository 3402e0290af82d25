//! TLS on the public listener: a generated certificate is served, and after its files are
//! rotated new connections get the new certificate while an open connection keeps working.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dev_pki::tls::{DevCa, ServerCert};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokenvend::service::{ServeOptions, TlsFiles};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use test_support::app::{CONFIG, spawn_app_serving, webapp_claims};
use test_support::logs::warnings;
use test_support::sandbox::TempDir;

/// Replaces both files the way a Secret volume update does: each one atomically.
fn install(cert: &ServerCert, files: &TlsFiles) {
    for (path, pem) in [(&files.cert, &cert.cert_pem), (&files.key, &cert.key_pem)] {
        let staged = path.with_extension("new");
        std::fs::write(&staged, pem).unwrap();
        std::fs::rename(&staged, path).unwrap();
    }
}

fn leaf_der(cert: &ServerCert) -> Vec<u8> {
    CertificateDer::from_pem_slice(cert.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn connector(ca: &DevCa) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn connect(connector: &TlsConnector, address: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

fn presented(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// `GET /healthz` on an open keep-alive connection; returns the status line.
async fn healthz(stream: &mut TlsStream<TcpStream>) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 1024];
    while !response.ends_with(br#""ok"}"#) {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(
            read > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8(response).unwrap();
    text.lines().next().unwrap().to_owned()
}

fn temp_dir(name: &str) -> (TempDir, TlsFiles) {
    let dir = TempDir::new(name);
    let files = TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    (dir, files)
}

#[tokio::test]
async fn a_rotated_certificate_is_presented_to_new_connections_without_dropping_open_ones() {
    serving::crypto::install_providers().unwrap();
    let ca = DevCa::generate("tokenvend test CA").unwrap();
    let first = ca.issue_server_cert(&["localhost", "127.0.0.1"]).unwrap();
    let (_dir, files) = temp_dir("tls-rotation");
    install(&first, &files);
    let options = ServeOptions {
        tls: Some(files.clone()),
        tls_poll_interval: Duration::from_millis(100),
        ..ServeOptions::default()
    };
    let app = spawn_app_serving(CONFIG, |_| {}, options).await;
    let address = app.address.strip_prefix("https://").unwrap().to_owned();

    // A token exchange over TLS, by a client that trusts the CA.
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let response = client
        .post(format!("{}/v1/token", app.address))
        .bearer_auth(app.id_token(webapp_claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let connector = connector(&ca);
    let mut open = connect(&connector, &address).await;
    assert_eq!(presented(&open), leaf_der(&first));
    assert_eq!(healthz(&mut open).await, "HTTP/1.1 200 OK");

    let second = ca.issue_server_cert(&["localhost", "127.0.0.1"]).unwrap();
    install(&second, &files);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fresh = connect(&connector, &address).await;
        if presented(&fresh) == leaf_der(&second) {
            break;
        }
        assert_eq!(presented(&fresh), leaf_der(&first));
        assert!(
            Instant::now() < deadline,
            "the new certificate was never presented"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection opened before the rotation still serves requests, with its old certificate.
    assert_eq!(healthz(&mut open).await, "HTTP/1.1 200 OK");
    assert_eq!(presented(&open), leaf_der(&first));
    drop(open);
    app.stop().await;
}

#[tokio::test]
async fn a_broken_rotation_keeps_the_previous_certificate() {
    serving::crypto::install_providers().unwrap();
    warnings();
    let ca = DevCa::generate("tokenvend test CA").unwrap();
    let first = ca.issue_server_cert(&["localhost", "127.0.0.1"]).unwrap();
    let (_dir, files) = temp_dir("tls-broken");
    install(&first, &files);
    let options = ServeOptions {
        tls: Some(files.clone()),
        tls_poll_interval: Duration::from_millis(100),
        ..ServeOptions::default()
    };
    let app = spawn_app_serving(CONFIG, |_| {}, options).await;
    let address = app.address.strip_prefix("https://").unwrap().to_owned();
    std::fs::write(&files.cert, "not a certificate").unwrap();
    // The reloader saw the broken pair and refused it (its warning names the file)...
    let refused = format!("{} holds no PEM certificate", files.cert.display());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !warnings().contains(&refused) {
        assert!(
            Instant::now() < deadline,
            "the broken pair was never refused; warnings:\n{}",
            warnings()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and the previous certificate is still served.
    let connector = connector(&ca);
    let mut stream = connect(&connector, &address).await;
    assert_eq!(presented(&stream), leaf_der(&first));
    assert_eq!(healthz(&mut stream).await, "HTTP/1.1 200 OK");
    drop(stream);
    app.stop().await;
}
