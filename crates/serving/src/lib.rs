//! What tokenvend and the servers of `tokenvend dev` and the tests share: the serving loop
//! ([`serve`], with the connection-level limits `axum::serve` does not set) and the process's
//! crypto provider setup ([`crypto::install_providers`]).

pub mod crypto;
mod server;

pub use server::{ServerLimits, serve};
