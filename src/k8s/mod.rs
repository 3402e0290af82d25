//! Kubernetes: minting service-account tokens through the TokenRequest API, the RBAC that
//! minting needs, the scan for the legacy token Secrets it replaces, and the client documents
//! (kubeconfig, ExecCredential) that carry a minted token to kubectl.

pub mod binding;
mod contact;
mod kubeconfig;
pub mod legacy;
mod mint;
pub mod rbac;

pub use binding::calls::{BindingCalls, Bindings, BoundSecret, Deleted, NewBinding, Review};
pub use contact::{ApiContact, probe};
pub use kubeconfig::{EXEC_CREDENTIAL_API_VERSION, ExecCredential, KubeconfigCluster, kubeconfig};
pub use mint::{BoxFuture, KubeMinter, MintError, MintRequest, MintedToken, Minter};

/// Where the kubelet puts the pod's namespace next to its service-account token (the same file
/// kube reads for its in-cluster default namespace; deploy/base mounts it explicitly).
pub const IN_CLUSTER_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The namespace tokenvend runs in, when it runs in a pod: the content of
/// [`IN_CLUSTER_NAMESPACE_FILE`], if that is a valid namespace name.
pub fn in_cluster_namespace() -> Option<String> {
    let text = std::fs::read_to_string(IN_CLUSTER_NAMESPACE_FILE).ok()?;
    let namespace = text.trim();
    crate::policy::is_dns1123_label(namespace).then(|| namespace.to_owned())
}

/// Builds the kube client configuration: kubeconfig (`KUBECONFIG` or `~/.kube/config`), else
/// in-cluster. kube's own retry layer is switched off: on the request path a retry must fit
/// inside the request's deadline, which kube's 15-attempt backoff does not.
pub async fn client_config(request_timeout: std::time::Duration) -> anyhow::Result<kube::Config> {
    Ok(for_request_path(
        kube::Config::infer().await?,
        request_timeout,
    ))
}

/// Adapts a client configuration to the request path: no built-in retries, and no read timeout
/// of kube's own, since every call runs under the request's deadline (a read timeout firing
/// first would turn a timeout into a transport error).
pub fn for_request_path(
    mut config: kube::Config,
    request_timeout: std::time::Duration,
) -> kube::Config {
    config.default_retry = false;
    config.read_timeout = None;
    config.connect_timeout = Some(request_timeout.min(std::time::Duration::from_secs(5)));
    config
}
