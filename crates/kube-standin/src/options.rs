//! What the stand-in is started with: its flags (issuer, audiences, expiration cap) and the
//! objects, users and permissions it is seeded with.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::rbac::RbacRule;

/// kube-apiserver's default `--token-success-cache-ttl`.
pub const DEFAULT_TOKEN_SUCCESS_CACHE_TTL: Duration = Duration::from_secs(10);

/// `--service-account-issuer` when none is given, as in a kubeadm cluster.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The stand-in's configuration. `Default` gives an empty cluster with kube-apiserver's
/// defaults for the flags.
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// `--service-account-issuer`: the `iss` of minted tokens.
    pub issuer: String,
    /// `--api-audiences`; empty means `[issuer]`, as kube-apiserver defaults it.
    pub api_audiences: Vec<String>,
    /// `--service-account-max-token-expiration` in seconds; `None` means no cap.
    pub max_token_expiration: Option<u64>,
    pub service_accounts: Vec<SeedServiceAccount>,
    pub secrets: Vec<SeedSecret>,
    pub pods: Vec<SeedPod>,
    pub nodes: Vec<SeedNode>,
    /// Static bearer tokens (kube-apiserver's `--token-auth-file`).
    pub users: Vec<SeedUser>,
    /// Who may do what, beyond the built-in discovery and self-review grants.
    pub rbac: Vec<RbacRule>,
    /// Page size for list calls that send no `limit`; `None` answers them unpaginated, as
    /// kube-apiserver does. A test aid for clients that must follow `continue`.
    pub list_page_size_default: Option<usize>,
    /// `--token-success-cache-ttl`: how long a successful token authentication is reused
    /// without checking the token again (so a token whose bound Secret was deleted keeps
    /// working for up to this long). Zero disables the cache. kube-apiserver's default: 10 s.
    pub token_success_cache_ttl: Duration,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        Self {
            issuer: DEFAULT_ISSUER.to_owned(),
            api_audiences: Vec::new(),
            max_token_expiration: None,
            service_accounts: Vec::new(),
            secrets: Vec::new(),
            pods: Vec::new(),
            nodes: Vec::new(),
            users: Vec::new(),
            rbac: Vec::new(),
            list_page_size_default: None,
            token_success_cache_ttl: DEFAULT_TOKEN_SUCCESS_CACHE_TTL,
        }
    }
}

impl ApiServerOptions {
    /// The API audiences in effect: `--api-audiences`, or else the issuer.
    pub fn effective_api_audiences(&self) -> Vec<String> {
        if self.api_audiences.is_empty() {
            vec![self.issuer.clone()]
        } else {
            self.api_audiences.clone()
        }
    }
}

/// A ServiceAccount.
#[derive(Debug, Clone, Default)]
pub struct SeedServiceAccount {
    pub namespace: String,
    pub name: String,
    /// Generated (UUID v4) when absent.
    pub uid: Option<String>,
    /// Names listed in `secrets: [{name}]`: the auto-generated legacy token Secrets.
    pub secrets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl SeedServiceAccount {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            ..Self::default()
        }
    }

    #[must_use]
    pub fn with_uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.into());
        self
    }
}

/// A Secret. `data` holds raw bytes; the API serves them base64-encoded.
#[derive(Debug, Clone, Default)]
pub struct SeedSecret {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// `Opaque` when empty.
    pub type_: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub data: BTreeMap<String, Vec<u8>>,
    /// `metadata.creationTimestamp`; the start time when absent.
    pub created: Option<Timestamp>,
}

/// The Secret type of legacy long-lived service-account tokens.
pub const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
/// Annotation naming the service account of a token Secret.
pub const SERVICE_ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// Annotation carrying the service account's UID.
pub const SERVICE_ACCOUNT_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

impl SeedSecret {
    /// An `Opaque` Secret.
    pub fn opaque(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            ..Self::default()
        }
    }

    /// A `kubernetes.io/service-account-token` Secret for `service_account`, as the token
    /// controller creates one. At start the stand-in fills in the UID annotation (when the
    /// service account exists) and the `token`, `ca.crt` and `namespace` data keys that are
    /// not already set; the token is a legacy-format JWT signed by the stand-in's key.
    pub fn service_account_token(namespace: &str, name: &str, service_account: &str) -> Self {
        let annotations = BTreeMap::from([(
            SERVICE_ACCOUNT_NAME_ANNOTATION.to_owned(),
            service_account.to_owned(),
        )]);
        Self {
            namespace: namespace.into(),
            name: name.into(),
            type_: SERVICE_ACCOUNT_TOKEN_TYPE.into(),
            annotations,
            ..Self::default()
        }
    }

    #[must_use]
    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    #[must_use]
    pub fn created_at(mut self, created: Timestamp) -> Self {
        self.created = Some(created);
        self
    }
}

/// A Pod, for `boundObjectRef` bindings.
#[derive(Debug, Clone, Default)]
pub struct SeedPod {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub service_account_name: String,
    /// `spec.nodeName`; a pod-bound token also carries the node when set.
    pub node_name: Option<String>,
}

impl SeedPod {
    pub fn new(namespace: &str, name: &str, service_account_name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            service_account_name: service_account_name.into(),
            ..Self::default()
        }
    }

    #[must_use]
    pub fn on_node(mut self, node: &str) -> Self {
        self.node_name = Some(node.into());
        self
    }

    #[must_use]
    pub fn with_uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.into());
        self
    }
}

/// A Node (cluster-scoped), for `boundObjectRef` bindings.
#[derive(Debug, Clone, Default)]
pub struct SeedNode {
    pub name: String,
    pub uid: Option<String>,
}

impl SeedNode {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            uid: None,
        }
    }
}

/// A static bearer token and the user it authenticates as. `system:authenticated` is added to
/// `groups` on authentication.
#[derive(Debug, Clone, Default)]
pub struct SeedUser {
    pub token: String,
    pub username: String,
    pub groups: Vec<String>,
}

impl SeedUser {
    pub fn new(token: &str, username: &str) -> Self {
        Self {
            token: token.into(),
            username: username.into(),
            groups: Vec::new(),
        }
    }

    #[must_use]
    pub fn in_group(mut self, group: &str) -> Self {
        self.groups.push(group.into());
        self
    }
}
