//! One trusted issuer: its settings, its strict per-algorithm `Validation`s and its key cache.

use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use std::sync::Arc;

use super::cache::{KeyCache, KeyLookupError};
use super::claims::{ClaimError, ClaimSet, RegisteredClaims, reject_control_characters};
use super::replay::{self, ReplayCache, ReplayError, Reservation};
use super::token::UnverifiedToken;
use super::{IssuerSettings, VerifiedToken, VerifyError};
use crate::metrics::Metrics;

/// Clock skew tolerated on `exp`, `nbf` and `iat`. Small and explicit: the library default (60 s)
/// would keep an expired token usable for a minute.
pub const LEEWAY_SECS: u64 = 30;

/// A configured issuer, ready to verify its own tokens and nobody else's.
pub struct Issuer {
    settings: IssuerSettings,
    validations: HashMap<Algorithm, Validation>,
    keys: KeyCache,
    replays: Option<Arc<ReplayCache>>,
    metrics: Arc<Metrics>,
}

impl Issuer {
    pub fn new(settings: IssuerSettings, keys: KeyCache, metrics: Arc<Metrics>) -> Self {
        let validations = settings
            .algorithms
            .iter()
            .map(|&alg| (alg, strict_validation(&settings, alg)))
            .collect();
        let replays = settings
            .replay_protection
            .then(|| ReplayCache::new(replay::DEFAULT_CAPACITY));
        Self {
            settings,
            validations,
            keys,
            replays,
            metrics,
        }
    }

    pub fn settings(&self) -> &IssuerSettings {
        &self.settings
    }

    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }

    /// Verifies a token already routed here by its claimed `iss`.
    pub async fn verify(
        &self,
        token: &UnverifiedToken<'_>,
        now: u64,
    ) -> Result<VerifiedToken, VerifyError> {
        let algorithm = token.unverified_algorithm;
        let Some(validation) = self.validations.get(&algorithm) else {
            return Err(VerifyError::AlgorithmNotAllowed);
        };
        let key = self
            .keys
            .key(&token.unverified_key_id)
            .await
            .map_err(|e| match e {
                KeyLookupError::NotFound => VerifyError::KeyNotFound,
                KeyLookupError::Unavailable => VerifyError::KeysUnavailable,
            })?;
        if !key.allows(algorithm) {
            return Err(VerifyError::AlgorithmNotAllowed);
        }
        let signed = jsonwebtoken::decode::<ClaimSet>(token.raw, &key.key, validation)
            .map_err(|e| map_error(e.kind()))?;
        let claims = signed.claims.0;
        let registered =
            RegisteredClaims::from_claims(&claims).map_err(VerifyError::InvalidClaims)?;
        self.check_times(&registered, now)?;
        self.check_audiences(&claims)?;
        reject_control_characters(&claims).map_err(VerifyError::InvalidClaims)?;
        let reservation = self.reserve(&registered, now)?;
        Ok(VerifiedToken {
            issuer: self.settings.name.clone(),
            registered,
            claims,
            reservation,
        })
    }

    /// Every audience the token names must be one of ours. The library accepts any overlap,
    /// but a token also meant for another service could be replayed there as well as here.
    fn check_audiences(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), VerifyError> {
        use serde_json::Value;
        let ours = |value: &Value| {
            value
                .as_str()
                .is_some_and(|aud| self.settings.audiences.iter().any(|a| a == aud))
        };
        let all_ours = match claims.get("aud") {
            Some(single @ Value::String(_)) => ours(single),
            Some(Value::Array(list)) => !list.is_empty() && list.iter().all(ours),
            _ => false,
        };
        if all_ours {
            Ok(())
        } else {
            Err(VerifyError::AudienceMismatch)
        }
    }

    /// With replay protection, marks `(iss, jti)` as in use until the token expires.
    fn reserve(
        &self,
        claims: &RegisteredClaims,
        now: u64,
    ) -> Result<Option<Reservation>, VerifyError> {
        let Some(replays) = &self.replays else {
            return Ok(None);
        };
        let Some(jti) = &claims.jti else {
            return Err(VerifyError::InvalidClaims(ClaimError::Invalid("jti")));
        };
        replays
            .reserve(&claims.iss, jti, claims.exp + LEEWAY_SECS, now)
            .map(Some)
            .map_err(|error| match error {
                ReplayError::Replayed => {
                    self.metrics.replay_rejected(&self.settings.name);
                    VerifyError::Replayed
                }
                ReplayError::Full => VerifyError::ReplayCacheFull,
            })
    }

    /// What the library does not check: `iat` in the future, and lifetimes beyond the issuer's cap.
    fn check_times(&self, claims: &RegisteredClaims, now: u64) -> Result<(), VerifyError> {
        if claims.iat > now + LEEWAY_SECS {
            return Err(VerifyError::IssuedInFuture);
        }
        let max_lifetime = self.settings.max_token_lifetime.as_secs();
        // With `iat` bounded above, this also bounds `exp` to now + leeway + the maximum lifetime.
        if claims.exp.saturating_sub(claims.iat) > max_lifetime {
            return Err(VerifyError::LifetimeTooLong);
        }
        Ok(())
    }
}

/// A `Validation` from config alone: one pinned algorithm, exactly this issuer, its audiences,
/// `exp`/`iss`/`aud`/`sub` required (the library checks `iss` and `aud` only when present
/// otherwise), `nbf` checked (off by default), explicit leeway.
fn strict_validation(settings: &IssuerSettings, algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[settings.url.as_str()]);
    validation.set_audience(&settings.audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = true;
    validation.leeway = LEEWAY_SECS;
    validation
}

fn map_error(kind: &ErrorKind) -> VerifyError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => VerifyError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            VerifyError::AlgorithmNotAllowed
        }
        ErrorKind::ExpiredSignature => VerifyError::Expired,
        ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
        ErrorKind::InvalidAudience => VerifyError::AudienceMismatch,
        ErrorKind::InvalidIssuer => VerifyError::UnknownIssuer,
        ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::InvalidSubject => {
            VerifyError::InvalidClaims(super::ClaimError::Invalid("registered"))
        }
        _ => VerifyError::Malformed("encoding"),
    }
}
