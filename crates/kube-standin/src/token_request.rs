//! `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`: the TokenRequest subresource,
//! step by step in kube-apiserver's order (`TokenREST.Create` in
//! `pkg/registry/core/serviceaccount/storage/token.go`; the crate's README.md, "TokenRequest"),
//! so the first failing step decides the response exactly as it would on a real cluster.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::authn::Caller;
use super::binding::{BoundObjectRef, resolve};
use super::claims::{
    self, EXTENDED_EXPIRATION_SECONDS, ObjectRef, TokenSpec, WARN_ONLY_EXPIRATION_SECONDS,
};
use super::cluster::uid;
use super::decode::{self, ApiType, OBJECT_META, Schema};
use super::errors::{GroupResource, InvalidField};
use super::faults::FaultTarget;
use super::request_info::RequestInfo;
use super::state::{ApiState, rfc3339};
use super::status::{ApiError, Status};

/// `spec.expirationSeconds` when the request has none.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// `MinTokenAgeSec`.
const MIN_EXPIRATION_SECONDS: i64 = 10 * 60;
/// 2^32: the largest accepted `spec.expirationSeconds`.
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

const TOKEN_REQUEST_KIND: GroupResource<'static> = GroupResource {
    group: "authentication.k8s.io",
    resource: "TokenRequest",
};

static BOUND_OBJECT_REF: Schema = Schema {
    fields: &[
        ("kind", None),
        ("apiVersion", None),
        ("name", None),
        ("uid", None),
    ],
};
static SPEC: Schema = Schema {
    fields: &[
        ("audiences", None),
        ("expirationSeconds", None),
        ("boundObjectRef", Some(&BOUND_OBJECT_REF)),
    ],
};
static TOKEN_REQUEST: ApiType = ApiType {
    group_version: "authentication.k8s.io/v1",
    kind: "TokenRequest",
    schema: &Schema {
        fields: &[
            ("apiVersion", None),
            ("kind", None),
            ("metadata", Some(&OBJECT_META)),
            ("spec", Some(&SPEC)),
            ("status", None),
        ],
    },
};

#[derive(Debug, Default, Deserialize)]
struct RequestBody {
    metadata: Option<RequestMeta>,
    spec: Option<RequestSpec>,
}

#[derive(Debug, Default, Deserialize)]
struct RequestMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestSpec {
    audiences: Option<Vec<String>>,
    expiration_seconds: Option<i64>,
    bound_object_ref: Option<BoundObjectRef>,
}

/// The 201 body, in `TokenRequest`'s field order.
#[derive(Debug, Serialize)]
struct Created {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: CreatedMeta,
    spec: CreatedSpec,
    status: CreatedStatus,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedMeta {
    name: String,
    namespace: String,
    uid: String,
    creation_timestamp: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedSpec {
    audiences: Vec<String>,
    expiration_seconds: i64,
    /// No `omitempty` in Go: `null` when absent.
    bound_object_ref: Option<BoundObjectRef>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedStatus {
    token: String,
    expiration_timestamp: String,
}

/// The handler. Counts every call, whatever its outcome.
pub async fn create(
    State(state): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    uri: Uri,
    caller: Result<Caller, Status>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    state.token_requests.fetch_add(1, Ordering::Relaxed);
    let mut warnings = Vec::new();
    let call = Call {
        state: &state,
        namespace: &namespace,
        name: &name,
        warnings: &mut warnings,
    };
    let mut response = match call.run(caller, &uri, &headers, body).await {
        Ok(created) => (StatusCode::CREATED, axum::Json(created)).into_response(),
        Err(error) => error.into_response(),
    };
    for warning in warnings {
        if let Ok(value) = HeaderValue::from_str(&decode::warning_header(&warning)) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

struct Call<'a> {
    state: &'a ApiState,
    namespace: &'a str,
    name: &'a str,
    warnings: &'a mut Vec<String>,
}

impl Call<'_> {
    async fn run(
        self,
        caller: Result<Caller, Status>,
        uri: &Uri,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<Created, ApiError> {
        let Caller(user) = caller?;
        self.state
            .faults
            .apply(Some(FaultTarget::TokenRequest))
            .await?;
        self.state.authorize(
            &user,
            &RequestInfo::parse(&Method::POST, uri.path(), uri.query()),
        )?;
        let decoded = decode::decode::<RequestBody>(headers, body, &TOKEN_REQUEST)?;
        self.warnings.extend(decoded.warnings);
        Ok(self.create(decoded.object)?)
    }

    fn create(self, request: RequestBody) -> Result<Created, Status> {
        let Call {
            state,
            namespace,
            name,
            warnings,
        } = self;
        let meta = request.metadata.unwrap_or_default();
        let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
        if non_empty(meta.namespace).is_some_and(|ns| ns != namespace) {
            return Err(Status::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if let Some(body_name) = non_empty(meta.name).filter(|n| n != name) {
            let field = InvalidField {
                field: "metadata.name".into(),
                value: format!("{body_name:?}"),
                detail: "must match the service account name if specified".into(),
            };
            return Err(Status::invalid(TOKEN_REQUEST_KIND, name, &[field]));
        }
        let account = state
            .cluster()
            .service_account(namespace, name)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(
                    GroupResource {
                        group: "",
                        resource: "serviceaccounts",
                    },
                    name,
                )
            })?;
        let account_uid = uid(&account.metadata).to_owned();
        if let Some(request_uid) = non_empty(meta.uid).filter(|u| *u != account_uid) {
            let err = format!(
                "the UID in the token request ({request_uid}) does not match the UID of the service account ({account_uid})"
            );
            return Err(Status::conflict(TOKEN_REQUEST_KIND, name, &err));
        }
        let spec = request.spec.unwrap_or_default();
        let audiences = spec
            .audiences
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| state.api_audiences.clone());
        let mut expiration = spec
            .expiration_seconds
            .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
        validate_expiration(expiration)?;
        let binding = match &spec.bound_object_ref {
            Some(reference) => Some(resolve(&state.cluster(), namespace, name, reference)?),
            None => None,
        };
        if let Some(max) = state
            .max_token_expiration
            .and_then(|max| i64::try_from(max).ok())
            .filter(|max| *max > 0)
            && expiration > max
        {
            warnings.push(format!(
                "requested expiration of {expiration} seconds shortened to {max} seconds"
            ));
            expiration = max;
        }
        let expiration = u64::try_from(expiration).expect("validated to be at least 600");
        let pod_bound = binding.as_ref().is_some_and(|b| b.pod.is_some());
        let extended = pod_bound
            && expiration == WARN_ONLY_EXPIRATION_SECONDS
            && audiences.iter().all(|a| state.api_audiences.contains(a));
        let now = state.now();
        let spec_for_claims = TokenSpec {
            issuer: &state.issuer,
            namespace,
            service_account: ObjectRef {
                name: name.to_owned(),
                uid: account_uid.clone(),
            },
            audiences: &audiences,
            lifetime: if extended {
                EXTENDED_EXPIRATION_SECONDS
            } else {
                expiration
            },
            warn_after: extended.then_some(now + WARN_ONLY_EXPIRATION_SECONDS),
            binding: binding.unwrap_or_default(),
        };
        let token = state
            .key
            .sign(None, &claims::build(&spec_for_claims, now))
            .map_err(|e| Status::internal(&format!("failed to generate token: {e}")))?;
        Ok(Created {
            kind: "TokenRequest",
            api_version: "authentication.k8s.io/v1",
            metadata: CreatedMeta {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                uid: account_uid,
                creation_timestamp: rfc3339(now),
            },
            spec: CreatedSpec {
                audiences,
                expiration_seconds: i64::try_from(expiration).unwrap_or(i64::MAX),
                bound_object_ref: spec.bound_object_ref,
            },
            status: CreatedStatus {
                token,
                expiration_timestamp: rfc3339(now + expiration),
            },
        })
    }
}

/// `ValidateTokenRequest`. It runs with an empty object name, so `details.name` is absent.
fn validate_expiration(seconds: i64) -> Result<(), Status> {
    let detail = if seconds < MIN_EXPIRATION_SECONDS {
        "may not specify a duration less than 10 minutes"
    } else if seconds > MAX_EXPIRATION_SECONDS {
        "may not specify a duration larger than 2^32 seconds"
    } else {
        return Ok(());
    };
    let field = InvalidField {
        field: "spec.expirationSeconds".into(),
        value: seconds.to_string(),
        detail: detail.into(),
    };
    Err(Status::invalid(TOKEN_REQUEST_KIND, "", &[field]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_bounds_are_inclusive() {
        assert!(validate_expiration(600).is_ok());
        assert!(validate_expiration(1 << 32).is_ok());
        assert!(validate_expiration(599).is_err());
        assert!(validate_expiration((1 << 32) + 1).is_err());
        assert!(validate_expiration(0).is_err());
    }

    #[test]
    fn a_short_expiration_is_invalid_with_kubes_exact_body() {
        let status = validate_expiration(300).unwrap_err();
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes","reason":"Invalid","details":{"group":"authentication.k8s.io","kind":"TokenRequest","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: 300: may not specify a duration less than 10 minutes","field":"spec.expirationSeconds"}]},"code":422}"#
        );
    }
}
