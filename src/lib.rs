//! tokenvend: exchange an OIDC ID token for a short-lived Kubernetes service-account token.
//!
//! The flow of one request is the module tree: [`http`] (gate, extractors, handlers) →
//! [`oidc`] (issuer routing, keys, claims) → [`policy`] (match, grant) → [`k8s`] (TokenRequest)
//! → [`audit`] and [`metrics`].

pub mod app;
pub mod audit;
pub mod cli;
pub mod client;
pub mod config;
pub mod dev;

pub mod http;
pub mod k8s;
pub mod limits;
pub mod metrics;
pub mod offline;
pub mod oidc;
pub mod policy;
pub mod reload;
pub mod telemetry;
pub mod tls;
