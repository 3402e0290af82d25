//! tokenvend: exchange an OIDC ID token for a short-lived Kubernetes service-account token.

pub mod dev;
