//! Shipping: the RBAC that `tokenvend rbac` prints (enough, and no more, on the API stand-in),
//! `legacy-scan` against the stand-in, openapi.yaml against the router, and deploy/ in step
//! with config/ and the code.

mod deploy;
mod legacy_scan;
mod openapi;
mod rbac;
mod revoke;
mod support;
