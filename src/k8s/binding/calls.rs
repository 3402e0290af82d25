//! The Kubernetes API calls of revocable tokens: create a binding Secret, delete one with a
//! uid precondition (for revocation: through a selector that also names its service account),
//! delete the expired ones by label selector, and review a presented token.
//! Each call runs under a deadline, is counted in `kube_binding_requests_total{call,code}` and
//! feeds readiness like the TokenRequest does. The names the Secrets carry are in
//! [`super`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use secrecy::{ExposeSecret, SecretString};

use super::Selector;
use crate::k8s::ApiContact;
use crate::k8s::{BoxFuture, MintError};
use crate::metrics::Metrics;

/// What a revocable grant adds to a [`crate::k8s::MintRequest`]: who the binding is for (the
/// service account and expiry come from the request itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBinding {
    /// The policy's label value (`team.policy` for a team policy).
    pub policy: String,
    /// The issuer's config name.
    pub issuer: String,
    /// The caller's `iss` and `sub` claims.
    pub iss: String,
    pub sub: String,
}

/// A binding Secret as the API server stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundSecret {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl std::fmt::Display for BoundSecret {
    /// `NAMESPACE/NAME`, as the audit record names it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How a delete of one binding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// This call deleted it.
    Now,
    /// It was gone already, or replaced by another object of the same name (404 or 409): the
    /// token it bound is invalid either way.
    AlreadyGone,
    /// No binding of that name matched the selection (the token's service account, the
    /// binding type, managed by tokenvend): gone already, or never a binding of this token.
    NoMatch,
}

/// What the API server's TokenReview said of a presented token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// Genuine and current; the username it authenticates as.
    Authenticated {
        username: String,
    },
    Unauthenticated,
}

/// The binding calls that revocation and the sweeper make: the seam the service and its
/// tests share (the real one is [`BindingCalls`]).
pub trait Bindings: Send + Sync {
    /// TokenReview of `token` for `audiences` (empty: the API server's own).
    fn review<'a>(
        &'a self,
        token: &'a SecretString,
        audiences: Vec<String>,
    ) -> BoxFuture<'a, Result<Review, MintError>>;

    /// Deletes one binding for revocation, only if it is a binding of the service account
    /// `service_account` (its [`super::service_account_digest`] label), of the binding type,
    /// managed by tokenvend, and its uid is still `binding.uid`.
    fn revoke<'a>(
        &'a self,
        binding: &'a BoundSecret,
        service_account: &'a str,
    ) -> BoxFuture<'a, Result<Deleted, MintError>>;

    /// Deletes the bindings in `namespace` that `selector` selects; returns how many.
    fn delete_selected<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<u64, MintError>>;

    /// The namespaces this process created bindings in (templated namespaces among them).
    fn namespaces_used(&self) -> BTreeSet<String>;
}

/// The binding calls through the real kube client.
#[derive(Clone)]
pub struct BindingCalls {
    client: kube::Client,
    deadline: Duration,
    metrics: Arc<Metrics>,
    contact: Arc<ApiContact>,
    /// Namespaces this process created bindings in, for the sweeper.
    used: Arc<Mutex<BTreeSet<String>>>,
}

impl BindingCalls {
    pub fn new(
        client: kube::Client,
        deadline: Duration,
        metrics: Arc<Metrics>,
        contact: Arc<ApiContact>,
    ) -> Self {
        Self {
            client,
            deadline,
            metrics,
            contact,
            used: Arc::default(),
        }
    }

    /// Creates `secret` (a [`super::BindingSpec::secret`]) in its namespace.
    pub(in crate::k8s) async fn create(
        &self,
        secret: &Secret,
        deadline: tokio::time::Instant,
    ) -> Result<BoundSecret, MintError> {
        let namespace = secret.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let created = self
            .counted("create_secret", deadline, async {
                api.create(&PostParams::default(), secret).await
            })
            .await?;
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(namespace.clone());
        match (created.metadata.name, created.metadata.uid) {
            (Some(name), Some(uid)) => Ok(BoundSecret {
                namespace,
                name,
                uid,
            }),
            _ => Err(MintError::Transport(
                "the created Secret has no name or uid".into(),
            )),
        }
    }

    /// Deletes a binding whose token was not minted. Failures are logged (the binding names
    /// no token) and left to the sweeper, which deletes the binding once its bucket expires.
    pub(in crate::k8s) async fn remove_after_failed_mint(self, binding: BoundSecret) {
        match self.delete_now(&binding).await {
            Ok(_) => tracing::debug!(%binding, "binding of a failed token request deleted"),
            Err(error) => tracing::warn!(
                %binding,
                %error,
                "the binding of a failed token request could not be deleted; it is swept when it expires"
            ),
        }
    }

    async fn delete_now(&self, binding: &BoundSecret) -> Result<Deleted, MintError> {
        let deadline = tokio::time::Instant::now() + self.deadline;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &binding.namespace);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(binding.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let outcome = self
            .counted("delete_secret", deadline, async {
                api.delete(&binding.name, &params).await
            })
            .await;
        match outcome {
            Ok(_) => Ok(Deleted::Now),
            Err(MintError::Api {
                code: 404 | 409, ..
            }) => Ok(Deleted::AlreadyGone),
            Err(error) => Err(error),
        }
    }

    /// A collection delete in the binding's namespace that can match at most the one binding:
    /// its name, the binding type, tokenvend's label and the service account's digest, with
    /// the uid precondition (the API server applies the delete options to each match). A
    /// token minted by someone else for another service account, or bound to a Secret that is
    /// not a binding, selects nothing.
    async fn revoke_now(
        &self,
        binding: &BoundSecret,
        service_account: &str,
    ) -> Result<Deleted, MintError> {
        let deadline = tokio::time::Instant::now() + self.deadline;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &binding.namespace);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(binding.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let selector = Selector {
            service_account: Some(service_account.to_owned()),
            ..Selector::default()
        };
        let list = ListParams::default()
            .labels(&selector.to_label_selector())
            .fields(&format!(
                "metadata.name={},{}",
                binding.name,
                selector.to_field_selector()
            ));
        let outcome = self
            .counted("delete_secret", deadline, async {
                api.delete_collection(&params, &list).await
            })
            .await;
        match outcome {
            Ok(deleted) => match deleted.map_left(|list| list.items.len()).left_or(0) {
                0 => Ok(Deleted::NoMatch),
                _ => Ok(Deleted::Now),
            },
            Err(MintError::Api {
                code: 404 | 409, ..
            }) => Ok(Deleted::AlreadyGone),
            Err(error) => Err(error),
        }
    }

    async fn delete_selected_now(
        &self,
        namespace: &str,
        selector: &Selector,
    ) -> Result<u64, MintError> {
        let deadline = tokio::time::Instant::now() + self.deadline;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let list = ListParams::default()
            .labels(&selector.to_label_selector())
            .fields(&selector.to_field_selector());
        let deleted = self
            .counted("delete_secrets", deadline, async {
                api.delete_collection(&DeleteParams::default(), &list).await
            })
            .await?;
        // A list of the deleted objects, or a Status when the server returns none.
        Ok(deleted.map_left(|list| list.items.len() as u64).left_or(0))
    }

    async fn review_now(
        &self,
        token: &SecretString,
        audiences: Vec<String>,
    ) -> Result<Review, MintError> {
        let deadline = tokio::time::Instant::now() + self.deadline;
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.expose_secret().to_owned()),
                audiences: Some(audiences),
            },
            ..TokenReview::default()
        };
        // The response echoes the token in `spec`; only `status` is kept.
        let reviewed = self
            .counted("token_review", deadline, async {
                api.create(&PostParams::default(), &review).await
            })
            .await?;
        let status = reviewed.status.unwrap_or_default();
        Ok(match (status.authenticated, status.user) {
            (Some(true), Some(user)) => Review::Authenticated {
                username: user.username.unwrap_or_default(),
            },
            _ => Review::Unauthenticated,
        })
    }

    /// Runs one call under `deadline`, counts it, and records whether the API server answered.
    async fn counted<T>(
        &self,
        call: &'static str,
        deadline: tokio::time::Instant,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, MintError> {
        let started = Instant::now();
        let outcome = match tokio::time::timeout_at(deadline, request).await {
            Err(_) => Err(MintError::Timeout(self.deadline)),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(from_kube(error)),
        };
        let code = match &outcome {
            Ok(_) => "success".to_owned(),
            Err(error) => error.metric_label(),
        };
        self.metrics
            .kube_binding_request(call, &code, started.elapsed().as_secs_f64());
        self.contact
            .record(matches!(outcome, Ok(_) | Err(MintError::Api { .. })));
        outcome
    }
}

impl Bindings for BindingCalls {
    fn review<'a>(
        &'a self,
        token: &'a SecretString,
        audiences: Vec<String>,
    ) -> BoxFuture<'a, Result<Review, MintError>> {
        Box::pin(self.review_now(token, audiences))
    }

    fn revoke<'a>(
        &'a self,
        binding: &'a BoundSecret,
        service_account: &'a str,
    ) -> BoxFuture<'a, Result<Deleted, MintError>> {
        Box::pin(self.revoke_now(binding, service_account))
    }

    fn delete_selected<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<u64, MintError>> {
        Box::pin(self.delete_selected_now(namespace, selector))
    }

    fn namespaces_used(&self) -> BTreeSet<String> {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A kube client error as the API server's answer (its Status) or a transport failure. The
/// Status's `details.retryAfterSeconds` is the retry hint (kube keeps no headers).
fn from_kube(error: kube::Error) -> MintError {
    match error {
        kube::Error::Api(status) => MintError::Api {
            code: status.code,
            reason: if status.reason.is_empty() {
                "Unknown".to_owned()
            } else {
                status.reason.clone()
            },
            message: status.message.clone(),
            retry_after: status
                .details
                .as_ref()
                .map(|details| details.retry_after_seconds)
                .filter(|seconds| *seconds > 0)
                .map(|seconds| Duration::from_secs(u64::from(seconds))),
        },
        other => MintError::Transport(other.to_string()),
    }
}
