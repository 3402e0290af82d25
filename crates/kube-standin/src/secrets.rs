//! Secret writes: create (`POST /api/v1/namespaces/{ns}/secrets`), delete
//! (`DELETE .../secrets/{name}`) and deletecollection (`DELETE .../secrets?labelSelector=...`),
//! answered as the generic registry store does for `secrets`
//! (`staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go`,
//! `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/{create,delete}.go`; the crate's
//! README.md, "Secrets and revocation").

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::authn::Caller;
use super::cluster::{Cluster, uid};
use super::decode::{self, ApiType, OBJECT_META, Schema};
use super::errors::{FieldError, GroupResource};
use super::faults::FaultTarget;
use super::listing::field_labels;
use super::options::{SERVICE_ACCOUNT_NAME_ANNOTATION, SERVICE_ACCOUNT_TOKEN_TYPE};
use super::request_info::RequestInfo;
use super::selectors::{FieldSelector, LabelSelector};
use super::state::ApiState;
use super::status::{ApiError, Status};
use super::validation;

const SECRETS: GroupResource<'static> = GroupResource {
    group: "",
    resource: "secrets",
};
/// `NewInvalid` names the kind, not the resource.
const SECRET_KIND: GroupResource<'static> = GroupResource {
    group: "",
    resource: "Secret",
};

static SECRET: ApiType = ApiType {
    group_version: "v1",
    kind: "Secret",
    schema: &Schema {
        fields: &[
            ("apiVersion", None),
            ("kind", None),
            ("metadata", Some(&OBJECT_META)),
            ("immutable", None),
            ("data", None),
            ("stringData", None),
            ("type", None),
        ],
    },
};
static PRECONDITIONS: Schema = Schema {
    fields: &[("uid", None), ("resourceVersion", None)],
};
static DELETE_OPTIONS: ApiType = ApiType {
    group_version: "meta.k8s.io/v1",
    kind: "DeleteOptions",
    schema: &Schema {
        fields: &[
            ("apiVersion", None),
            ("kind", None),
            ("gracePeriodSeconds", None),
            ("preconditions", Some(&PRECONDITIONS)),
            ("orphanDependents", None),
            ("propagationPolicy", None),
            ("dryRun", None),
            ("ignoreStoreReadErrorWithClusterBreakingPotential", None),
        ],
    },
};

/// `names.SimpleNameGenerator`'s alphabet (`k8s.io/apimachinery/pkg/util/rand`): no vowels,
/// no digits that look like letters.
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// The random suffix of a generated name.
const GENERATED_SUFFIX_LENGTH: usize = 5;
/// `maxGeneratedNameLength`: 63 - 5.
const MAX_GENERATE_NAME_BASE: usize = 58;

/// `generateName` plus five random characters, the base cut to 58 characters.
fn generate_name(base: &str) -> String {
    let mut name: String = base.chars().take(MAX_GENERATE_NAME_BASE).collect();
    let limit = u8::try_from(NAME_ALPHABET.len() * (256 / NAME_ALPHABET.len()))
        .expect("a multiple of the alphabet below 256");
    let mut added = 0;
    while added < GENERATED_SUFFIX_LENGTH {
        for byte in uuid::Uuid::new_v4().into_bytes() {
            // Rejection sampling keeps every character equally likely.
            if byte < limit && added < GENERATED_SUFFIX_LENGTH {
                name.push(char::from(
                    NAME_ALPHABET[usize::from(byte) % NAME_ALPHABET.len()],
                ));
                added += 1;
            }
        }
    }
    name
}

/// Runs the filters every write passes: authentication, the fault point (where the
/// in-flight filters act), then authorization.
async fn admit(
    state: &ApiState,
    caller: Result<Caller, Status>,
    target: FaultTarget,
    method: &Method,
    uri: &Uri,
) -> Result<(), ApiError> {
    let Caller(user) = caller?;
    state.faults.apply(Some(target)).await?;
    state.authorize(&user, &RequestInfo::parse(method, uri.path(), uri.query()))?;
    Ok(())
}

fn with_warnings(mut response: Response, warnings: Vec<String>) -> Response {
    for warning in warnings {
        if let Ok(value) = HeaderValue::from_str(&decode::warning_header(&warning)) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

/// `POST /api/v1/namespaces/{namespace}/secrets`.
pub async fn create(
    State(state): State<Arc<ApiState>>,
    Path(namespace): Path<String>,
    uri: Uri,
    caller: Result<Caller, Status>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    state.secret_writes.fetch_add(1, Ordering::Relaxed);
    if let Err(error) = admit(
        &state,
        caller,
        FaultTarget::SecretCreate,
        &Method::POST,
        &uri,
    )
    .await
    {
        return error.into_response();
    }
    let decoded = match decode::decode::<Value>(&headers, body, &SECRET) {
        Ok(decoded) => decoded,
        Err(status) => return status.into_response(),
    };
    let response = match create_secret(&state, &namespace, decoded.object) {
        Ok(secret) => (StatusCode::CREATED, axum::Json(secret)).into_response(),
        Err(status) => status.into_response(),
    };
    with_warnings(response, decoded.warnings)
}

/// Decodes, defaults, validates and stores a Secret, as `Store.Create` with the Secret
/// strategy does.
fn create_secret(state: &ApiState, namespace: &str, mut body: Value) -> Result<Secret, Status> {
    if let Value::Object(object) = &mut body {
        object.insert("apiVersion".into(), "v1".into());
        object.insert("kind".into(), "Secret".into());
    }
    let mut secret: Secret = serde_json::from_value(body).map_err(|e| {
        Status::bad_request(format!(
            "Secret in version \"v1\" cannot be handled as a Secret: {e}"
        ))
    })?;
    let meta = &mut secret.metadata;
    // `rest.BeforeCreate`: the namespace must agree with the URL's.
    if meta
        .namespace
        .as_deref()
        .is_some_and(|ns| !ns.is_empty() && ns != namespace)
    {
        return Err(Status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    meta.namespace = Some(namespace.to_owned());
    // The etcd3 store refuses a resourceVersion on create with a plain error: a 500 Status
    // without a reason.
    if meta
        .resource_version
        .as_deref()
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(Status::failure(
            500,
            "",
            "resourceVersion should not be set on objects to be created".into(),
            None,
        ));
    }
    // System fields (`FillObjectMetaSystemFields`) and what `BeforeCreate` clears.
    meta.uid = Some(uuid::Uuid::new_v4().to_string());
    let now = Timestamp::from_second(i64::try_from(state.now()).unwrap_or(i64::MAX))
        .unwrap_or(Timestamp::MAX);
    meta.creation_timestamp = Some(Time(now));
    meta.deletion_timestamp = None;
    meta.deletion_grace_period_seconds = None;
    meta.generation = None;
    meta.self_link = None;
    meta.managed_fields = None;
    // Defaulting: `type` Opaque; conversion merges `stringData` into `data`.
    if secret.type_.as_deref().unwrap_or_default().is_empty() {
        secret.type_ = Some("Opaque".into());
    }
    if let Some(string_data) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (key, value) in string_data {
            data.insert(key, k8s_openapi::ByteString(value.into_bytes()));
        }
    }
    let generate = secret.metadata.generate_name.clone().filter(|g| {
        !g.is_empty()
            && secret
                .metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .is_empty()
    });
    let mut cluster = state.cluster_mut();
    if let Some(base) = &generate {
        // The store retries a generated name that is taken (`RetryGenerateName`).
        let mut name = generate_name(base);
        while cluster.secret(namespace, &name).is_some() {
            name = generate_name(base);
        }
        secret.metadata.name = Some(name);
    }
    let name = secret.metadata.name.clone().unwrap_or_default();
    let errors = validate(&secret);
    if !errors.is_empty() {
        return Err(Status::invalid_fields(SECRET_KIND, &name, &errors));
    }
    if cluster.secret(namespace, &name).is_some() {
        return Err(Status::already_exists(SECRETS, &name));
    }
    Ok(cluster.insert_secret(secret))
}

/// `ValidateSecret`, in its order: the object meta (name, labels, annotation keys), the data
/// keys, then the one type whose rule the stand-in models (a service-account token Secret
/// names its account).
fn validate(secret: &Secret) -> Vec<FieldError> {
    let meta = &secret.metadata;
    let mut errors = Vec::new();
    let name = meta.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        errors.push(validation::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for detail in validation::dns1123_subdomain(name) {
            errors.push(validation::invalid("metadata.name", name, &detail));
        }
    }
    if let Some(labels) = &meta.labels {
        errors.extend(validation::labels(labels));
    }
    if let Some(annotations) = &meta.annotations {
        errors.extend(validation::annotations(annotations));
    }
    for key in secret.data.iter().flat_map(BTreeMap::keys) {
        for detail in validation::config_map_key(key) {
            errors.push(validation::invalid(&format!("data[{key}]"), key, &detail));
        }
    }
    if secret.type_.as_deref() == Some(SERVICE_ACCOUNT_TOKEN_TYPE)
        && meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(SERVICE_ACCOUNT_NAME_ANNOTATION))
            .is_none_or(String::is_empty)
    {
        errors.push(validation::required(
            &format!("metadata.annotations[{SERVICE_ACCOUNT_NAME_ANNOTATION}]"),
            "",
        ));
    }
    errors
}

/// `DeleteOptions`: the parts the stand-in acts on.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    preconditions: Option<Preconditions>,
    #[serde(default)]
    dry_run: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

/// The query parameters `DeleteOptions` can come as when there is no body (preconditions
/// cannot: they are a struct).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteQuery {
    dry_run: Option<String>,
    label_selector: Option<String>,
    field_selector: Option<String>,
}

impl DeleteOptions {
    fn dry_run(&self) -> bool {
        self.dry_run.iter().any(|v| v == "All")
    }

    /// From the body when there is one (a `DeleteOptions` of `meta.k8s.io/v1`, or of `v1`
    /// as older clients send it), else from the query.
    fn read(
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
        query: &DeleteQuery,
    ) -> Result<Self, Status> {
        let body = match body {
            Ok(bytes) if bytes.is_empty() => None,
            other => Some(other),
        };
        let Some(body) = body else {
            return Ok(DeleteOptions {
                preconditions: None,
                dry_run: query.dry_run.iter().cloned().collect(),
            });
        };
        // The legacy core group registers DeleteOptions as `v1` too.
        let body = body.map(|bytes| {
            let mut value: Value = match serde_json::from_slice(&bytes) {
                Ok(value) => value,
                Err(_) => return bytes,
            };
            if value.get("apiVersion").and_then(Value::as_str) == Some("v1") {
                value["apiVersion"] = "meta.k8s.io/v1".into();
            }
            Bytes::from(serde_json::to_vec(&value).expect("JSON serialises"))
        });
        Ok(decode::decode::<DeleteOptions>(headers, body, &DELETE_OPTIONS)?.object)
    }
}

/// `Preconditions.Check` of the storage layer, wrapped by `InterpretDeleteError` into a
/// Conflict on the resource: the etcd key, and the precondition that failed.
fn check_preconditions(
    preconditions: Option<&Preconditions>,
    secret: &Secret,
    namespace: &str,
    name: &str,
) -> Result<(), Status> {
    let Some(preconditions) = preconditions else {
        return Ok(());
    };
    let recorded_uid = uid(&secret.metadata);
    let recorded_version = secret
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or_default();
    let failed = if let Some(wanted) = preconditions.uid.as_deref().filter(|u| *u != recorded_uid) {
        format!(
            "Precondition failed: UID in precondition: {wanted}, UID in object meta: {recorded_uid}"
        )
    } else if let Some(wanted) = preconditions
        .resource_version
        .as_deref()
        .filter(|v| *v != recorded_version)
    {
        format!(
            "Precondition failed: ResourceVersion in precondition: {wanted}, ResourceVersion in object meta: {recorded_version}"
        )
    } else {
        return Ok(());
    };
    let err = format!(
        "StorageError: invalid object, Code: 4, Key: /registry/secrets/{namespace}/{name}, ResourceVersion: 0, AdditionalErrorMsg: {failed}"
    );
    Err(Status::conflict(SECRETS, name, &err))
}

/// The `Success` Status `finalizeDelete` returns for a store without `ReturnDeletedObject`
/// (Secrets): the name, the resource as `kind`, the UID; no `code`.
#[derive(Debug, Serialize)]
struct Deleted {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Empty,
    status: &'static str,
    details: DeletedDetails,
}

#[derive(Debug, Serialize)]
struct Empty {}

#[derive(Debug, Serialize)]
struct DeletedDetails {
    name: String,
    kind: &'static str,
    uid: String,
}

/// `DELETE /api/v1/namespaces/{namespace}/secrets/{name}`.
pub async fn delete(
    State(state): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    uri: Uri,
    caller: Result<Caller, Status>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    state.secret_writes.fetch_add(1, Ordering::Relaxed);
    if let Err(error) = admit(
        &state,
        caller,
        FaultTarget::SecretDelete,
        &Method::DELETE,
        &uri,
    )
    .await
    {
        return error.into_response();
    }
    let result = Query::<DeleteQuery>::try_from_uri(&uri)
        .map_err(|e| Status::bad_request(e.body_text()))
        .and_then(|Query(query)| DeleteOptions::read(&headers, body, &query))
        .and_then(|options| delete_one(&mut state.cluster_mut(), &namespace, &name, &options));
    match result {
        Ok(deleted) => (StatusCode::OK, axum::Json(deleted)).into_response(),
        Err(status) => status.into_response(),
    }
}

fn delete_one(
    cluster: &mut Cluster,
    namespace: &str,
    name: &str,
    options: &DeleteOptions,
) -> Result<Deleted, Status> {
    let secret = cluster
        .secret(namespace, name)
        .ok_or_else(|| Status::not_found(SECRETS, name))?;
    check_preconditions(options.preconditions.as_ref(), secret, namespace, name)?;
    let uid = uid(&secret.metadata).to_owned();
    if !options.dry_run() {
        cluster.remove_secret(namespace, name);
    }
    Ok(Deleted {
        kind: "Status",
        api_version: "v1",
        metadata: Empty {},
        status: "Success",
        details: DeletedDetails {
            name: name.to_owned(),
            kind: "secrets",
            uid,
        },
    })
}

/// A `SecretList` of the deleted objects, as `Store.DeleteCollection` returns it: the items
/// as listed before the deletion, under that list's resource version.
#[derive(Debug, Serialize)]
struct SecretList {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: ListMeta,
    items: Vec<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    resource_version: String,
}

/// `DELETE /api/v1/namespaces/{namespace}/secrets` (deletecollection).
pub async fn delete_collection(
    State(state): State<Arc<ApiState>>,
    Path(namespace): Path<String>,
    uri: Uri,
    caller: Result<Caller, Status>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    state.secret_writes.fetch_add(1, Ordering::Relaxed);
    if let Err(error) = admit(
        &state,
        caller,
        FaultTarget::SecretDeleteCollection,
        &Method::DELETE,
        &uri,
    )
    .await
    {
        return error.into_response();
    }
    let result = Query::<DeleteQuery>::try_from_uri(&uri)
        .map_err(|e| Status::bad_request(e.body_text()))
        .and_then(|Query(query)| {
            let labels = LabelSelector::parse(query.label_selector.as_deref().unwrap_or_default())
                .map_err(Status::bad_request)?;
            let (supported, custom) = field_labels("secrets");
            let fields = FieldSelector::parse(
                query.field_selector.as_deref().unwrap_or_default(),
                supported,
                custom,
            )
            .map_err(Status::bad_request)?;
            let options = DeleteOptions::read(&headers, body, &query)?;
            delete_matching(
                &mut state.cluster_mut(),
                &namespace,
                &labels,
                &fields,
                &options,
            )
        });
    match result {
        Ok(list) => (StatusCode::OK, axum::Json(list)).into_response(),
        Err(status) => status.into_response(),
    }
}

/// Lists the matching Secrets of `namespace`, then deletes them one by one with the same
/// options; a failing precondition stops it with that error, the deletions before it stay
/// (deletecollection is not atomic).
fn delete_matching(
    cluster: &mut Cluster,
    namespace: &str,
    labels: &LabelSelector,
    fields: &FieldSelector,
    options: &DeleteOptions,
) -> Result<SecretList, Status> {
    let resource_version = cluster.resource_version();
    let matching: Vec<String> = cluster
        .objects("secrets")
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.key.0 == namespace && labels.matches(&o.labels) && fields.matches(&o.fields))
        .map(|o| o.key.1)
        .collect();
    let mut items = Vec::new();
    for name in matching {
        let Some(secret) = cluster.secret(namespace, &name).cloned() else {
            continue;
        };
        delete_one(cluster, namespace, &name, options)?;
        let mut value = serde_json::to_value(&secret).expect("API objects serialise");
        if let Value::Object(map) = &mut value {
            map.remove("kind");
            map.remove("apiVersion");
        }
        items.push(value);
    }
    Ok(SecretList {
        kind: "SecretList",
        api_version: "v1",
        metadata: ListMeta {
            resource_version: resource_version.to_string(),
        },
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_add_five_characters_of_the_alphabet() {
        let name = generate_name("tokenvend-");
        assert_eq!(name.len(), "tokenvend-".len() + 5);
        assert!(
            name["tokenvend-".len()..]
                .bytes()
                .all(|b| NAME_ALPHABET.contains(&b))
        );
        assert_eq!(generate_name(&"a".repeat(70)).len(), 63);
    }
}
