//! Serving: from a loaded config to bound listeners (public and admin) running the routers of
//! [`crate::http`], plus what keeps a running service current: TLS certificate reloads, config
//! reloads, the Kubernetes API probe, and the sweeper of expired token bindings. The accept loop itself and the crypto provider setup
//! live in a small crate under `crates/`, shared with `tokenvend dev`.

mod app;
mod reload;
mod signal;
pub mod sweep;
pub mod tls;

pub use app::{Application, DEFAULT_SHUTDOWN_GRACE_PERIOD, Listen, ServeOptions};
pub use signal::shutdown_signal;
pub use sweep::{SweepReport, Sweeper};
pub use tls::TlsFiles;

/// The request limits are serve options: re-exported where the options are.
pub use crate::exchange::LimitSettings;
