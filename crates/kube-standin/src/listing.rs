//! The stand-in's objects as lists and gets serve them: which resources exist, the JSON of each
//! object, and the labels and fields that selectors look at.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::cluster::{Cluster, ObjectKey};

/// One object as a list or get serves it, with what selectors look at.
pub struct ListedObject {
    pub key: ObjectKey,
    pub labels: BTreeMap<String, String>,
    /// Field-selector fields this resource supports, with their values.
    pub fields: BTreeMap<&'static str, String>,
    pub value: Value,
}

/// Resources the stand-in can get and list, with their kind and whether they are namespaced.
pub const RESOURCES: &[(&str, &str, bool)] = &[
    ("serviceaccounts", "ServiceAccount", true),
    ("secrets", "Secret", true),
    ("pods", "Pod", true),
    ("nodes", "Node", false),
];

/// The field-selector fields of `resource`, and whether the resource has its own conversion
/// function (which words the "unsupported" error differently).
pub fn field_labels(resource: &str) -> (&'static [&'static str], bool) {
    match resource {
        "secrets" => (&["metadata.name", "metadata.namespace", "type"], true),
        "pods" => (
            &[
                "metadata.name",
                "metadata.namespace",
                "spec.nodeName",
                "spec.serviceAccountName",
            ],
            true,
        ),
        _ => (&["metadata.name", "metadata.namespace"], false),
    }
}

impl Cluster {
    /// Every object of `resource` (a plural like `secrets`) in key order, or `None` for a
    /// resource the stand-in does not serve.
    pub fn objects(&self, resource: &str) -> Option<Vec<ListedObject>> {
        let listed = match resource {
            "serviceaccounts" => listed(&self.service_accounts, |_| BTreeMap::new()),
            "secrets" => listed(&self.secrets, |secret| {
                BTreeMap::from([("type", secret.type_.clone().unwrap_or_default())])
            }),
            "pods" => listed(&self.pods, |pod| {
                let spec = pod.spec.clone().unwrap_or_default();
                BTreeMap::from([
                    ("spec.nodeName", spec.node_name.unwrap_or_default()),
                    (
                        "spec.serviceAccountName",
                        spec.service_account_name.unwrap_or_default(),
                    ),
                ])
            }),
            "nodes" => listed(&self.nodes, |_| BTreeMap::new()),
            _ => return None,
        };
        Some(listed)
    }
}

fn listed<T>(
    objects: &BTreeMap<ObjectKey, T>,
    fields: impl Fn(&T) -> BTreeMap<&'static str, String>,
) -> Vec<ListedObject>
where
    T: serde::Serialize + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    objects
        .iter()
        .map(|(key, object)| {
            let mut all_fields = fields(object);
            all_fields.insert("metadata.name", key.1.clone());
            all_fields.insert("metadata.namespace", key.0.clone());
            ListedObject {
                key: key.clone(),
                labels: object.metadata().labels.clone().unwrap_or_default(),
                fields: all_fields,
                value: serde_json::to_value(object).expect("API objects serialise"),
            }
        })
        .collect()
}
