//! How an exchange ends without a token. Each variant carries what was learned before it
//! ended (the verified identity, the grant), so that the recorder writes the audit record
//! from the value itself; [`ExchangeError::outcome`] and [`ExchangeError::reason`] are the
//! one classification for the audit log and the metrics.

use std::borrow::Cow;

use super::audit::Outcome;
use crate::k8s::MintError;
use crate::oidc::{VerifiedToken, VerifyError};
use crate::policy::{Denial, Grant, Request};

/// An exchange that issued nothing.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The presented token was refused, or its issuer's keys are unavailable.
    #[error("token refused: {}", .0.metric_label())]
    Token(VerifyError),
    /// This identity's request budget is spent; a request fits again after `retry_after`
    /// seconds.
    #[error("rate limited")]
    RateLimited {
        identity: Box<VerifiedToken>,
        retry_after: u64,
    },
    /// No policy grants `request` to this identity.
    #[error("denied: {denial}")]
    Denied {
        identity: Box<VerifiedToken>,
        request: Request,
        denial: Denial,
    },
    /// A policy granted the request, but the token could not be reserved against replay: it
    /// was exchanged before ([`VerifyError::Replayed`]), or the policy's share of replay
    /// records is full ([`VerifyError::ReplayShareFull`]).
    #[error("token refused: {}", .error.metric_label())]
    NotReserved {
        identity: Box<VerifiedToken>,
        grant: Box<Grant>,
        error: VerifyError,
    },
    /// The Kubernetes API did not mint the granted token.
    #[error("token request failed: {error}")]
    Mint {
        identity: Box<VerifiedToken>,
        grant: Box<Grant>,
        error: MintError,
    },
}

impl ExchangeError {
    /// The audit record's `outcome`, and the `outcome` label of `requests_total`.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Token(error) | Self::NotReserved { error, .. } if error.is_unavailable() => {
                Outcome::Error
            }
            Self::Token(_) | Self::NotReserved { .. } => Outcome::InvalidToken,
            // The caller can fix this one by naming a service account.
            Self::Denied {
                denial: Denial::AmbiguousServiceAccount(_),
                ..
            } => Outcome::InvalidRequest,
            Self::RateLimited { .. } | Self::Denied { .. } => Outcome::Denied,
            Self::Mint { .. } => Outcome::Error,
        }
    }

    /// The audit record's `reason`, and the `reason` label of `rejections_total`: from a
    /// fixed set, never caller input.
    pub fn metric_label(&self) -> Cow<'static, str> {
        match self {
            Self::Token(error) | Self::NotReserved { error, .. } => error.metric_label().into(),
            Self::RateLimited { .. } => "rate_limited".into(),
            Self::Denied { denial, .. } => denial.metric_label().into(),
            Self::Mint { error, .. } => format!("upstream_{}", error.metric_label()).into(),
        }
    }

    /// The verified identity, when the token got that far.
    pub fn identity(&self) -> Option<&VerifiedToken> {
        match self {
            Self::Token(_) => None,
            Self::RateLimited { identity, .. }
            | Self::Denied { identity, .. }
            | Self::NotReserved { identity, .. }
            | Self::Mint { identity, .. } => Some(identity),
        }
    }

    /// The grant, when a policy granted the request.
    pub fn grant(&self) -> Option<&Grant> {
        match self {
            Self::NotReserved { grant, .. } | Self::Mint { grant, .. } => Some(grant),
            Self::Token(_) | Self::RateLimited { .. } | Self::Denied { .. } => None,
        }
    }
}
