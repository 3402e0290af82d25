//! tokenvend: exchange an OIDC ID token for a short-lived Kubernetes service-account token.
//!
//! The flow of one request is the module tree (docs/architecture.md draws it):
//! [`service`] (listeners, reloads) → [`http`] (extractors, handlers, errors) → [`exchange`]
//! (verify with [`oidc`], decide with [`policy`], mint with [`k8s`], record with [`metrics`]
//! and the audit log). [`config`] loads what they run on; [`cli`] and [`client`] are the
//! command line and the `token` subcommand.

pub mod cli;
pub mod client;
pub mod config;
pub mod dev;
pub mod exchange;
pub mod http;
pub mod k8s;
pub mod metrics;
pub mod oidc;
pub mod policy;
pub mod service;
pub mod store;
pub mod telemetry;
