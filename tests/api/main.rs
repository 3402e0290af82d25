//! Integration tests: the real router on 127.0.0.1:0, the local OIDC issuer, and the
//! Kubernetes API stand-in over HTTPS through the real kube client.

mod faults;
mod formats;
mod health;
mod helpers;
mod limits;
mod metrics;
mod oauth;
mod policy;
mod reload;
mod replay;
mod slow_clients;
#[allow(dead_code, reason = "shared test support; this binary uses part of it")]
#[path = "../support/mod.rs"]
mod support;
mod token;
mod upstream;
