//! `GET` of core/v1 objects: one object by name, or a list with label and field selectors and
//! `limit`/`continue` pagination (the crate's README.md, "Reads"). Also answers every path no other route
//! serves: authenticated, authorized like kube-apiserver, then 404.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::authn::Caller;
use super::cluster::Cluster;
use super::errors::GroupResource;
use super::listing::{ListedObject, RESOURCES, field_labels};
use super::request_info::{RequestInfo, ResourceAttributes};
use super::selectors::{FieldSelector, LabelSelector};
use super::state::ApiState;
use super::status::Status;

/// Any request no explicit route takes.
pub async fn fallback(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    method: Method,
    uri: Uri,
) -> Response {
    let request = RequestInfo::parse(&method, uri.path(), uri.query());
    if request.resource.is_some()
        && let Err(error) = state.faults.apply(None).await
    {
        return error.into_response();
    }
    if let Err(status) = state.authorize(&caller.0, &request) {
        return status.into_response();
    }
    match (&request.resource, request.verb.as_str()) {
        // Across namespaces, secrets are only listed and watched: no deletecollection route.
        (Some(resource), "deletecollection")
            if resource.resource == "secrets" && request.namespace.is_none() =>
        {
            Status::method_not_allowed().into_response()
        }
        (Some(resource), "get" | "list")
            if resource.api_group.is_empty() && resource.api_version == "v1" =>
        {
            read(&state, &request, resource, &uri).unwrap_or_else(IntoResponse::into_response)
        }
        _ => Status::no_such_path().into_response(),
    }
}

/// An explicit route reached with a method it does not serve.
pub async fn method_not_allowed(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    method: Method,
    uri: Uri,
) -> Status {
    let request = RequestInfo::parse(&method, uri.path(), uri.query());
    state
        .authorize(&caller.0, &request)
        .err()
        .unwrap_or_else(Status::method_not_allowed)
}

fn read(
    state: &ApiState,
    request: &RequestInfo,
    resource: &ResourceAttributes,
    uri: &Uri,
) -> Result<Response, Status> {
    let Some(&(plural, kind, namespaced)) = RESOURCES
        .iter()
        .find(|(plural, ..)| *plural == resource.resource)
    else {
        return Err(Status::no_such_path());
    };
    if !resource.subresource.is_empty() || (!namespaced && request.namespace.is_some()) {
        return Err(Status::no_such_path());
    }
    let cluster = state.cluster();
    let objects = cluster.objects(plural).unwrap_or_default();
    let in_scope = objects
        .into_iter()
        .filter(|o| request.namespace.as_ref().is_none_or(|ns| *ns == o.key.0));
    if resource.name.is_empty() {
        let Query(query) = Query::<ListQuery>::try_from_uri(uri)
            .map_err(|e| Status::bad_request(e.body_text()))?;
        let list = list(&cluster, state, plural, kind, in_scope.collect(), &query)?;
        return Ok(axum::Json(list).into_response());
    }
    let mut found = in_scope.filter(|o| o.key.1 == resource.name);
    let object = found.next().ok_or_else(|| {
        Status::not_found(
            GroupResource {
                group: "",
                resource: plural,
            },
            &resource.name,
        )
    })?;
    Ok(axum::Json(object.value).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    label_selector: Option<String>,
    field_selector: Option<String>,
    limit: Option<usize>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

/// A `<Kind>List`, in Go's field order.
#[derive(Debug, Serialize)]
struct List {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: ListMeta,
    items: Vec<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    resource_version: String,
    #[serde(rename = "continue", skip_serializing_if = "String::is_empty")]
    continue_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining_item_count: Option<usize>,
}

/// The decoded `continue` token: where the previous page ended, as kube's etcd3 store
/// encodes it (`{"v":"meta.k8s.io/v1","rv":N,"start":"<key>\u0000"}`, base64url).
#[derive(Debug, Serialize, Deserialize)]
struct Continue {
    v: String,
    rv: u64,
    start: String,
}

/// The etcd-style key objects are listed in: `namespace/name`, or `name` when cluster-scoped.
fn storage_key(object: &ListedObject) -> String {
    if object.key.0.is_empty() {
        object.key.1.clone()
    } else {
        format!("{}/{}", object.key.0, object.key.1)
    }
}

fn list(
    cluster: &Cluster,
    state: &ApiState,
    plural: &str,
    kind: &str,
    mut objects: Vec<ListedObject>,
    query: &ListQuery,
) -> Result<List, Status> {
    let labels = LabelSelector::parse(query.label_selector.as_deref().unwrap_or_default())
        .map_err(Status::bad_request)?;
    let (supported, custom) = field_labels(plural);
    let fields = FieldSelector::parse(
        query.field_selector.as_deref().unwrap_or_default(),
        supported,
        custom,
    )
    .map_err(Status::bad_request)?;
    objects.sort_by_key(storage_key);
    let unfiltered = labels.is_empty() && fields.is_empty();
    let mut matching: Vec<ListedObject> = objects
        .into_iter()
        .filter(|o| labels.matches(&o.labels) && fields.matches(&o.fields))
        .collect();
    let resource_version = cluster.resource_version();
    if let Some(token) = query.continue_token.as_deref().filter(|t| !t.is_empty()) {
        let start = decode_continue(token)?;
        matching.retain(|o| storage_key(o) >= start);
    }
    let limit = match query.limit {
        Some(0) => None,
        Some(limit) => Some(limit),
        None => state.list_page_size_default.filter(|size| *size > 0),
    };
    let mut meta = ListMeta {
        resource_version: resource_version.to_string(),
        continue_token: String::new(),
        remaining_item_count: None,
    };
    if let Some(limit) = limit.filter(|limit| matching.len() > *limit) {
        let rest = matching.split_off(limit);
        let last = storage_key(matching.last().expect("limit is positive"));
        let token = Continue {
            v: "meta.k8s.io/v1".into(),
            rv: resource_version,
            start: format!("{last}\u{0}"),
        };
        meta.continue_token =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("strings serialise"));
        // kube reports the count only when no selector filtered the list.
        meta.remaining_item_count = unfiltered.then_some(rest.len());
    }
    let items = matching
        .into_iter()
        .map(|o| without_type_meta(o.value))
        .collect();
    Ok(List {
        kind: format!("{kind}List"),
        api_version: "v1",
        metadata: meta,
        items,
    })
}

fn decode_continue(token: &str) -> Result<String, Status> {
    let invalid = || {
        Status::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid())?;
    let token: Continue = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if token.v != "meta.k8s.io/v1" {
        return Err(invalid());
    }
    Ok(token.start)
}

/// List items carry no `kind`/`apiVersion` in kube-apiserver's JSON.
fn without_type_meta(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.remove("kind");
        map.remove("apiVersion");
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_continue_token_round_trips_to_its_start_key() {
        let token = Continue {
            v: "meta.k8s.io/v1".into(),
            rv: 7,
            start: "ns/b\u{0}".into(),
        };
        let encoded = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap());
        assert_eq!(decode_continue(&encoded).unwrap(), "ns/b\u{0}");
        assert_eq!(decode_continue("garbage!").unwrap_err().code, 400);
    }

    #[test]
    fn list_items_lose_their_type_meta() {
        let item = without_type_meta(
            serde_json::json!({"kind": "Secret", "apiVersion": "v1", "metadata": {}}),
        );
        assert_eq!(item, serde_json::json!({"metadata": {}}));
    }

    #[test]
    fn storage_keys_sort_like_etcd() {
        let object = |ns: &str, name: &str| ListedObject {
            key: (ns.into(), name.into()),
            labels: BTreeMap::new(),
            fields: BTreeMap::new(),
            value: Value::Null,
        };
        assert!(storage_key(&object("a-b", "x")) < storage_key(&object("a", "y")));
        assert_eq!(storage_key(&object("", "node")), "node");
    }
}
