//! The exchange: a presented ID token and a parsed request in, a typed outcome out. It
//! verifies the token ([`crate::oidc`]), charges the identity's request budget ([`Limits`]),
//! decides by policy ([`crate::policy`]), reserves the token against replay and mints
//! ([`crate::k8s`]). It knows no HTTP: the `http` module parses requests and renders results,
//! and every result, success or failure, is written by [`Exchange::record`] into the audit
//! log and the metrics.

mod audit;
mod error;
mod limits;
mod record;
mod revoke;
mod snapshot;

use std::sync::{Arc, RwLock};

use secrecy::{ExposeSecret, SecretString};

pub use audit::{Outcome, sha256_hex};
pub use error::ExchangeError;
pub use limits::{InFlight, LimitSettings, Limits, RetryAfter};
pub use record::{Caller, Ended, Endpoint, Refusal};
pub use revoke::{DeleteRefused, NotRevoked, Revocation, RevokeUnavailable, Revoked, Unavailable};
pub use snapshot::Snapshot;

use crate::k8s::{Bindings, MintRequest, MintedToken, Minter, NewBinding};
use crate::metrics::{Metrics, RateLimitScope};
use crate::oidc::{ReplayError, VerifiedToken, VerifyError};
use crate::policy::{Grant, Request, Trace};

/// The exchange and what it runs on: the config in force, the minter, the limits and the
/// metrics. Shared by every request.
pub struct Exchange {
    current: RwLock<Arc<Snapshot>>,
    minter: Arc<dyn Minter>,
    bindings: Arc<dyn Bindings>,
    metrics: Arc<Metrics>,
    limits: Limits,
    /// Revocations under way ([`revoke::MAX_CONCURRENT_REVOCATIONS`]).
    revocations: tokio::sync::Semaphore,
}

/// A decision to issue, before anything is minted (`dryRun=true` stops here).
#[derive(Debug)]
pub struct Decision {
    pub identity: VerifiedToken,
    pub grant: Grant,
}

/// A successful exchange: who asked, the decision, and what the API server minted.
#[derive(Debug)]
pub struct Issued {
    pub identity: VerifiedToken,
    pub grant: Grant,
    pub minted: MintedToken,
}

/// What a verified caller may request (`GET /v1/grants`), templates rendered for it.
#[derive(Debug)]
pub struct Listed {
    pub identity: VerifiedToken,
    pub grants: Vec<Entitlement>,
}

/// One policy that applies to a caller.
#[derive(Debug)]
pub struct Entitlement {
    pub policy: String,
    /// NAMESPACE/NAME.
    pub service_accounts: Vec<String>,
    /// `None`: only the API server's own audiences.
    pub audiences: Option<Vec<String>>,
    pub ttl_secs: u64,
    pub max_ttl_secs: u64,
    /// `grant.revocable`: its tokens are bound to Secrets and can be revoked.
    pub revocable: bool,
}

impl Exchange {
    /// An exchange running on `snapshot` until [`Exchange::replace`] puts another in force;
    /// `bindings` makes the calls of revocable tokens (revocation, the sweeper).
    pub fn new(
        snapshot: Snapshot,
        minter: Arc<dyn Minter>,
        bindings: Arc<dyn Bindings>,
        metrics: Arc<Metrics>,
        limits: Limits,
    ) -> Self {
        Self {
            current: RwLock::new(Arc::new(snapshot)),
            minter,
            bindings,
            metrics,
            limits,
            revocations: tokio::sync::Semaphore::new(revoke::MAX_CONCURRENT_REVOCATIONS),
        }
    }

    pub fn bindings(&self) -> &Arc<dyn Bindings> {
        &self.bindings
    }

    /// The config in force; a request keeps the snapshot it started with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Puts a new config in force for the requests that start from now on.
    pub fn replace(&self, snapshot: Snapshot) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot);
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Verify → budget → policy → reserve → mint.
    ///
    /// # Errors
    /// Every way the exchange can end without a token: see [`ExchangeError`].
    pub async fn issue(
        &self,
        credential: &SecretString,
        request: &Request,
    ) -> Result<Issued, ExchangeError> {
        let Decision {
            mut identity,
            grant,
        } = self.decide_as(credential, request, true).await?;
        // Reserved only now that a policy grants the token, and charged to that policy's share:
        // one policy's traffic cannot fill the record for the others.
        let reservation = match identity.reserve(&grant.policy, unix_now()).await {
            Ok(reservation) => reservation,
            Err(error) => {
                if error == VerifyError::Replayed {
                    self.metrics.replay_rejected(&identity.issuer);
                }
                return Err(ExchangeError::NotReserved {
                    identity: Box::new(identity),
                    grant: Box::new(grant),
                    error,
                });
            }
        };
        let mint = MintRequest {
            service_account: grant.service_account.clone(),
            audiences: grant.audiences.clone(),
            expiration_secs: grant.expiration_secs,
            binding: grant.revocable.then(|| NewBinding {
                policy: crate::policy::policy_label(&grant.policy),
                issuer: identity.issuer.clone(),
                iss: identity.registered.iss.clone(),
                sub: identity.registered.sub.clone(),
            }),
        };
        let minted = match self.minter.mint(&mint).await {
            Ok(minted) => minted,
            Err(error) => {
                // Released before the caller hears of it, so that a retry is not a replay.
                if let Some(reservation) = reservation {
                    reservation.release().await;
                }
                return Err(ExchangeError::Mint {
                    identity: Box::new(identity),
                    grant: Box::new(grant),
                    error,
                });
            }
        };
        if let Some(reservation) = reservation {
            reservation.commit();
        }
        Ok(Issued {
            identity,
            grant,
            minted,
        })
    }

    /// Verify → budget → policy, without minting. With replay protection a token already
    /// exchanged is refused here, but nothing is reserved: [`Exchange::issue`] reserves it for
    /// the granting policy.
    ///
    /// # Errors
    /// [`ExchangeError::Token`], [`ExchangeError::RateLimited`] or [`ExchangeError::Denied`].
    pub async fn decide(
        &self,
        credential: &SecretString,
        request: &Request,
    ) -> Result<Decision, ExchangeError> {
        self.decide_as(credential, request, false).await
    }

    /// [`Exchange::decide`]; `issuing` for [`Exchange::issue`]: with a shared store, a
    /// replay-protected token is looked up, charged to the budget and reserved in one round
    /// trip before the policy runs, and released again when no policy grants it.
    async fn decide_as(
        &self,
        credential: &SecretString,
        request: &Request,
        issuing: bool,
    ) -> Result<Decision, ExchangeError> {
        let snapshot = self.snapshot();
        let mut identity = self.verify(&snapshot, credential, issuing).await?;
        // Charged before the policy runs, so denied requests spend the budget too. A refused
        // request reserved nothing: the same token may be presented again later.
        let limited = match identity.replay.as_mut().filter(|t| t.is_deferred()) {
            Some(ticket) => {
                let bucket = self
                    .limits
                    .shared_bucket(&identity.issuer, &identity.registered.sub);
                match ticket
                    .admit(bucket.as_ref().map(|(d, rate, burst)| (d, *rate, *burst)))
                    .await
                {
                    Ok(limited) => limited,
                    Err(error) => {
                        let error = match error {
                            ReplayError::Replayed => {
                                self.metrics.replay_rejected(&identity.issuer);
                                VerifyError::Replayed
                            }
                            ReplayError::ShareFull => VerifyError::ReplayShareFull,
                            ReplayError::StoreUnavailable => VerifyError::StoreUnavailable,
                        };
                        return Err(ExchangeError::Token(error));
                    }
                }
            }
            None => self
                .limits
                .admit_identity(&identity.issuer, &identity.registered.sub)
                .await
                .err()
                .map(|RetryAfter(seconds)| seconds),
        };
        if let Some(seconds) = limited {
            self.metrics.rate_limited(RateLimitScope::Identity);
            return Err(ExchangeError::RateLimited {
                identity: Box::new(identity),
                retry_after: seconds,
            });
        }
        match snapshot
            .policies
            .evaluate(&identity.issuer, &identity.claims, request)
        {
            Ok(grant) => Ok(Decision { identity, grant }),
            Err(denial) => {
                // Released before the caller hears of it, so that a retry is not a replay.
                if let Some(ticket) = identity.replay.as_mut() {
                    ticket.release().await;
                }
                tracing::info!(reason = denial.metric_label(), detail = %denial, "request denied");
                Err(ExchangeError::Denied {
                    identity: Box::new(identity),
                    request: request.clone(),
                    denial,
                })
            }
        }
    }

    /// What the caller may request. Listing is not an exchange: with replay protection,
    /// nothing is reserved, and no request budget is spent.
    ///
    /// # Errors
    /// [`ExchangeError::Token`].
    pub async fn list(&self, credential: &SecretString) -> Result<Listed, ExchangeError> {
        let snapshot = self.snapshot();
        let identity = self.verify(&snapshot, credential, false).await?;
        let grants = snapshot
            .policies
            .applicable(&identity.issuer, &identity.claims, &mut Trace::off())
            .into_iter()
            .map(|applicable| Entitlement {
                policy: applicable.policy.name.clone(),
                service_accounts: applicable
                    .service_accounts
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                audiences: applicable.policy.grant.audiences.clone(),
                ttl_secs: applicable.policy.grant.ttl_secs,
                max_ttl_secs: applicable.policy.grant.max_ttl_secs,
                revocable: applicable.policy.grant.revocable,
            })
            .collect();
        Ok(Listed { identity, grants })
    }

    async fn verify(
        &self,
        snapshot: &Snapshot,
        credential: &SecretString,
        issuing: bool,
    ) -> Result<VerifiedToken, ExchangeError> {
        let raw = credential.expose_secret();
        let verified = if issuing {
            snapshot.verifier.verify_for_issue(raw, unix_now()).await
        } else {
            snapshot.verifier.verify(raw, unix_now()).await
        };
        let identity = verified.map_err(ExchangeError::Token)?;
        tracing::debug!(issuer = %identity.issuer, subject = %audit::capped(&identity.registered.sub), "token verified");
        Ok(identity)
    }
}

fn unix_now() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or_default()
}
