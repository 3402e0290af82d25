//! `tokenvend dev`: the local OIDC issuer (crates/local-issuer), the Kubernetes API stand-in
//! (crates/kube-standin) and the service, wired together on loopback. The two dev servers live
//! in their own crates; this module only starts and connects them. Nothing here is used by
//! `serve`.

pub mod session;

pub use session::{DevArgs, run};
