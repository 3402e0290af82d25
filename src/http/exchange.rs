//! The exchange behind both token endpoints: verify the caller, decide by policy, mint, and
//! record the decision (audit record, metrics, one log line for a failure).

use std::time::Instant;

use secrecy::{ExposeSecret, SecretString};

use super::AppState;
use super::error::ApiError;
use super::format::Issued;
use crate::audit::{AuditRecord, Outcome, sha256_hex};
use crate::k8s::{MintRequest, MintedToken};
use crate::limits::RetryAfter;
use crate::metrics::RateLimitScope;
use crate::oidc::{VerifiedToken, VerifyError};
use crate::policy::{Denial, Grant, Request};

/// Writes the audit record, counts the request and logs a failure once.
pub(super) fn record(
    app: &AppState,
    mut audit: AuditRecord,
    result: Result<&Issued, &ApiError>,
    endpoint: &'static str,
    started: Instant,
) {
    let (outcome, reason) = outcome_of(result);
    match result {
        Ok(issued) => {
            audit.expiration_timestamp = Some(issued.minted.expiration.to_string());
            audit.token_id.clone_from(&issued.minted.token_id);
            audit.token_sha256 = Some(sha256_hex(issued.minted.token.expose_secret().as_bytes()));
            app.metrics
                .token_issued(&issued.grant.policy, ttl_seconds(&issued.minted));
        }
        Err(error) => log_failure(error),
    }
    if outcome != Outcome::Issued {
        app.metrics
            .rejected(audit.reason.as_deref().unwrap_or(&reason));
    }
    audit.write(outcome, &reason);
    app.metrics
        .request_finished(endpoint, outcome.as_str(), started.elapsed().as_secs_f64());
}

/// Verify → policy → mint for a parsed request; fills in the audit record as it goes (its
/// `reason` names a denial). `naming` says how this endpoint's caller names a service
/// account, for the message that lists its choices.
pub(super) async fn exchange_request(
    app: &AppState,
    credential: &SecretString,
    request: &Request,
    audit: &mut AuditRecord,
    naming: &str,
) -> Result<Issued, ApiError> {
    let (verified, grant) = decide_request(app, credential, request, audit, naming).await?;
    // Reserved only now that a policy grants the token, and charged to that policy's share:
    // one policy's traffic cannot fill the record for the others.
    let reservation = verified
        .reserve(&grant.policy, unix_now())
        .map_err(|error| {
            if error == VerifyError::Replayed {
                app.metrics.replay_rejected(&verified.issuer);
            }
            ApiError::InvalidToken(error)
        })?;
    let mint = MintRequest {
        service_account: grant.service_account.clone(),
        audiences: grant.audiences.clone(),
        expiration_secs: grant.expiration_secs,
    };
    let minted = app.minter.mint(&mint).await.map_err(ApiError::Upstream)?;
    if let Some(reservation) = reservation {
        reservation.commit();
    }
    audit.audiences = Some(minted.audiences.clone());
    Ok(Issued { grant, minted })
}

/// Verify → policy, without minting. With replay protection a token already exchanged is
/// refused here, but nothing is reserved: the caller reserves it for the granting policy.
pub(super) async fn decide_request(
    app: &AppState,
    credential: &SecretString,
    request: &Request,
    audit: &mut AuditRecord,
    naming: &str,
) -> Result<(VerifiedToken, Grant), ApiError> {
    let snapshot = app.snapshot();
    let verified = snapshot
        .verifier
        .verify(credential.expose_secret(), unix_now())
        .await
        .map_err(ApiError::InvalidToken)?;
    audit.issuer = Some(verified.issuer.clone());
    audit.subject = Some(AuditRecord::capped(&verified.registered.sub));
    audit.jti = verified.registered.jti.as_deref().map(AuditRecord::capped);
    tracing::debug!(issuer = %verified.issuer, subject = %audit.subject.as_deref().unwrap_or_default(), "token verified");
    // Charged before the policy runs, so denied requests spend the budget too. A refused
    // request reserved nothing: the same token may be presented again later.
    if let Err(RetryAfter(seconds)) = app
        .limits
        .admit_identity(&verified.issuer, &verified.registered.sub)
    {
        app.metrics.rate_limited(RateLimitScope::Identity);
        audit.reason = Some("rate_limited".to_owned());
        return Err(ApiError::RateLimited(seconds));
    }

    let grant = snapshot
        .policies
        .evaluate(&verified.issuer, &verified.claims, request)
        .map_err(|denial| {
            if let Some(sa) = request.service_account() {
                audit.namespace = Some(sa.namespace().to_owned());
                audit.service_account = Some(sa.name().to_owned());
            }
            audit.audiences = request.audiences().map(<[String]>::to_vec);
            audit.reason = Some(denial.reason().to_owned());
            denied(
                &verified.issuer,
                audit.subject.as_deref(),
                request,
                denial,
                naming,
            )
        })?;
    audit.policy = Some(grant.policy.clone());
    audit.namespace = Some(grant.service_account.namespace().to_owned());
    audit.service_account = Some(grant.service_account.name().to_owned());
    audit.audiences = Some(grant.audiences.clone());
    Ok((verified, grant))
}

/// The caller's view of a denial: who asked for what, never which rule nearly matched.
fn denied(
    issuer: &str,
    subject: Option<&str>,
    request: &Request,
    denial: Denial,
    naming: &str,
) -> ApiError {
    tracing::info!(reason = denial.reason(), detail = %denial, "request denied");
    if let Denial::AmbiguousServiceAccount(choices) = denial {
        let list: Vec<String> = choices.iter().map(ToString::to_string).collect();
        return ApiError::InvalidRequest(format!(
            "several service accounts are granted; name one {naming}: {}",
            list.join(", ")
        ));
    }
    let mut asked = match request.service_account() {
        Some(sa) => format!("a token for service account {sa}"),
        None => "a token".to_owned(),
    };
    if let Some(audiences) = request.audiences() {
        asked.push_str(&format!(" with audiences {audiences:?}"));
    }
    let subject = subject.unwrap_or_default();
    ApiError::AccessDenied(format!(
        "subject {subject:?} of issuer {issuer:?} may not obtain {asked}"
    ))
}

fn outcome_of(result: Result<&Issued, &ApiError>) -> (Outcome, String) {
    match result {
        Ok(_) => (Outcome::Issued, "issued".to_owned()),
        Err(ApiError::InvalidToken(error)) if error.is_unavailable() => {
            (Outcome::Error, error.reason().to_owned())
        }
        Err(ApiError::InvalidToken(error)) => (Outcome::InvalidToken, error.reason().to_owned()),
        Err(ApiError::MissingCredential) => {
            (Outcome::InvalidToken, "missing_credential".to_owned())
        }
        Err(ApiError::AccessDenied(_)) => (Outcome::Denied, "denied".to_owned()),
        Err(ApiError::RateLimited(_)) => (Outcome::Denied, "rate_limited".to_owned()),
        Err(ApiError::Overloaded) => (Outcome::Error, "overloaded".to_owned()),
        Err(ApiError::Upstream(error)) => {
            (Outcome::Error, format!("upstream_{}", error.code_label()))
        }
        Err(error) => (Outcome::InvalidRequest, error.code().to_owned()),
    }
}

fn log_failure(error: &ApiError) {
    match error {
        ApiError::InvalidToken(e) => tracing::info!(reason = e.reason(), "token refused"),
        ApiError::Upstream(e) => tracing::warn!(error = %e, "token request failed"),
        other => tracing::info!(error = %other, "request refused"),
    }
}

fn ttl_seconds(minted: &MintedToken) -> f64 {
    let remaining = minted.expiration.as_second() - jiff::Timestamp::now().as_second();
    remaining.max(0) as f64
}

fn unix_now() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or_default()
}
