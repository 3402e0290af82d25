//! The Kubernetes client documents tokenvend writes: a kubeconfig with one cluster, user and
//! context, and a kubectl `ExecCredential` (client.authentication.k8s.io/v1). The service
//! renders them for `format=kubeconfig|exec-credential`, and `tokenvend token` for its outputs,
//! so they live here, below both. Formats as kubectl reads them: see
//! `staging/src/k8s.io/client-go/tools/clientcmd/api/v1/types.go` and
//! `staging/src/k8s.io/client-go/pkg/apis/clientauthentication/v1/types.go` in kubernetes/kubernetes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use serde::Serialize;

use crate::policy::ServiceAccountRef;

/// The `apiVersion` of ExecCredentials, the one kubectl 1.22+ speaks.
pub const EXEC_CREDENTIAL_API_VERSION: &str = "client.authentication.k8s.io/v1";

/// The cluster a kubeconfig output points at: `kubernetes.kubeconfigServer` and
/// `kubeconfigCAFile`, else the service's own Kubernetes client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigCluster {
    /// The API server URL.
    pub server: String,
    /// PEM trust roots for it; `None` leaves kubectl to the system roots.
    pub ca_pem: Option<String>,
}

impl KubeconfigCluster {
    /// The trust roots as a kubeconfig's `certificate-authority-data`: base64 of the PEM.
    pub fn certificate_authority_data(&self) -> Option<String> {
        self.ca_pem
            .as_ref()
            .map(|pem| STANDARD.encode(pem.as_bytes()))
    }
}

/// A `client.authentication.k8s.io/v1` ExecCredential carrying a bearer token: what a kubectl
/// exec plugin prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecCredential<'a> {
    api_version: &'static str,
    kind: &'static str,
    status: ExecCredentialStatus<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecCredentialStatus<'a> {
    token: &'a str,
    expiration_timestamp: String,
}

impl<'a> ExecCredential<'a> {
    /// An ExecCredential for `token`, which kubectl reuses until `expiration`.
    pub fn new(token: &'a str, expiration: Timestamp) -> Self {
        Self {
            api_version: EXEC_CREDENTIAL_API_VERSION,
            kind: "ExecCredential",
            status: ExecCredentialStatus {
                token,
                expiration_timestamp: rfc3339(expiration),
            },
        }
    }
}

/// RFC 3339 in UTC with whole seconds, as Kubernetes writes timestamps.
fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig<'a> {
    api_version: &'static str,
    kind: &'static str,
    clusters: [Named<'a, ClusterEntry<'a>>; 1],
    users: [Named<'a, UserEntry<'a>>; 1],
    contexts: [Named<'a, ContextEntry<'a>>; 1],
    current_context: &'a str,
}

#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    entry: T,
}

#[derive(Serialize)]
struct ClusterEntry<'a> {
    cluster: ClusterFields<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterFields<'a> {
    server: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_authority_data: Option<String>,
}

#[derive(Serialize)]
struct UserEntry<'a> {
    user: UserFields<'a>,
}

#[derive(Serialize)]
struct UserFields<'a> {
    token: &'a str,
}

#[derive(Serialize)]
struct ContextEntry<'a> {
    context: ContextFields<'a>,
}

#[derive(Serialize)]
struct ContextFields<'a> {
    cluster: &'a str,
    user: &'a str,
    namespace: &'a str,
}

/// A kubeconfig with one cluster, one user (the service account, authenticating with `token`)
/// and one context, current, in the service account's namespace.
pub fn kubeconfig(cluster: &KubeconfigCluster, account: &ServiceAccountRef, token: &str) -> String {
    let name = account.to_string();
    let document = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: [Named {
            name: "tokenvend",
            entry: ClusterEntry {
                cluster: ClusterFields {
                    server: &cluster.server,
                    certificate_authority_data: cluster.certificate_authority_data(),
                },
            },
        }],
        users: [Named {
            name: &name,
            entry: UserEntry {
                user: UserFields { token },
            },
        }],
        contexts: [Named {
            name: &name,
            entry: ContextEntry {
                context: ContextFields {
                    cluster: "tokenvend",
                    user: &name,
                    namespace: account.namespace(),
                },
            },
        }],
        current_context: &name,
    };
    serde_saphyr::to_string(&document).expect("a kubeconfig of strings serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> ServiceAccountRef {
        ServiceAccountRef::parse("production/deployer").unwrap()
    }

    #[test]
    fn a_kubeconfig_names_the_service_account_and_carries_the_cluster_and_token() {
        let cluster = KubeconfigCluster {
            server: "https://k8s.example.com:6443".into(),
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
        };
        let text = kubeconfig(&cluster, &account(), "a.b.c");
        let parsed: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(parsed["current-context"], "production/deployer");
        assert_eq!(
            parsed["clusters"][0]["cluster"]["server"],
            "https://k8s.example.com:6443"
        );
        let ca = parsed["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap();
        assert_eq!(
            STANDARD.decode(ca).unwrap(),
            cluster.ca_pem.unwrap().as_bytes()
        );
        assert_eq!(parsed["users"][0]["name"], "production/deployer");
        assert_eq!(parsed["users"][0]["user"]["token"], "a.b.c");
        assert_eq!(parsed["contexts"][0]["context"]["namespace"], "production");
    }

    #[test]
    fn a_kubeconfig_without_a_ca_leaves_trust_to_the_system_roots() {
        let cluster = KubeconfigCluster {
            server: "https://k8s.example.com".into(),
            ca_pem: None,
        };
        let parsed: serde_json::Value =
            serde_saphyr::from_str(&kubeconfig(&cluster, &account(), "t")).unwrap();
        assert!(
            parsed["clusters"][0]["cluster"]
                .get("certificate-authority-data")
                .is_none()
        );
    }

    #[test]
    fn an_exec_credential_has_the_v1_shape_with_a_utc_timestamp() {
        let at: Timestamp = "2030-01-02T03:04:05.678Z".parse().unwrap();
        let value = serde_json::to_value(ExecCredential::new("a.b.c", at)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "apiVersion": "client.authentication.k8s.io/v1",
                "kind": "ExecCredential",
                "status": {"token": "a.b.c", "expirationTimestamp": "2030-01-02T03:04:05Z"}
            })
        );
    }
}
