//! OIDC verification: from a bearer string to a verified identity, or a reason it is not one.
//!
//! Order matters (docs/threat-model.md): shape → unverified header and issuer → exactly one issuer
//! by exact `iss` → that issuer's keys only → signature and standard claims with a `Validation`
//! built from config → our own claim checks. No axum, no kube here.

mod cache;
mod claims;
mod fetch;
mod issuer;
mod jwks;
mod replay;
mod token;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

pub use cache::{
    BoxFuture, FetchError, Fetched, KeyCache, KeyFetcher, MAX_STALENESS, REFRESH_COOLDOWN,
};
pub use claims::{ClaimError, ClaimSet, RegisteredClaims};
pub use fetch::{HttpKeyFetcher, MAX_BODY_BYTES, check_endpoint_url};
pub use issuer::{Issuer, LEEWAY_SECS, last_accepted_second};
pub use jwks::{JwksError, KeyKind, MAX_KEYS, VerifyingKey, parse_key_set};
pub use replay::{DEFAULT_SHARE, ReplayCache, ReplayError, ReplayTicket, Reservation};
pub use token::{MAX_KID_LEN, MAX_TOKEN_LEN, UnverifiedToken, has_token_shape};

use crate::metrics::Metrics;
use crate::store::Store;

/// One trusted issuer, validated from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSettings {
    /// Config name, used by policies and as a metric label.
    pub name: String,
    /// The exact `iss` value (and discovery base).
    pub url: String,
    /// The incoming token must carry one of these in `aud`.
    pub audiences: Vec<String>,
    /// Signature algorithms accepted from this issuer.
    pub algorithms: Vec<Algorithm>,
    pub key_source: KeySource,
    /// Extra trust roots for this issuer's endpoints.
    pub ca_file: Option<PathBuf>,
    /// `exp - iat` above this is refused.
    pub max_token_lifetime: Duration,
    /// Every policy on this issuer must pin one of these claims.
    pub require_claims: Vec<String>,
    /// Each `(iss, jti)` may be exchanged once (per replica, or across replicas with `store:`).
    pub replay_protection: bool,
    /// The least time between two key fetches triggered by unknown `kid`s.
    pub key_refresh_cooldown: Duration,
    /// Cached keys are used for this long after the last successful fetch, then refused.
    pub max_key_staleness: Duration,
}

/// Where an issuer's keys are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `/.well-known/openid-configuration` under the issuer URL, then its `jwks_uri`.
    Discovery,
    /// A configured JWKS URL; discovery is skipped.
    JwksUrl(String),
}

/// Why a token was not accepted. Callers see only [`VerifyError::category`]; the
/// [`VerifyError::reason`] is for logs, metrics and the audit record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed token ({0})")]
    Malformed(&'static str),
    #[error("issuer not configured")]
    UnknownIssuer,
    #[error("algorithm not allowed for this issuer")]
    AlgorithmNotAllowed,
    #[error("no key with this kid in the issuer's key set")]
    KeyNotFound,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("token lifetime longer than the issuer allows")]
    LifetimeTooLong,
    #[error("audience not accepted")]
    AudienceMismatch,
    #[error("claims refused: {0}")]
    InvalidClaims(ClaimError),
    #[error("issuer keys unavailable")]
    KeysUnavailable,
    #[error("token already exchanged")]
    Replayed,
    #[error("the granting policy's share of replay records is full")]
    ReplayShareFull,
    #[error("the shared store holding replay records is unavailable")]
    StoreUnavailable,
}

impl VerifyError {
    /// A fixed internal reason code (metric label, audit `reason`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownIssuer => "unknown_issuer",
            Self::AlgorithmNotAllowed => "alg_not_allowed",
            Self::KeyNotFound => "unknown_kid",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "iat_in_future",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::AudienceMismatch => "audience_mismatch",
            Self::InvalidClaims(ClaimError::ControlCharacter) => "control_characters",
            Self::InvalidClaims(ClaimError::Invalid(_)) => "invalid_claims",
            Self::KeysUnavailable => "keys_unavailable",
            Self::Replayed => "replayed",
            Self::ReplayShareFull => "replay_share_full",
            Self::StoreUnavailable => "store_unavailable",
        }
    }

    /// The one phrase a caller may read: a category, never input bytes or library text.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Expired => "the token has expired",
            Self::NotYetValid | Self::IssuedInFuture => "the token is not yet valid",
            Self::AudienceMismatch => "the token's audience is not accepted",
            Self::UnknownIssuer => "the token's issuer is not trusted",
            Self::AlgorithmNotAllowed | Self::KeyNotFound | Self::BadSignature => {
                "the token's signature could not be verified"
            }
            Self::Malformed(_) | Self::LifetimeTooLong | Self::InvalidClaims(_) => {
                "the token is malformed"
            }
            Self::KeysUnavailable => "the issuer's keys are unavailable; try again later",
            Self::Replayed => "the token has already been used",
            Self::ReplayShareFull => {
                "too many tokens were exchanged under this policy recently; try again later"
            }
            Self::StoreUnavailable => {
                "the token cannot be checked against earlier exchanges right now; try again later"
            }
        }
    }

    /// Whether the failure is ours, not the token's: the caller should retry later (503).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::KeysUnavailable | Self::ReplayShareFull | Self::StoreUnavailable
        )
    }
}

/// An identity that passed verification.
#[derive(Debug)]
pub struct VerifiedToken {
    /// The issuer's config name.
    pub issuer: String,
    pub registered: RegisteredClaims,
    /// All claims, as signed.
    pub claims: Map<String, Value>,
    /// With replay protection: what reserves the token once a policy grants it.
    pub replay: Option<ReplayTicket>,
}

impl VerifiedToken {
    /// With replay protection, reserves the token for the policy that granted it, to commit
    /// once a token was issued (dropping the reservation releases it); `None` without.
    ///
    /// # Errors
    /// [`VerifyError::Replayed`] when another request reserved the token first;
    /// [`VerifyError::ReplayShareFull`] when `policy` holds its whole share of records;
    /// [`VerifyError::StoreUnavailable`] when the shared store did not answer in time.
    pub async fn reserve(
        &mut self,
        policy: &str,
        now: u64,
    ) -> Result<Option<Reservation>, VerifyError> {
        let Some(ticket) = &mut self.replay else {
            return Ok(None);
        };
        ticket
            .reserve(policy, now)
            .await
            .map(Some)
            .map_err(|error| match error {
                ReplayError::Replayed => VerifyError::Replayed,
                ReplayError::ShareFull => VerifyError::ReplayShareFull,
                ReplayError::StoreUnavailable => VerifyError::StoreUnavailable,
            })
    }
}

/// The replay records a verifier starts with, by issuer URL, and the share each granting
/// policy gets in a record made anew. Carried from one verifier to the next on reload, so
/// that a config change forgets no exchanged token. With a shared store, replay-protected
/// issuers keep their records there instead.
#[derive(Debug, Clone)]
pub struct ReplayRecords {
    share: usize,
    by_url: HashMap<String, Arc<ReplayCache>>,
    store: Option<Arc<Store>>,
}

impl Default for ReplayRecords {
    fn default() -> Self {
        Self::with_share(DEFAULT_SHARE)
    }
}

impl ReplayRecords {
    /// No records yet; each granting policy may hold `share` records per issuer.
    pub fn with_share(share: usize) -> Self {
        Self {
            share,
            by_url: HashMap::new(),
            store: None,
        }
    }

    /// Keeps the records of replay-protected issuers in the shared store.
    #[must_use]
    pub fn with_store(mut self, store: Option<Arc<Store>>) -> Self {
        self.store = store;
        self
    }

    /// The record for `url`: the one carried over, else a new one.
    fn take(&mut self, url: &str) -> Arc<ReplayCache> {
        self.by_url
            .remove(url)
            .unwrap_or_else(|| ReplayCache::new(self.share))
    }
}

/// Verifies tokens against the configured issuers.
pub struct Verifier {
    by_url: HashMap<String, Arc<Issuer>>,
    /// Records of issuers no longer configured, kept while they hold unexpired tokens: an
    /// issuer removed and added back within a token's lifetime forgets nothing either.
    dormant: ReplayRecords,
}

impl Verifier {
    /// One key cache per issuer, each fetching through `fetcher_for(settings)`; each issuer's
    /// replay record taken from `records` by URL (else made anew).
    pub fn new(
        issuers: &[IssuerSettings],
        metrics: &Arc<Metrics>,
        mut records: ReplayRecords,
        mut fetcher_for: impl FnMut(&IssuerSettings) -> anyhow::Result<Arc<dyn KeyFetcher>>,
    ) -> anyhow::Result<Self> {
        let mut by_url = HashMap::with_capacity(issuers.len());
        for settings in issuers {
            let cache = KeyCache::new(&settings.name, fetcher_for(settings)?, Arc::clone(metrics))
                .with_cooldown(settings.key_refresh_cooldown)
                .with_max_staleness(settings.max_key_staleness);
            let replays = records.take(&settings.url);
            by_url.insert(
                settings.url.clone(),
                Arc::new(Issuer::new(
                    settings.clone(),
                    cache,
                    replays,
                    records.store.clone(),
                    Arc::clone(metrics),
                )),
            );
        }
        Ok(Self {
            by_url,
            dormant: records,
        })
    }

    /// Verifiers fetching over HTTP(S), the production wiring.
    pub fn over_http(
        issuers: &[IssuerSettings],
        metrics: &Arc<Metrics>,
        records: ReplayRecords,
    ) -> anyhow::Result<Self> {
        Self::new(issuers, metrics, records, |settings| {
            Ok(Arc::new(HttpKeyFetcher::new(settings)?))
        })
    }

    /// The replay records to carry into the verifier that replaces this one, by issuer URL:
    /// every configured issuer's, and a dormant one while it holds a token unexpired at
    /// `now` or is still in use (by a request on an older config).
    pub fn replay_records(&self, now: u64) -> ReplayRecords {
        let dormant = self
            .dormant
            .by_url
            .iter()
            .filter(|(_, cache)| Arc::strong_count(cache) > 1 || cache.has_live_records(now));
        let by_url = self
            .by_url
            .iter()
            .map(|(url, issuer)| (url, issuer.replays()))
            .chain(dormant)
            .map(|(url, cache)| (url.clone(), Arc::clone(cache)))
            .collect();
        ReplayRecords {
            share: self.dormant.share,
            by_url,
            store: self.dormant.store.clone(),
        }
    }

    /// Verifies `raw` at time `now` (Unix seconds).
    pub async fn verify(&self, raw: &str, now: u64) -> Result<VerifiedToken, VerifyError> {
        self.verify_as(raw, now, false).await
    }

    /// Verifies `raw` for an issuance: with a shared store, whether a replay-protected token
    /// was exchanged already is not looked up here but by [`ReplayTicket::admit`], in the
    /// same round trip as the rate limit and the reservation.
    pub async fn verify_for_issue(
        &self,
        raw: &str,
        now: u64,
    ) -> Result<VerifiedToken, VerifyError> {
        self.verify_as(raw, now, true).await
    }

    async fn verify_as(
        &self,
        raw: &str,
        now: u64,
        issuing: bool,
    ) -> Result<VerifiedToken, VerifyError> {
        let token = UnverifiedToken::parse(raw)?;
        let Some(issuer) = self.by_url.get(&token.unverified_issuer) else {
            return Err(VerifyError::UnknownIssuer);
        };
        issuer.verify(&token, now, issuing).await
    }

    /// Loads every issuer's keys once; returns the names of issuers whose keys could not be loaded.
    pub async fn warm_up(&self) -> Vec<String> {
        let mut failed = Vec::new();
        for issuer in self.by_url.values() {
            if !issuer.keys().refresh().await {
                failed.push(issuer.settings().name.clone());
            }
        }
        failed
    }

    /// The issuers, for readiness reporting.
    pub fn issuers(&self) -> impl Iterator<Item = &Arc<Issuer>> {
        self.by_url.values()
    }
}
