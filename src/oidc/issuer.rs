//! One trusted issuer: its settings, its strict per-algorithm `Validation`s and its key cache.

use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use std::sync::Arc;

use super::cache::{KeyCache, KeyLookupError};
use super::claims::{ClaimError, ClaimSet, RegisteredClaims, reject_control_characters};
use super::replay::{ReplayCache, ReplayTicket};
use super::token::UnverifiedToken;
use super::{IssuerSettings, VerifiedToken, VerifyError};
use crate::metrics::Metrics;
use crate::store::Store;

/// Clock skew tolerated on `exp`, `nbf` and `iat`. Small and explicit: the library default (60 s)
/// would keep an expired token usable for a minute.
pub const LEEWAY_SECS: u64 = 30;

/// The last second (Unix) at which a token expiring at `exp` is still accepted. Acceptance and
/// the replay record's lifetime both derive from it: a record kept any shorter would let the
/// token be exchanged again in its last seconds.
pub fn last_accepted_second(exp: u64) -> u64 {
    exp.saturating_add(LEEWAY_SECS)
}

/// A configured issuer, ready to verify its own tokens and nobody else's.
pub struct Issuer {
    settings: IssuerSettings,
    validations: HashMap<Algorithm, Validation>,
    keys: KeyCache,
    /// The tokens exchanged from this issuer's URL; consulted with `replayProtection` only,
    /// but kept either way so that switching it off and on again forgets nothing.
    replays: Arc<ReplayCache>,
    /// With `store:`, where the records of a replay-protected issuer are kept instead.
    store: Option<Arc<Store>>,
    metrics: Arc<Metrics>,
}

impl Issuer {
    /// `replays` is this issuer URL's record: a fresh one, or the one in force before a reload.
    pub fn new(
        settings: IssuerSettings,
        keys: KeyCache,
        replays: Arc<ReplayCache>,
        store: Option<Arc<Store>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let validations = settings
            .algorithms
            .iter()
            .map(|&alg| (alg, strict_validation(&settings, alg)))
            .collect();
        Self {
            settings,
            validations,
            keys,
            replays,
            store,
            metrics,
        }
    }

    pub fn settings(&self) -> &IssuerSettings {
        &self.settings
    }

    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }

    /// The tokens exchanged from this issuer, to carry into the next config.
    pub fn replays(&self) -> &Arc<ReplayCache> {
        &self.replays
    }

    /// Verifies a token already routed here by its claimed `iss`. With `issuing` and a shared
    /// store, whether the token was exchanged already is left to the one store round trip of
    /// the issuance ([`ReplayTicket::admit`]).
    pub async fn verify(
        &self,
        token: &UnverifiedToken<'_>,
        now: u64,
        issuing: bool,
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
        let replay = self.check_replay(&registered, now, issuing).await?;
        Ok(VerifiedToken {
            issuer: self.settings.name.clone(),
            registered,
            claims,
            replay,
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

    /// With replay protection: refuses a token already exchanged, and returns what reserves it
    /// once a policy grants it (the reservation is charged to that policy's share). The
    /// record is kept until the token can no longer be accepted.
    async fn check_replay(
        &self,
        claims: &RegisteredClaims,
        now: u64,
        issuing: bool,
    ) -> Result<Option<ReplayTicket>, VerifyError> {
        if !self.settings.replay_protection {
            return Ok(None);
        }
        let Some(jti) = &claims.jti else {
            return Err(VerifyError::InvalidClaims(ClaimError::Invalid("jti")));
        };
        let deferred = issuing && self.store.is_some();
        let recorded = match &self.store {
            Some(_) if deferred => false,
            Some(store) => store
                .replay_recorded(&crate::store::digest(&claims.iss, jti))
                .await
                .map_err(|_| VerifyError::StoreUnavailable)?,
            None => self.replays.is_recorded(&claims.iss, jti, now),
        };
        if recorded {
            self.metrics.replay_rejected(&self.settings.name);
            return Err(VerifyError::Replayed);
        }
        Ok(Some(ReplayTicket {
            cache: Arc::clone(&self.replays),
            store: self.store.clone(),
            iss: claims.iss.clone(),
            jti: jti.clone(),
            forget_at: last_accepted_second(claims.exp) + 1,
            deferred,
            reserved: None,
        }))
    }

    /// Every time claim against the one clock `now`, which also dates the replay record: the
    /// library would read the wall clock itself. Expired once `now` is past
    /// [`last_accepted_second`]; not yet valid while `nbf` or `iat` is more than the leeway
    /// ahead; refused when `exp - iat` is beyond the issuer's cap.
    fn check_times(&self, claims: &RegisteredClaims, now: u64) -> Result<(), VerifyError> {
        if now > last_accepted_second(claims.exp) {
            return Err(VerifyError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
            return Err(VerifyError::NotYetValid);
        }
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
/// otherwise). `exp` and `nbf` are checked by [`Issuer::check_times`] against the verifier's
/// clock, not here against the library's.
fn strict_validation(settings: &IssuerSettings, algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[settings.url.as_str()]);
    validation.set_audience(&settings.audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = true;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::oidc::{BoxFuture, FetchError, Fetched, KeyFetcher, KeySource, Verifier};
    use dev_pki::keys::{SigningKey, jwk_set};

    const URL: &str = "http://127.0.0.1:9";

    /// Serves one JWKS document.
    struct StaticKeys(Vec<u8>);

    impl KeyFetcher for StaticKeys {
        fn fetch(&self) -> BoxFuture<'_, Result<Fetched, FetchError>> {
            Box::pin(async move {
                Ok(Fetched {
                    body: self.0.clone(),
                    max_age: None,
                })
            })
        }
    }

    fn settings() -> IssuerSettings {
        IssuerSettings {
            name: "ci".into(),
            url: URL.into(),
            audiences: vec!["tokenvend".into()],
            algorithms: vec![Algorithm::ES256],
            key_source: KeySource::Discovery,
            ca_file: None,
            max_token_lifetime: Duration::from_secs(3600),
            require_claims: Vec::new(),
            replay_protection: true,
            key_refresh_cooldown: Duration::from_secs(60),
            max_key_staleness: crate::oidc::cache::MAX_STALENESS,
        }
    }

    async fn verifier(key: &SigningKey) -> Verifier {
        serving::crypto::install_providers().unwrap();
        let body = jwk_set(&[key]).into_bytes();
        let records = crate::oidc::ReplayRecords::default();
        let verifier = Verifier::new(&[settings()], &Arc::new(Metrics::new()), records, |_| {
            Ok(Arc::new(StaticKeys(body.clone())))
        })
        .unwrap();
        assert!(verifier.warm_up().await.is_empty());
        verifier
    }

    /// A token valid from `exp - 600` to `exp`, whatever the wall clock says.
    fn token(key: &SigningKey, exp: u64) -> String {
        let claims = json!({
            "iss": URL, "sub": "repo:acme/webapp", "aud": "tokenvend",
            "iat": exp - 600, "exp": exp, "jti": "the-jti",
        });
        key.sign(Some("JWT"), &claims).unwrap()
    }

    #[tokio::test]
    async fn a_token_stays_spent_through_the_last_second_it_is_accepted() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let verifier = verifier(&key).await;
        // Far from the wall clock: the verifier's clock alone decides.
        let exp = 4_000_000_000;
        let raw = token(&key, exp);
        let mut first = verifier.verify(&raw, exp - 300).await.unwrap();
        first
            .reserve("deploy", exp - 300)
            .await
            .unwrap()
            .unwrap()
            .commit();
        for now in [exp, exp + LEEWAY_SECS] {
            assert_eq!(
                verifier.verify(&raw, now).await.unwrap_err(),
                VerifyError::Replayed,
                "at exp + {}",
                now - exp
            );
        }
        assert_eq!(
            verifier
                .verify(&raw, exp + LEEWAY_SECS + 1)
                .await
                .unwrap_err(),
            VerifyError::Expired,
            "the record may go once the token is refused anyway"
        );
    }
}
