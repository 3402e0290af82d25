//! `spec.boundObjectRef` of a TokenRequest: which object the token is bound to, resolved as
//! `TokenREST.Create` resolves it (`pkg/registry/core/serviceaccount/storage/token.go`; the
//! crate's README.md, "TokenRequest").

use serde::{Deserialize, Serialize};

use super::claims::{Binding, ObjectRef};
use super::cluster::{Cluster, uid};
use super::errors::GroupResource;
use super::status::Status;

/// `BoundObjectReference`, echoed back in the response as it was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundObjectRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// `schema.FromAPIVersionAndKind`: `(group, version)`; an unparsable apiVersion gives empty
/// parts.
fn group_version(api_version: &str) -> (&str, &str) {
    if api_version.is_empty() || api_version == "/" {
        return ("", "");
    }
    match api_version.matches('/').count() {
        0 => ("", api_version),
        1 => api_version.split_once('/').unwrap_or(("", "")),
        _ => ("", ""),
    }
}

const CORE: &str = "";

/// Resolves `reference` for a token of service account `account` in `namespace`.
///
/// # Errors
/// 404 for a missing object, 400 for a pod running as another service account or a kind that
/// cannot be bound, 409 when the reference's UID is not the object's.
pub fn resolve(
    cluster: &Cluster,
    namespace: &str,
    account: &str,
    reference: &BoundObjectRef,
) -> Result<Binding, Status> {
    let (group, version) = group_version(&reference.api_version);
    let name = reference.name.as_str();
    let mut binding = Binding::default();
    let recorded_uid = match (group, reference.kind.as_str()) {
        (CORE, "Pod") => {
            let pod = cluster.pod(namespace, name).ok_or_else(|| {
                Status::not_found(
                    GroupResource {
                        group: CORE,
                        resource: "pods",
                    },
                    name,
                )
            })?;
            let spec = pod.spec.clone().unwrap_or_default();
            if spec.service_account_name.as_deref().unwrap_or_default() != account {
                return Err(Status::bad_request(format!(
                    "cannot bind token for serviceaccount {account:?} to pod running with different serviceaccount name."
                )));
            }
            // A missing node still yields `node.name`, without a UID.
            binding.node = spec
                .node_name
                .filter(|n| !n.is_empty())
                .map(|node_name| ObjectRef {
                    uid: cluster
                        .node(&node_name)
                        .map(|node| uid(&node.metadata).to_owned())
                        .unwrap_or_default(),
                    name: node_name,
                });
            let pod_uid = uid(&pod.metadata).to_owned();
            binding.pod = Some(ObjectRef {
                name: name.to_owned(),
                uid: pod_uid.clone(),
            });
            pod_uid
        }
        (CORE, "Node") => {
            let node = cluster.node(name).ok_or_else(|| {
                Status::not_found(
                    GroupResource {
                        group: CORE,
                        resource: "nodes",
                    },
                    name,
                )
            })?;
            let node_uid = uid(&node.metadata).to_owned();
            binding.node = Some(ObjectRef {
                name: name.to_owned(),
                uid: node_uid.clone(),
            });
            node_uid
        }
        (CORE, "Secret") => {
            let secret = cluster.secret(namespace, name).ok_or_else(|| {
                Status::not_found(
                    GroupResource {
                        group: CORE,
                        resource: "secrets",
                    },
                    name,
                )
            })?;
            let secret_uid = uid(&secret.metadata).to_owned();
            binding.secret = Some(ObjectRef {
                name: name.to_owned(),
                uid: secret_uid.clone(),
            });
            secret_uid
        }
        (group, kind) => {
            return Err(Status::bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )));
        }
    };
    if !reference.uid.is_empty() && reference.uid != recorded_uid {
        let err = format!(
            "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
            reference.uid
        );
        // kube passes the Kind where a resource belongs, so the message reads `on Pod "x"`.
        return Err(Status::conflict(
            GroupResource {
                group,
                resource: &reference.kind,
            },
            name,
            &err,
        ));
    }
    Ok(binding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{ApiServerOptions, SeedPod};
    use dev_pki::keys::SigningKey;

    fn cluster() -> Cluster {
        let options = ApiServerOptions {
            pods: vec![
                SeedPod::new("payments", "web-0", "billing")
                    .with_uid("pod-uid")
                    .on_node("gone"),
            ],
            ..ApiServerOptions::default()
        };
        let key = SigningKey::generate(jsonwebtoken::Algorithm::ES256).unwrap();
        Cluster::seed(&options, "", &key, k8s_openapi::jiff::Timestamp::now())
    }

    fn reference(api_version: &str, kind: &str, name: &str) -> BoundObjectRef {
        BoundObjectRef {
            kind: kind.into(),
            api_version: api_version.into(),
            name: name.into(),
            uid: String::new(),
        }
    }

    #[test]
    fn api_versions_parse_like_parse_group_version() {
        assert_eq!(group_version(""), ("", ""));
        assert_eq!(group_version("v1"), ("", "v1"));
        assert_eq!(group_version("apps/v1"), ("apps", "v1"));
        assert_eq!(group_version("a/b/c"), ("", ""));
    }

    #[test]
    fn a_pod_without_api_version_binds_and_keeps_a_missing_nodes_name() {
        let binding = resolve(
            &cluster(),
            "payments",
            "billing",
            &reference("", "Pod", "web-0"),
        )
        .unwrap();
        assert_eq!(binding.pod.unwrap().uid, "pod-uid");
        assert_eq!(
            binding.node.unwrap(),
            ObjectRef {
                name: "gone".into(),
                uid: String::new()
            }
        );
    }

    #[test]
    fn unsupported_kinds_are_named_by_their_gvk() {
        let status = resolve(
            &cluster(),
            "payments",
            "billing",
            &reference("apps/v1", "Pod", "web-0"),
        )
        .unwrap_err();
        assert_eq!(
            status.message,
            "cannot bind token to object of type apps/v1, Kind=Pod"
        );
    }

    #[test]
    fn a_uid_mismatch_conflicts_on_the_kind() {
        let mut pod = reference("v1", "Pod", "web-0");
        pod.uid = "1111".into();
        let status = resolve(&cluster(), "payments", "billing", &pod).unwrap_err();
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Operation cannot be fulfilled on Pod \"web-0\": the UID in the bound object reference (1111) does not match the UID in record. The object might have been deleted and then recreated","reason":"Conflict","details":{"name":"web-0","kind":"Pod"},"code":409}"#
        );
    }

    #[test]
    fn a_missing_secret_or_node_is_not_found() {
        let status = resolve(
            &cluster(),
            "payments",
            "billing",
            &reference("v1", "Secret", "s"),
        )
        .unwrap_err();
        assert_eq!(status.message, r#"secrets "s" not found"#);
        let status = resolve(
            &cluster(),
            "payments",
            "billing",
            &reference("v1", "Node", "n"),
        )
        .unwrap_err();
        assert_eq!(status.details.unwrap().kind, "nodes");
    }
}
