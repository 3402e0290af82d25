//! Serving: from a loaded config to bound listeners (public and admin) running the routers of
//! [`crate::http`], plus what keeps a running service current: TLS certificate reloads, config
//! reloads, and the Kubernetes API probe. The accept loop itself and the crypto provider setup
//! live in a small crate under `crates/`, shared with `tokenvend dev`.

mod app;
mod reload;
mod signal;
pub mod tls;

pub use app::{Application, DEFAULT_SHUTDOWN_GRACE_PERIOD, Listen, ServeOptions};
pub use signal::shutdown_signal;
pub use tls::TlsFiles;

/// The request limits are serve options: re-exported where the options are.
pub use crate::exchange::LimitSettings;
