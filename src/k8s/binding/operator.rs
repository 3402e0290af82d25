//! Operator revocation (`tokenvend revoke`, docs/revocation.md): find binding Secrets by name,
//! by label ([`Selector`]) and by creation time, and delete each with a uid precondition,
//! which invalidates the token bound to it at the API server. Runs with the operator's own
//! credentials, not tokenvend's.
//!
//! Only Secrets of the binding type whose name has the binding prefix are ever deleted, and
//! their contents are never kept: a binding holds no data, and whatever else a list or get
//! returns is dropped on arrival.

use std::collections::BTreeSet;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use serde::Serialize;

use super::{
    BINDING_TYPE, EXPIRES_AT_ANNOTATION, ISSUER_LABEL, ISSUER_URL_ANNOTATION, NAME_PREFIX,
    POLICY_LABEL, SERVICE_ACCOUNT_ANNOTATION, SUBJECT_ANNOTATION, SUBJECT_LABEL, Selector,
};

/// Secrets per list call; every page is read.
const PAGE_SIZE: u32 = 500;

/// What to revoke: every condition given must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Named bindings `(namespace, name)`; empty: found by listing.
    pub bindings: Vec<(String, String)>,
    /// Label conditions (policy, issuer, subject digest).
    pub selector: Selector,
    /// Only bindings created before this.
    pub issued_before: Option<Timestamp>,
}

/// One binding Secret found, as reported. Holds no token and no Secret data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub policy: String,
    pub issuer: String,
    /// The subject annotation (the caller's `sub`), as recorded at issuance.
    pub subject: String,
    pub issuer_url: String,
    /// `NAMESPACE/NAME` of the service account the token is for.
    pub service_account: String,
    /// The exact expiry annotation (RFC 3339), as recorded.
    pub expires: String,
    pub created: Option<Timestamp>,
    /// The subject label (a digest), for matching only.
    #[serde(skip)]
    pub subject_label: String,
}

/// What became of one binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Result {
    Revoked,
    /// 404 or 409 on delete: it was deleted (or replaced) meanwhile; its token is invalid.
    AlreadyGone,
    /// `--dry-run`: left alone.
    WouldRevoke,
    /// The delete failed; the token may still be valid.
    Failed(String),
}

/// Why bindings could not be found.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("cannot list binding Secrets{scope}: {source}")]
    List {
        scope: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read Secret {namespace}/{name}: {source}")]
    Get {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {namespace}/{name} is not a tokenvend binding ({why}); refusing to delete it")]
    NotABinding {
        namespace: String,
        name: String,
        why: String,
    },
}

/// Whether `error` is the API server's 403.
pub fn is_forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403)
}

/// Whether `error` is the API server's 404.
fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Where to look when listing: every namespace in one call, or these one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    AllNamespaces,
    Namespaces(Vec<String>),
}

/// What a search found, and the namespaces or names it could not search (the rest was
/// searched regardless: in an incident, revoking what can be reached beats revoking nothing).
#[derive(Debug, Default)]
pub struct Found {
    pub bindings: Vec<Binding>,
    pub errors: Vec<FindError>,
}

/// The named bindings of `target` (each must be a binding), or every binding that `scope`
/// holds, in both cases kept only when every condition of `target` holds. Sorted by
/// namespace and name.
///
/// # Errors
/// A cluster-wide list the API server refuses or cannot answer (the caller may fall back to
/// namespaces), or a named Secret that is not a binding (wrong type or name): then nothing is
/// to be revoked. A failed list of one namespace or get of one name is in [`Found::errors`].
pub async fn find(
    client: &kube::Client,
    target: &Target,
    scope: &Scope,
) -> std::result::Result<Found, FindError> {
    let mut found = Found::default();
    if target.bindings.is_empty() {
        match scope {
            Scope::AllNamespaces => {
                found
                    .bindings
                    .extend(list(Api::all(client.clone()), &target.selector, None).await?);
            }
            Scope::Namespaces(namespaces) => {
                for namespace in namespaces {
                    let api = Api::namespaced(client.clone(), namespace);
                    match list(api, &target.selector, Some(namespace)).await {
                        Ok(bindings) => found.bindings.extend(bindings),
                        Err(error) => found.errors.push(error),
                    }
                }
            }
        }
    } else {
        let named: BTreeSet<&(String, String)> = target.bindings.iter().collect();
        for (namespace, name) in named {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            match api.get(name).await {
                Ok(secret) => {
                    let binding = from_secret(secret).map_err(|why| FindError::NotABinding {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        why,
                    })?;
                    if selected(&binding, &target.selector) {
                        found.bindings.push(binding);
                    }
                }
                // Gone already: nothing to revoke.
                Err(error) if is_not_found(&error) => {}
                Err(source) => found.errors.push(FindError::Get {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    source,
                }),
            }
        }
    }
    found
        .bindings
        .retain(|binding| match (target.issued_before, binding.created) {
            (Some(before), Some(created)) => created < before,
            (Some(_), None) => false,
            (None, _) => true,
        });
    found
        .bindings
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(found)
}

async fn list(
    api: Api<Secret>,
    selector: &Selector,
    namespace: Option<&str>,
) -> std::result::Result<Vec<Binding>, FindError> {
    let mut params = ListParams::default()
        .labels(&selector.to_label_selector())
        .fields(&selector.to_field_selector())
        .limit(PAGE_SIZE);
    let mut found = Vec::new();
    loop {
        let page = api.list(&params).await.map_err(|source| FindError::List {
            scope: namespace.map_or_else(
                || " in all namespaces".to_owned(),
                |ns| format!(" in namespace {ns}"),
            ),
            source,
        })?;
        // A server that ignores a selector must not widen what is revoked: check again.
        found.extend(
            page.items
                .into_iter()
                .filter_map(|secret| from_secret(secret).ok())
                .filter(|binding| selected(binding, selector)),
        );
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(found),
        }
    }
}

/// The binding a Secret is, or why it is none. Its data (a binding has none) is dropped here.
fn from_secret(secret: Secret) -> std::result::Result<Binding, String> {
    let meta = secret.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let kind = secret.type_.unwrap_or_default();
    if kind != BINDING_TYPE {
        return Err(format!("its type is {kind:?}, not {BINDING_TYPE:?}"));
    }
    if !name.starts_with(NAME_PREFIX) {
        return Err(format!("its name does not start with {NAME_PREFIX:?}"));
    }
    let label = |key: &str| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let annotation = |key: &str| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let managed = label(super::MANAGED_BY_LABEL);
    if managed != super::MANAGED_BY {
        return Err(format!(
            "its {} label is {managed:?}",
            super::MANAGED_BY_LABEL
        ));
    }
    Ok(Binding {
        namespace: meta.namespace.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        policy: label(POLICY_LABEL),
        issuer: label(ISSUER_LABEL),
        subject: annotation(SUBJECT_ANNOTATION),
        issuer_url: annotation(ISSUER_URL_ANNOTATION),
        service_account: annotation(SERVICE_ACCOUNT_ANNOTATION),
        expires: annotation(EXPIRES_AT_ANNOTATION),
        created: meta.creation_timestamp.as_ref().map(|t| t.0),
        subject_label: label(SUBJECT_LABEL),
        name,
    })
}

/// Whether the binding's labels satisfy the selector's conditions (checked locally).
fn selected(binding: &Binding, selector: &Selector) -> bool {
    selector
        .policy
        .as_ref()
        .is_none_or(|p| *p == binding.policy)
        && selector
            .issuer
            .as_ref()
            .is_none_or(|i| *i == binding.issuer)
        && selector
            .subject
            .as_ref()
            .is_none_or(|digest| *digest == binding.subject_label)
}

/// Deletes one binding, only if it is still the object that was found (uid precondition).
pub async fn revoke(client: &kube::Client, binding: &Binding) -> Result {
    let api: Api<Secret> = Api::namespaced(client.clone(), &binding.namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(binding.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&binding.name, &params).await {
        Ok(_) => Result::Revoked,
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            Result::AlreadyGone
        }
        Err(error) => Result::Failed(error.to_string()),
    }
}
