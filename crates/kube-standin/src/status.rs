//! `metav1.Status`, the body of every kube-apiserver error, and the response headers
//! `responsewriters` adds to it. The constructors live in `errors`.
//!
//! Field order is part of the contract (clients and snapshot tests see the raw text), so the
//! body is a `#[derive(Serialize)]` struct in Go's declaration order, with Go's `omitempty`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error response from the stand-in: a `metav1.Status`, or the plain-text 429 the
/// max-in-flight and priority-and-fairness filters write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    Status(Status),
    /// `Too many requests, please try again later.` as plain text, with `Retry-After`.
    TooManyRequests {
        retry_after: u64,
    },
}

/// `metav1.Status` for a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    /// `ListMeta` is a struct, which Go's `omitempty` never drops: always `{}`.
    metadata: EmptyObject,
    status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'static str,
    /// Boxed to keep `Result<_, Status>` small.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Box<StatusDetails>>,
    pub code: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct EmptyObject {}

/// `metav1.StatusDetails`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusDetails {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "is_zero")]
    pub retry_after_seconds: u64,
}

/// `metav1.StatusCause`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusCause {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl Status {
    /// A `Failure` Status; the constructors in `errors` fill it in as apimachinery does.
    pub(super) fn failure(
        code: u16,
        reason: &'static str,
        message: String,
        details: Option<StatusDetails>,
    ) -> Self {
        Self {
            kind: "Status",
            api_version: "v1",
            metadata: EmptyObject {},
            status: "Failure",
            message,
            reason,
            details: details.map(Box::new),
            code,
        }
    }

    /// Sets `details.retryAfterSeconds`, which also makes the response carry `Retry-After`.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.details
            .get_or_insert_with(Box::default)
            .retry_after_seconds = seconds;
        self
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        ApiError::Status(status)
    }
}

impl IntoResponse for Status {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&self).expect("a Status always serialises");
        let mut response =
            (code, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        let headers = response.headers_mut();
        if matches!(self.code, 401 | 403) {
            headers.insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
        }
        if let Some(seconds) = self
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0)
        {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Status(status) => status.into_response(),
            ApiError::TooManyRequests { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    ),
                    (
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    ),
                    (header::RETRY_AFTER, HeaderValue::from(retry_after)),
                ],
                "Too many requests, please try again later.\n",
            )
                .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(status: &Status) -> String {
        serde_json::to_string(status).unwrap()
    }

    #[test]
    fn unauthorized_is_byte_for_byte_the_authentication_filters_body() {
        assert_eq!(
            text(&Status::unauthorized()),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#
        );
    }

    #[test]
    fn retry_after_sets_the_header() {
        let response = Status::service_unavailable("apiserver is shutting down")
            .with_retry_after(3)
            .into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "3");
    }

    #[test]
    fn only_401_and_403_carry_nosniff() {
        assert!(
            Status::unauthorized()
                .into_response()
                .headers()
                .contains_key("x-content-type-options")
        );
        assert!(
            !Status::bad_request("x")
                .into_response()
                .headers()
                .contains_key("x-content-type-options")
        );
    }
}
