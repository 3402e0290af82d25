//! What tokenvend's test binaries share (a dev-dependency of the product, never a dependency):
//! [`app`] starts the service in-process against the local OIDC issuer and the Kubernetes API
//! stand-in, and [`sandbox`] keeps tests from leaving anything behind (temporary directories,
//! a private HOME, child processes killed on drop) and names a missing outside tool, and
//! [`logs`] captures what the test's own process logged at WARN and above, and [`redis`]
//! runs a real `redis-server` per test for the shared-store tests.

pub mod app;
pub mod logs;
pub mod redis;
pub mod sandbox;
