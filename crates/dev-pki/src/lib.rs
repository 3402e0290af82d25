//! Throwaway key material for loopback servers and tests: JWT signing keys whose public halves
//! are published as a JWKS ([`keys`]), and a certificate authority that issues server
//! certificates, with HTTPS serving on top of the shared serving loop ([`tls`]). Nothing here
//! outlives the process.

pub mod keys;
pub mod tls;
