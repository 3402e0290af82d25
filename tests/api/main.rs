//! Integration tests: the real router on 127.0.0.1:0, the local OIDC issuer, and the
//! Kubernetes API stand-in over HTTPS through the real kube client.

mod faults;
mod formats;
mod health;
mod limits;
mod metrics;
mod oauth;
mod policy;
mod reload;
mod replay;
mod revoke;
mod slow_clients;
mod token;
mod upstream;
