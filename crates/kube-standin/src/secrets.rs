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
/// The kind `ValidateDeleteOptions` errors name.
const DELETE_OPTIONS_KIND: GroupResource<'static> = GroupResource {
    group: "meta.k8s.io",
    resource: "DeleteOptions",
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
/// `MaxGeneratedNameLength`: 63 - 5.
const MAX_GENERATE_NAME_BASE: usize = 58;

/// `maxNameGenerationCreateAttempts` of the generic registry store.
const MAX_NAME_GENERATION_CREATE_ATTEMPTS: usize = 8;

/// `SimpleNameGenerator.GenerateName`: `generateName` cut to 58 bytes, plus five random
/// characters of the alphabet.
fn generate_name(base: &str) -> String {
    // Go cuts the base's bytes, possibly inside a character; the broken character is
    // invalid UTF-8, which Go's JSON encoder writes as U+FFFD, as the lossy decoding does.
    let cut = &base.as_bytes()[..base.len().min(MAX_GENERATE_NAME_BASE)];
    let mut name = String::from_utf8_lossy(cut).into_owned();
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
    let options = match CreateOptions::read(&uri) {
        Ok(options) => options,
        Err(status) => return status.into_response(),
    };
    let mut decoded = match decode::decode::<Value>(&headers, body, &SECRET) {
        Ok(decoded) => decoded,
        Err(status) => return status.into_response(),
    };
    match options.field_validation.as_str() {
        "Strict" if !decoded.warnings.is_empty() => {
            return Status::bad_request(format!(
                "Secret in version \"v1\" cannot be handled as a Secret: strict decoding error: {}",
                decoded.warnings.join(", ")
            ))
            .into_response();
        }
        "Ignore" => decoded.warnings.clear(),
        _ => {}
    }
    let response = match create_secret(&state, &namespace, decoded.object, options.dry_run) {
        Ok(secret) => (StatusCode::CREATED, axum::Json(secret)).into_response(),
        Err(status) => status.into_response(),
    };
    with_warnings(response, decoded.warnings)
}

/// The `CreateOptions` of the query that the stand-in acts on.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateQuery {
    dry_run: Option<String>,
    field_validation: Option<String>,
}

struct CreateOptions {
    dry_run: bool,
    /// `fieldValidation`: empty means `Warn` (`fieldValidation()` in `rest.go`).
    field_validation: String,
}

/// The kind `ValidateCreateOptions` errors name.
const CREATE_OPTIONS_KIND: GroupResource<'static> = GroupResource {
    group: "meta.k8s.io",
    resource: "CreateOptions",
};

impl CreateOptions {
    /// Decodes the query and runs `ValidateCreateOptions` on it, as `createHandler` does
    /// before it reads the body: a `dryRun` other than `All`, a `fieldValidation` other than
    /// `Ignore`, `Warn` or `Strict`, are a 422 on `CreateOptions.meta.k8s.io ""`.
    fn read(uri: &Uri) -> Result<Self, Status> {
        let Query(query) = Query::<CreateQuery>::try_from_uri(uri)
            .map_err(|e| Status::bad_request(e.body_text()))?;
        let dry_run: Vec<String> = query.dry_run.into_iter().collect();
        let field_validation = query.field_validation.unwrap_or_default();
        let mut errors = Vec::new();
        if dry_run.iter().any(|v| v != "All") {
            errors.push(validation::not_supported(
                "dryRun",
                &Value::from(dry_run.clone()),
                &["All"],
            ));
        }
        if !matches!(field_validation.as_str(), "" | "Ignore" | "Warn" | "Strict") {
            errors.push(validation::not_supported(
                "fieldValidation",
                &Value::from(field_validation.as_str()),
                &["", "Ignore", "Strict", "Warn"],
            ));
        }
        if !errors.is_empty() {
            return Err(Status::invalid_fields(CREATE_OPTIONS_KIND, "", &errors));
        }
        Ok(CreateOptions {
            dry_run: !dry_run.is_empty(),
            field_validation,
        })
    }
}

/// Decodes, defaults, validates and stores a Secret, as `Store.Create` with the Secret
/// strategy does.
fn create_secret(
    state: &ApiState,
    namespace: &str,
    mut body: Value,
    dry_run: bool,
) -> Result<Secret, Status> {
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
    let mut cluster = state.cluster_mut();
    let secret = store_create(
        &secret,
        dry_run,
        |name| cluster.secret(namespace, name).is_some(),
        generate_name,
    )?;
    if dry_run {
        return Ok(secret);
    }
    Ok(cluster.insert_secret(secret))
}

/// What `Store.Create` does once the handler has decoded and defaulted the object: generate
/// the name, validate (`BeforeCreate`), then the etcd3 store's checks, the resourceVersion
/// first and the key second. `taken` says whether a name is stored already; `generate` draws
/// a name for a `generateName`. A dry run (`DryRunnableStorage.Create`) skips the
/// resourceVersion check and leaves the object as it is, but still finds a taken name.
/// Returns the Secret to store.
fn store_create(
    secret: &Secret,
    dry_run: bool,
    taken: impl Fn(&str) -> bool,
    mut generate: impl FnMut(&str) -> String,
) -> Result<Secret, Status> {
    let base = secret.metadata.generate_name.clone().filter(|g| {
        !g.is_empty()
            && secret
                .metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .is_empty()
    });
    // `createWithGenerateNameRetry` (feature `RetryGenerateName`, GA and locked on since
    // 1.32): a generated name that is taken is drawn again, at most eight attempts in all.
    let attempts = if base.is_some() {
        MAX_NAME_GENERATION_CREATE_ATTEMPTS
    } else {
        1
    };
    let mut last = String::new();
    for _ in 0..attempts {
        let mut candidate = secret.clone();
        if let Some(base) = &base {
            candidate.metadata.name = Some(generate(base));
        }
        let name = candidate.metadata.name.clone().unwrap_or_default();
        let errors = validate(&candidate);
        if !errors.is_empty() {
            return Err(Status::invalid_fields(SECRET_KIND, &name, &errors));
        }
        // `APIObjectVersioner.ObjectResourceVersion` parses it as a number; text that is no
        // number, and "0", pass and are then cleared (`PrepareObjectForStorage`).
        if !dry_run
            && candidate
                .metadata
                .resource_version
                .as_deref()
                .and_then(|rv| rv.parse::<u64>().ok())
                .is_some_and(|rv| rv != 0)
        {
            // A plain error, which the handler turns into a 500 without a reason.
            return Err(Status::failure(
                500,
                "",
                "resourceVersion should not be set on objects to be created".into(),
                None,
            ));
        }
        if !dry_run {
            candidate.metadata.resource_version = None;
        }
        if !taken(&name) {
            return Ok(candidate);
        }
        last = name;
    }
    // `rest.CheckGeneratedNameError`: a user's own name is plain AlreadyExists, a generated
    // one `NewGenerateNameConflict` with a retry after one second.
    Err(if base.is_some() {
        Status::generate_name_conflict(SECRETS, &last)
    } else {
        Status::already_exists(SECRETS, &last)
    })
}

/// `ValidateSecret` (`pkg/apis/core/validation/validation.go`), in its order: the object
/// meta (`generateName`, name, labels, annotation keys and their total size), the data keys
/// and the data's total size, then the one type whose rule the stand-in models (a
/// service-account token Secret names its account). Upstream iterates Go maps, so errors of
/// several labels or data keys come in random order; here they come in key order.
fn validate(secret: &Secret) -> Vec<FieldError> {
    let meta = &secret.metadata;
    let mut errors = Vec::new();
    let generate_name = meta.generate_name.as_deref().unwrap_or_default();
    if !generate_name.is_empty() {
        for detail in validation::name_is_dns_subdomain(generate_name, true) {
            errors.push(validation::invalid(
                "metadata.generateName",
                generate_name,
                &detail,
            ));
        }
    }
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
    let mut size = 0;
    for (key, value) in secret.data.iter().flatten() {
        for detail in validation::config_map_key(key) {
            errors.push(validation::invalid(&format!("data[{key}]"), key, &detail));
        }
        size += value.0.len();
    }
    if size > validation::MAX_SECRET_SIZE {
        errors.push(validation::too_long("data", validation::MAX_SECRET_SIZE));
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
    propagation_policy: Option<String>,
    orphan_dependents: Option<bool>,
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
    propagation_policy: Option<String>,
    orphan_dependents: Option<bool>,
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
                propagation_policy: query.propagation_policy.clone(),
                orphan_dependents: query.orphan_dependents,
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

    /// `ValidateDeleteOptions` (`k8s.io/apimachinery` `pkg/apis/meta/v1/validation`), which
    /// both delete handlers run before the store: orphanDependents and propagationPolicy
    /// together, an unknown propagationPolicy, a dryRun other than `All`. A 422 on
    /// `DeleteOptions.meta.k8s.io ""`.
    fn validate(self) -> Result<Self, Status> {
        let mut errors = Vec::new();
        if let Some(policy) = &self.propagation_policy {
            if self.orphan_dependents.is_some() {
                errors.push(validation::invalid(
                    "propagationPolicy",
                    policy,
                    "orphanDependents and deletionPropagation cannot be both set",
                ));
            }
            if !matches!(policy.as_str(), "Foreground" | "Background" | "Orphan") {
                errors.push(validation::not_supported(
                    "propagationPolicy",
                    &Value::from(policy.as_str()),
                    &["Foreground", "Background", "Orphan", "nil"],
                ));
            }
        }
        if self.dry_run.iter().any(|v| v != "All") {
            errors.push(validation::not_supported(
                "dryRun",
                &Value::from(self.dry_run.clone()),
                &["All"],
            ));
        }
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(Status::invalid_fields(DELETE_OPTIONS_KIND, "", &errors))
        }
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
        .and_then(DeleteOptions::validate)
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
            let options = DeleteOptions::read(&headers, body, &query)?.validate()?;
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

    fn generated(base: &str) -> Secret {
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                generate_name: Some(base.to_owned()),
                namespace: Some("payments".into()),
                ..Default::default()
            },
            ..Secret::default()
        }
    }

    #[test]
    fn a_generated_name_is_drawn_at_most_eight_times() {
        let mut draws = 0;
        let status = store_create(
            &generated("tokenvend-"),
            false,
            |_| true,
            |base| {
                draws += 1;
                assert!(draws <= 8, "drawn a name {draws} times");
                format!("{base}bcd{draws}f")
            },
        )
        .unwrap_err();
        assert_eq!(draws, 8);
        let response = status.clone().into_response();
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"secrets \"tokenvend-bcd8f\" already exists, the server was not able to generate a unique name for the object",
                "reason":"AlreadyExists",
                "details":{"name":"tokenvend-bcd8f","kind":"secrets","retryAfterSeconds":1},"code":409})
        );
        // A free name on a later draw is taken.
        let mut draws = 0;
        let created = store_create(
            &generated("tokenvend-"),
            false,
            |name| name != "tokenvend-free1",
            |base| {
                draws += 1;
                if draws == 3 {
                    format!("{base}free1")
                } else {
                    format!("{base}taken")
                }
            },
        )
        .unwrap();
        assert_eq!(created.metadata.name.as_deref(), Some("tokenvend-free1"));
    }

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

    #[test]
    fn a_long_base_is_cut_at_58_bytes_even_inside_a_character() {
        // Go slices the string's bytes; the split character is invalid UTF-8, which
        // encoding/json writes as U+FFFD.
        let name = generate_name(&format!("a{}", "é".repeat(40)));
        let expected = format!("a{}\u{fffd}", "é".repeat(28));
        assert!(name.starts_with(&expected), "{name}");
        assert_eq!(name.chars().count(), expected.chars().count() + 5);
    }
}
