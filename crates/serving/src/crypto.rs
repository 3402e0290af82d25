//! One crypto stack for the whole process: aws-lc-rs, for rustls (kube, reqwest, our TLS) and
//! for jsonwebtoken. Two providers in the tree compile fine and then panic at run time, so
//! both are checked at startup.

/// Installs aws-lc-rs as rustls's process default and checks that jsonwebtoken has a provider.
/// Idempotent.
pub fn install_providers() -> anyhow::Result<()> {
    // Err means a provider is already installed; what matters is that one is.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    anyhow::ensure!(
        rustls::crypto::CryptoProvider::get_default().is_some(),
        "no rustls crypto provider is installed"
    );
    anyhow::ensure!(
        jsonwebtoken::crypto::CryptoProvider::try_get_default().is_some(),
        "jsonwebtoken has no crypto provider: exactly one backend feature must be enabled"
    );
    Ok(())
}
