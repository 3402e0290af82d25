//! The embedded default: a local OIDC issuer and a Kubernetes API stand-in, for `tokenvend dev`
//! and the tests. Loopback only; nothing here is used by `serve`.

pub mod apiserver;
pub mod issuer;
pub mod keys;
pub mod session;
pub mod tls;

pub use session::{DevArgs, run};
