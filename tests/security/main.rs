//! The attack catalogue (docs/threat-model.md), one case per row, against the real router, scripted
//! OIDC issuers (real HTTP servers serving whatever discovery and JWKS a row needs) and the
//! Kubernetes API stand-in. Every token is made here, by test code.

mod discovery;
mod harness;
mod http_gate;
mod jwt;
mod policy_claims;
mod properties;
mod replay;
