//! Revocation (`POST /oauth2/revoke`): a presented service-account token in, its binding
//! Secret deleted out. Nothing in the token is trusted until the API server's TokenReview
//! says it is genuine and current. Even then the review proves only that the API server
//! signed the token: anyone who may create tokens in a namespace can bind one to any Secret
//! there. So the binding its claims name is deleted only through a selector that also names
//! the reviewed service account (the binding's `tokenvend.io/service-account` label), the
//! binding type and tokenvend's label, and only if the Secret still has the uid the token was
//! bound to. Whatever the token was, the caller
//! learns nothing about it (RFC 7009 §2.2): the HTTP layer answers 200 for every
//! [`Revoked`] value.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::Exchange;
use super::audit::sha256_hex;
use crate::k8s::binding::NAME_PREFIX;
use crate::k8s::{BoundSecret, Deleted, MintError, Review};
use crate::policy::is_dns1123_label;

/// When the API server names no wait, a caller is told to retry after this long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest wait passed on from the API server.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A binding deleted: the token it bound is refused by the API server from now on (after its
/// authentication cache, about 10 s).
#[derive(Debug, Clone)]
pub struct Revocation {
    pub binding: BoundSecret,
    pub service_account: String,
    /// The revoked token's `jti`.
    pub token_id: Option<String>,
    pub token_sha256: String,
}

/// Why nothing was deleted (the caller gets 200 all the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRevoked {
    /// Not a token bound to a binding Secret (not a JWT, another kind of token, or a Secret
    /// tokenvend did not create).
    NotRevocable,
    /// The API server does not accept the token: forged, expired, or revoked already.
    Unauthenticated,
    /// Genuine a moment ago, but its binding was replaced by the time of the delete.
    AlreadyRevoked,
    /// Genuine, but no binding of its service account has the name its claims give: gone
    /// already, or a Secret that is not such a binding (another account's binding, another
    /// type, not tokenvend's).
    NoBinding,
}

impl NotRevoked {
    /// The audit record's `reason`.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::NotRevocable => "not_revocable",
            Self::Unauthenticated => "unauthenticated",
            Self::AlreadyRevoked => "already_revoked",
            Self::NoBinding => "no_binding",
        }
    }
}

/// What a revocation request did.
#[derive(Debug, Clone)]
pub enum Revoked {
    Now(Revocation),
    Nothing(NotRevoked),
    /// The API server refused the delete for good (403 from RBAC or the admission policy,
    /// 400, 422, ...): nothing was deleted and a retry would not change that. The caller gets
    /// 200 all the same (a 503 here would tell it that its token passed the review); the
    /// operator gets an error in the log and the audit record.
    Refused(DeleteRefused),
}

/// A delete the API server refused for good.
#[derive(Debug, Clone)]
pub struct DeleteRefused {
    pub binding: BoundSecret,
    pub service_account: String,
    /// The API server's answer (its code, reason and message; never the token).
    pub error: String,
    /// `upstream_` and the API server's code.
    pub reason: String,
}

/// How many revocations may wait for a TokenReview (and their delete) at once. Anyone can
/// send a revocation request; this bounds the load they can put on the API server through
/// tokenvend.
pub const MAX_CONCURRENT_REVOCATIONS: usize = 16;

/// The revocation could not be decided now: nothing was deleted, and the same request can be
/// sent again.
#[derive(Debug, thiserror::Error)]
#[error("{cause}")]
pub struct RevokeUnavailable {
    pub cause: Unavailable,
    /// Whole seconds the caller should wait before retrying.
    pub retry_after: u64,
}

/// Why a revocation could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The Kubernetes API could not be asked (unreachable, timed out, throttled, failing).
    #[error("{0}")]
    Api(MintError),
    /// [`MAX_CONCURRENT_REVOCATIONS`] revocations are under way; this one was turned away
    /// before its token was looked at.
    #[error("too many revocations are waiting for the Kubernetes API")]
    Busy,
}

impl RevokeUnavailable {
    /// The recorder's `reason`: `upstream_` and the API server's code, `timeout` or
    /// `transport`; `revoke_busy` over the concurrency cap.
    pub fn metric_label(&self) -> String {
        match &self.cause {
            Unavailable::Api(error) => format!("upstream_{}", error.metric_label()),
            Unavailable::Busy => "revoke_busy".to_owned(),
        }
    }

    fn busy() -> Self {
        Self {
            cause: Unavailable::Busy,
            retry_after: DEFAULT_RETRY_AFTER.as_secs(),
        }
    }
}

impl From<MintError> for RevokeUnavailable {
    fn from(error: MintError) -> Self {
        let retry_after = match &error {
            MintError::Api {
                retry_after: Some(wait),
                ..
            } => *wait,
            _ => DEFAULT_RETRY_AFTER,
        };
        Self {
            cause: Unavailable::Api(error),
            retry_after: retry_after.as_secs().clamp(1, MAX_RETRY_AFTER.as_secs()),
        }
    }
}

/// The claims revocation reads from a token before the TokenReview: unverified, they only
/// choose what to review and, once the review authenticated the token, what to delete.
#[derive(Debug, Deserialize)]
struct UnverifiedClaims {
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    jti: Option<String>,
    /// Every service-account token has one; NumericDate, possibly with a fraction.
    #[serde(default)]
    exp: Option<f64>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<PrivateClaims>,
}

#[derive(Debug, Deserialize)]
struct PrivateClaims {
    namespace: Option<String>,
    secret: Option<ObjectRef>,
    serviceaccount: Option<ObjectRef>,
}

#[derive(Debug, Deserialize)]
struct ObjectRef {
    name: Option<String>,
    uid: Option<String>,
}

/// What a token names, read from its claims before the review.
#[derive(Debug, PartialEq, Eq)]
struct Named {
    audiences: Vec<String>,
    binding: BoundSecret,
    service_account: String,
    token_id: Option<String>,
}

/// The binding a token's claims name, if they name one tokenvend could have created and the
/// token has not expired by its own account (at `now`, Unix seconds): a token that says it
/// has expired is not worth a TokenReview, whatever its signature.
fn named_binding(token: &str, now: i64) -> Option<Named> {
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<UnverifiedClaims>(token).ok()?;
    #[allow(clippy::cast_precision_loss)] // Unix seconds are far below 2^52
    let current = claims.exp? > now as f64;
    if !current {
        return None;
    }
    let audiences = match claims.aud? {
        serde_json::Value::String(one) => vec![one],
        serde_json::Value::Array(many) => many
            .into_iter()
            .map(|value| value.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    let private = claims.kubernetes?;
    let namespace = private.namespace?;
    let secret = private.secret?;
    let (name, uid) = (secret.name?, secret.uid?);
    let service_account = private.serviceaccount?.name?;
    let plausible = !audiences.is_empty()
        && is_dns1123_label(&namespace)
        && name.starts_with(NAME_PREFIX)
        && crate::policy::is_dns1123_subdomain(&name)
        && !uid.is_empty()
        && !service_account.is_empty();
    plausible.then_some(Named {
        audiences,
        binding: BoundSecret {
            namespace,
            name,
            uid,
        },
        service_account,
        token_id: claims.jti,
    })
}

impl Exchange {
    /// Revokes `token` if it is a genuine, current token bound to a binding Secret: review it
    /// (for its own audiences, so a token minted for another audience reviews too), then
    /// delete its binding with a uid precondition.
    ///
    /// At most [`MAX_CONCURRENT_REVOCATIONS`] run at once.
    ///
    /// # Errors
    /// [`RevokeUnavailable`] when too many revocations are under way, when the review got no
    /// answer that settles the matter, or the
    /// delete failed in a way a retry can mend (no connection, timeout, 429, 5xx); nothing
    /// was deleted then. A delete refused for good is [`Revoked::Refused`].
    pub async fn revoke(&self, token: &SecretString) -> Result<Revoked, RevokeUnavailable> {
        // Before the token is looked at, so that the answer says nothing about it.
        let Ok(_permit) = self.revocations.try_acquire() else {
            return Err(RevokeUnavailable::busy());
        };
        let now = jiff::Timestamp::now().as_second();
        let Some(named) = named_binding(token.expose_secret(), now) else {
            return Ok(Revoked::Nothing(NotRevoked::NotRevocable));
        };
        let review = self.bindings.review(token, named.audiences.clone()).await?;
        let expected = format!(
            "system:serviceaccount:{}:{}",
            named.binding.namespace, named.service_account
        );
        match review {
            Review::Authenticated { username } if username == expected => {}
            Review::Authenticated { .. } => {
                tracing::warn!(binding = %named.binding, "a reviewed token authenticates as another account than its claims name; nothing revoked");
                return Ok(Revoked::Nothing(NotRevoked::Unauthenticated));
            }
            Review::Unauthenticated => return Ok(Revoked::Nothing(NotRevoked::Unauthenticated)),
        }
        // The account the API server authenticated: equal to the claims' (checked above).
        let service_account = crate::k8s::binding::service_account_digest(
            &named.binding.namespace,
            &named.service_account,
        );
        let deleted = match self.bindings.revoke(&named.binding, &service_account).await {
            Ok(deleted) => deleted,
            // Only an error a retry can mend is the caller's business (503 + Retry-After).
            Err(error) if error.is_transient() => return Err(error.into()),
            Err(error) => {
                return Ok(Revoked::Refused(DeleteRefused {
                    reason: format!("upstream_{}", error.metric_label()),
                    error: error.to_string(),
                    binding: named.binding,
                    service_account: named.service_account,
                }));
            }
        };
        match deleted {
            Deleted::Now => Ok(Revoked::Now(Revocation {
                service_account: named.service_account,
                token_id: named.token_id,
                token_sha256: sha256_hex(token.expose_secret().as_bytes()),
                binding: named.binding,
            })),
            Deleted::AlreadyGone => Ok(Revoked::Nothing(NotRevoked::AlreadyRevoked)),
            Deleted::NoMatch => Ok(Revoked::Nothing(NotRevoked::NoBinding)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &serde_json::Value) -> String {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.c2ln",
            engine.encode(br#"{"alg":"RS256","kid":"k"}"#),
            engine.encode(claims.to_string())
        )
    }

    const NOW: i64 = 1_800_000_000;

    fn named_binding(token: &str) -> Option<Named> {
        super::named_binding(token, NOW)
    }

    fn bound() -> serde_json::Value {
        serde_json::json!({
            "aud": ["https://kubernetes.default.svc"], "jti": "j-1", "exp": NOW + 600,
            "sub": "system:serviceaccount:payments:deployer",
            "kubernetes.io": {"namespace": "payments",
                "secret": {"name": "tokenvend-x7k2p", "uid": "u-1"},
                "serviceaccount": {"name": "deployer", "uid": "sa-1"}}
        })
    }

    #[test]
    fn a_bound_tokens_claims_name_its_binding_and_audiences() {
        let named = named_binding(&token(&bound())).unwrap();
        assert_eq!(named.binding.to_string(), "payments/tokenvend-x7k2p");
        assert_eq!(named.binding.uid, "u-1");
        assert_eq!(named.audiences, ["https://kubernetes.default.svc"]);
        assert_eq!(named.service_account, "deployer");
        assert_eq!(named.token_id.as_deref(), Some("j-1"));
        let mut single = bound();
        single["aud"] = serde_json::json!("one");
        assert_eq!(named_binding(&token(&single)).unwrap().audiences, ["one"]);
    }

    #[test]
    fn tokens_that_name_no_binding_of_ours_are_left_alone() {
        let mut cases = Vec::new();
        for (pointer, value) in [
            (
                "/kubernetes.io/secret/name",
                serde_json::json!("db-password"),
            ),
            ("/kubernetes.io/secret/uid", serde_json::json!("")),
            ("/kubernetes.io/namespace", serde_json::json!("Payments")),
            ("/aud", serde_json::json!([])),
            ("/aud", serde_json::json!(7)),
            ("/kubernetes.io/secret", serde_json::Value::Null),
            ("/exp", serde_json::json!(NOW)),
            ("/exp", serde_json::json!(NOW - 600)),
            ("/exp", serde_json::Value::Null),
        ] {
            let mut claims = bound();
            *claims.pointer_mut(pointer).unwrap() = value;
            cases.push(token(&claims));
        }
        cases.push("not-a-jwt".to_owned());
        cases.push(String::new());
        for case in cases {
            assert_eq!(named_binding(&case), None, "{case}");
        }
    }
}
