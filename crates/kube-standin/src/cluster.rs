//! The objects the stand-in knows: ServiceAccounts, Secrets, Pods and Nodes built once from the
//! seeds, with generated UIDs, resource versions and the data the token controller would add.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, PodSpec, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::options::{
    ApiServerOptions, SERVICE_ACCOUNT_NAME_ANNOTATION, SERVICE_ACCOUNT_TOKEN_TYPE,
    SERVICE_ACCOUNT_UID_ANNOTATION, SeedSecret,
};
use dev_pki::keys::SigningKey;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects. Ordered like etcd
/// keys, which is the order kube-apiserver lists in.
pub type ObjectKey = (String, String);

/// The objects: built from the seeds; Secrets are then created and deleted through the API,
/// everything else stays as seeded.
pub struct Cluster {
    pub(super) service_accounts: BTreeMap<ObjectKey, ServiceAccount>,
    pub(super) secrets: BTreeMap<ObjectKey, Secret>,
    pub(super) pods: BTreeMap<ObjectKey, Pod>,
    pub(super) nodes: BTreeMap<ObjectKey, Node>,
    resource_version: u64,
}

/// The UID of an object's metadata, or `""`.
pub fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or_default()
}

struct Builder {
    started: Timestamp,
    next_version: u64,
}

impl Builder {
    fn meta(&mut self, namespace: &str, name: &str, uid: Option<&String>) -> ObjectMeta {
        self.next_version += 1;
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
            uid: Some(
                uid.cloned()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            ),
            resource_version: Some(self.next_version.to_string()),
            creation_timestamp: Some(Time(self.started)),
            ..ObjectMeta::default()
        }
    }
}

fn labels(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then(|| map.clone())
}

impl Cluster {
    /// Builds the objects of `options`. Token Secrets get the service account's UID and the
    /// `token`, `ca.crt` and `namespace` data the token controller would write.
    pub fn seed(
        options: &ApiServerOptions,
        ca_pem: &str,
        key: &SigningKey,
        started: Timestamp,
    ) -> Self {
        let mut builder = Builder {
            started: Timestamp::from_second(started.as_second()).unwrap_or(started),
            next_version: 0,
        };
        let mut service_accounts = BTreeMap::new();
        for seed in &options.service_accounts {
            let mut metadata = builder.meta(&seed.namespace, &seed.name, seed.uid.as_ref());
            metadata.labels = labels(&seed.labels);
            let secrets = seed.secrets.iter().map(|name| ObjectReference {
                name: Some(name.clone()),
                ..ObjectReference::default()
            });
            let secrets: Vec<_> = secrets.collect();
            let account = ServiceAccount {
                metadata,
                secrets: (!secrets.is_empty()).then_some(secrets),
                ..ServiceAccount::default()
            };
            service_accounts.insert((seed.namespace.clone(), seed.name.clone()), account);
        }
        let mut pods = BTreeMap::new();
        for seed in &options.pods {
            let spec = PodSpec {
                service_account_name: Some(seed.service_account_name.clone()),
                node_name: seed.node_name.clone(),
                ..PodSpec::default()
            };
            let metadata = builder.meta(&seed.namespace, &seed.name, seed.uid.as_ref());
            pods.insert(
                (seed.namespace.clone(), seed.name.clone()),
                Pod {
                    metadata,
                    spec: Some(spec),
                    status: None,
                },
            );
        }
        let mut nodes = BTreeMap::new();
        for seed in &options.nodes {
            let metadata = builder.meta("", &seed.name, seed.uid.as_ref());
            nodes.insert(
                (String::new(), seed.name.clone()),
                Node {
                    metadata,
                    ..Node::default()
                },
            );
        }
        let mut cluster = Cluster {
            service_accounts,
            secrets: BTreeMap::new(),
            pods,
            nodes,
            resource_version: 0,
        };
        for seed in &options.secrets {
            let secret = cluster.secret_from_seed(&mut builder, seed, ca_pem, key);
            cluster
                .secrets
                .insert((seed.namespace.clone(), seed.name.clone()), secret);
        }
        cluster.resource_version = builder.next_version.max(1);
        cluster
    }

    fn secret_from_seed(
        &self,
        builder: &mut Builder,
        seed: &SeedSecret,
        ca_pem: &str,
        key: &SigningKey,
    ) -> Secret {
        let mut metadata = builder.meta(&seed.namespace, &seed.name, seed.uid.as_ref());
        if let Some(created) = seed.created {
            metadata.creation_timestamp = Some(Time(created));
        }
        let mut annotations = seed.annotations.clone();
        let mut data: BTreeMap<String, ByteString> = seed
            .data
            .iter()
            .map(|(k, v)| (k.clone(), ByteString(v.clone())))
            .collect();
        let type_ = if seed.type_.is_empty() {
            "Opaque".to_owned()
        } else {
            seed.type_.clone()
        };
        if type_ == SERVICE_ACCOUNT_TOKEN_TYPE {
            let account_name = annotations
                .get(SERVICE_ACCOUNT_NAME_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            let account_uid = self
                .service_account(&seed.namespace, &account_name)
                .map(|account| uid(&account.metadata).to_owned());
            if let Some(account_uid) = &account_uid {
                annotations
                    .entry(SERVICE_ACCOUNT_UID_ANNOTATION.to_owned())
                    .or_insert_with(|| account_uid.clone());
            }
            let account_uid = annotations
                .get(SERVICE_ACCOUNT_UID_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            let legacy = legacy_token(
                key,
                &seed.namespace,
                &seed.name,
                &account_name,
                &account_uid,
            );
            data.entry("token".into())
                .or_insert_with(|| ByteString(legacy.into_bytes()));
            data.entry("ca.crt".into())
                .or_insert_with(|| ByteString(ca_pem.as_bytes().to_vec()));
            data.entry("namespace".into())
                .or_insert_with(|| ByteString(seed.namespace.as_bytes().to_vec()));
        }
        metadata.labels = labels(&seed.labels);
        metadata.annotations = labels(&annotations);
        Secret {
            metadata,
            data: Some(data),
            type_: Some(type_),
            ..Secret::default()
        }
    }

    pub fn service_account(&self, namespace: &str, name: &str) -> Option<&ServiceAccount> {
        self.service_accounts
            .get(&(namespace.to_owned(), name.to_owned()))
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods.get(&(namespace.to_owned(), name.to_owned()))
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets.get(&(namespace.to_owned(), name.to_owned()))
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(&(String::new(), name.to_owned()))
    }

    /// The resource version lists report: etcd's revision, the last write's.
    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// Every Secret, in key order.
    pub fn all_secrets(&self) -> Vec<Secret> {
        self.secrets.values().cloned().collect()
    }

    /// Stores a new Secret under the next resource version, which it gets in its metadata.
    /// The caller has checked that the name is free.
    pub fn insert_secret(&mut self, mut secret: Secret) -> Secret {
        self.resource_version += 1;
        secret.metadata.resource_version = Some(self.resource_version.to_string());
        let key = (
            secret.metadata.namespace.clone().unwrap_or_default(),
            secret.metadata.name.clone().unwrap_or_default(),
        );
        self.secrets.insert(key, secret.clone());
        secret
    }

    /// Deletes a Secret; a deletion is a write, so it moves the resource version on.
    pub fn remove_secret(&mut self, namespace: &str, name: &str) -> Option<Secret> {
        let removed = self
            .secrets
            .remove(&(namespace.to_owned(), name.to_owned()))?;
        self.resource_version += 1;
        Some(removed)
    }
}

/// A legacy (pre-TokenRequest) service-account token, as `legacy.go` shapes it: no `exp`, no
/// `aud`, issuer `kubernetes/serviceaccount`.
fn legacy_token(
    key: &SigningKey,
    namespace: &str,
    secret: &str,
    account: &str,
    account_uid: &str,
) -> String {
    let claims = json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": account,
        "kubernetes.io/serviceaccount/service-account.uid": account_uid,
        "sub": format!("system:serviceaccount:{namespace}:{account}"),
    });
    key.sign(None, &claims)
        .expect("signing a JSON object with a generated key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{SeedNode, SeedPod, SeedServiceAccount};

    fn cluster() -> Cluster {
        let options = ApiServerOptions {
            service_accounts: vec![
                SeedServiceAccount::new("payments", "billing").with_uid("sa-uid"),
            ],
            secrets: vec![
                SeedSecret::service_account_token("payments", "billing-token", "billing"),
                SeedSecret::opaque("payments", "plain"),
            ],
            pods: vec![SeedPod::new("payments", "web-0", "billing").on_node("node-a")],
            nodes: vec![SeedNode::new("node-a")],
            ..ApiServerOptions::default()
        };
        let key = SigningKey::generate(jsonwebtoken::Algorithm::RS256).unwrap();
        Cluster::seed(&options, "CA", &key, Timestamp::now())
    }

    #[test]
    fn token_secrets_get_the_service_account_uid_and_token_data() {
        let cluster = cluster();
        let secret = cluster.secret("payments", "billing-token").unwrap();
        let annotations = secret.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations[SERVICE_ACCOUNT_UID_ANNOTATION], "sa-uid");
        let data = secret.data.as_ref().unwrap();
        assert_eq!(data["namespace"].0, b"payments");
        assert_eq!(data["ca.crt"].0, b"CA");
        assert!(data["token"].0.starts_with(b"eyJ"));
        assert_eq!(
            cluster
                .secret("payments", "plain")
                .unwrap()
                .type_
                .as_deref(),
            Some("Opaque")
        );
    }

    #[test]
    fn every_object_gets_a_uid_and_its_own_resource_version() {
        let cluster = cluster();
        let node = cluster.node("node-a").unwrap();
        assert_eq!(
            uuid::Uuid::parse_str(uid(&node.metadata))
                .unwrap()
                .get_version_num(),
            4
        );
        let versions: Vec<_> = ["serviceaccounts", "secrets", "pods", "nodes"]
            .iter()
            .flat_map(|r| cluster.objects(r).unwrap())
            .map(|o| {
                o.value["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let unique: std::collections::BTreeSet<_> = versions.iter().collect();
        assert_eq!(unique.len(), versions.len());
        assert_eq!(cluster.resource_version(), 5);
    }

    #[test]
    fn pods_expose_their_node_and_service_account_to_field_selectors() {
        let pods = cluster().objects("pods").unwrap();
        assert_eq!(pods[0].fields["spec.nodeName"], "node-a");
        assert_eq!(pods[0].fields["metadata.namespace"], "payments");
        assert!(cluster().objects("configmaps").is_none());
    }
}
