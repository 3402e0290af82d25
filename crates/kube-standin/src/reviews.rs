//! `tokenreviews` and `selfsubjectreviews` (authentication.k8s.io/v1): asking the API server
//! who a token belongs to (`pkg/registry/authentication/tokenreview/storage.go`; the crate's
//! README.md, "Reviews and discovery").

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::authn::Caller;
use super::decode::{self, ApiType, OBJECT_META, Schema};
use super::faults::FaultTarget;
use super::request_info::RequestInfo;
use super::state::ApiState;
use super::status::Status;
use super::user::UserInfo;

const GROUP_VERSION: &str = "authentication.k8s.io/v1";

static TOKEN_REVIEW_SPEC: Schema = Schema {
    fields: &[("token", None), ("audiences", None)],
};
static TOKEN_REVIEW: ApiType = ApiType {
    group_version: GROUP_VERSION,
    kind: "TokenReview",
    schema: &Schema {
        fields: &[
            ("apiVersion", None),
            ("kind", None),
            ("metadata", Some(&OBJECT_META)),
            ("spec", Some(&TOKEN_REVIEW_SPEC)),
            ("status", None),
        ],
    },
};
static SELF_SUBJECT_REVIEW: ApiType = ApiType {
    group_version: GROUP_VERSION,
    kind: "SelfSubjectReview",
    schema: &Schema {
        fields: &[
            ("apiVersion", None),
            ("kind", None),
            ("metadata", Some(&OBJECT_META)),
            ("status", None),
        ],
    },
};

#[derive(Debug, Default, Deserialize)]
struct TokenReviewBody {
    spec: Option<TokenReviewSpec>,
}

/// `TokenReviewSpec`, echoed back as sent (token included).
#[derive(Debug, Default, Deserialize, Serialize)]
struct TokenReviewSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    token: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    audiences: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Review<S> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Empty,
    #[serde(skip_serializing_if = "Option::is_none")]
    spec: Option<TokenReviewSpec>,
    status: S,
}

#[derive(Debug, Serialize)]
struct Empty {}

/// `TokenReviewStatus`: `authenticated` is absent when false, `user` always present.
#[derive(Debug, Serialize)]
struct TokenReviewStatus {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    authenticated: bool,
    user: UserInfo,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    audiences: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

#[derive(Debug, Serialize)]
struct SelfSubjectReviewStatus {
    #[serde(rename = "userInfo")]
    user_info: UserInfo,
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`.
pub async fn token_review(
    State(state): State<Arc<ApiState>>,
    Caller(caller): Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(error) = state.faults.apply(Some(FaultTarget::TokenReview)).await {
        return error.into_response();
    }
    match review_token(&state, &caller, &uri, &headers, body) {
        Ok(review) => (StatusCode::CREATED, axum::Json(review)).into_response(),
        Err(status) => status.into_response(),
    }
}

fn review_token(
    state: &ApiState,
    caller: &UserInfo,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Review<TokenReviewStatus>, Status> {
    state.authorize(
        caller,
        &RequestInfo::parse(&Method::POST, uri.path(), uri.query()),
    )?;
    let request = decode::decode::<TokenReviewBody>(headers, body, &TOKEN_REVIEW)?.object;
    let spec = request.spec.unwrap_or_default();
    if spec.token.is_empty() {
        return Err(Status::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let status = match state.authenticate_token(&spec.token, &spec.audiences) {
        Ok(Some(authenticated)) => TokenReviewStatus {
            authenticated: true,
            user: authenticated.user,
            audiences: authenticated.audiences,
            error: String::new(),
        },
        Ok(None) => TokenReviewStatus {
            authenticated: false,
            user: UserInfo::default(),
            audiences: Vec::new(),
            error: String::new(),
        },
        Err(error) => TokenReviewStatus {
            authenticated: false,
            user: UserInfo::default(),
            audiences: Vec::new(),
            error,
        },
    };
    Ok(Review {
        kind: "TokenReview",
        api_version: GROUP_VERSION,
        metadata: Empty {},
        spec: Some(spec),
        status,
    })
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: the caller's own user info.
pub async fn self_subject_review(
    State(state): State<Arc<ApiState>>,
    Caller(caller): Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(error) = state.faults.apply(None).await {
        return error.into_response();
    }
    let result = state
        .authorize(
            &caller,
            &RequestInfo::parse(&Method::POST, uri.path(), uri.query()),
        )
        .and_then(|()| {
            // kubectl sends protobuf. A SelfSubjectReview request has no fields, so checking
            // the envelope's kind is all the decoding kube-apiserver's would amount to.
            if decode::is_protobuf(&headers) {
                let body = body.map_err(|_| Status::bad_request("the body could not be read"))?;
                let type_meta = decode::protobuf_type_meta(&body);
                let expected = (GROUP_VERSION.to_owned(), "SelfSubjectReview".to_owned());
                return if type_meta.as_ref() == Some(&expected) {
                    Ok(())
                } else {
                    Err(Status::bad_request(
                        "the object provided is unrecognized (must be of type SelfSubjectReview)",
                    ))
                };
            }
            // kubectl always sends a body; an empty one is read as `{}`.
            let body = body.map(|b| {
                if b.is_empty() {
                    Bytes::from_static(b"{}")
                } else {
                    b
                }
            });
            decode::decode::<serde_json::Value>(&headers, body, &SELF_SUBJECT_REVIEW).map(drop)
        });
    match result {
        Ok(_) => {
            let status = SelfSubjectReviewStatus { user_info: caller };
            let review = Review {
                kind: "SelfSubjectReview",
                api_version: GROUP_VERSION,
                metadata: Empty {},
                spec: None,
                status,
            };
            (StatusCode::CREATED, axum::Json(review)).into_response()
        }
        Err(status) => status.into_response(),
    }
}

#[cfg(test)]
mod protobuf_tests {
    use super::decode::protobuf_type_meta;

    /// What kubectl 1.3x sends for `auth whoami` (captured), and variations of it.
    fn envelope(api_version: &str, kind: &str) -> Vec<u8> {
        let mut type_meta = vec![0x0a, u8::try_from(api_version.len()).unwrap()];
        type_meta.extend_from_slice(api_version.as_bytes());
        type_meta.extend_from_slice(&[0x12, u8::try_from(kind.len()).unwrap()]);
        type_meta.extend_from_slice(kind.as_bytes());
        let mut body = b"k8s\0".to_vec();
        body.extend_from_slice(&[0x0a, u8::try_from(type_meta.len()).unwrap()]);
        body.extend_from_slice(&type_meta);
        body.extend_from_slice(&[0x12, 0x04, 0x0a, 0x00, 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00]);
        body
    }

    #[test]
    fn the_type_meta_of_a_protobuf_envelope_is_read() {
        let body = envelope("authentication.k8s.io/v1", "SelfSubjectReview");
        assert_eq!(
            protobuf_type_meta(&body),
            Some((
                "authentication.k8s.io/v1".to_owned(),
                "SelfSubjectReview".to_owned()
            ))
        );
    }

    #[test]
    fn bodies_that_are_not_protobuf_envelopes_are_refused() {
        assert_eq!(protobuf_type_meta(b"{}"), None);
        assert_eq!(protobuf_type_meta(b"k8s\0"), None);
        assert_eq!(protobuf_type_meta(b"k8s\0\x0a\xff"), None);
        let truncated = envelope("authentication.k8s.io/v1", "SelfSubjectReview");
        assert_eq!(protobuf_type_meta(&truncated[..12]), None);
    }
}
