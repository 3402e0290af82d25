//! The Status constructors of apimachinery's `pkg/api/errors` (`NewNotFound`, `NewConflict`,
//! `NewInvalid`, `NewForbidden`, ...), with their exact messages and details.

use axum::http::StatusCode;

use super::status::{Status, StatusCause, StatusDetails};

/// A `schema.GroupResource` (or a `GroupKind`, which prints the same way).
#[derive(Debug, Clone, Copy)]
pub struct GroupResource<'a> {
    pub group: &'a str,
    pub resource: &'a str,
}

impl GroupResource<'_> {
    /// `resource` or `resource.group`, as Go's `GroupResource.String()`.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    fn details(&self, name: &str) -> StatusDetails {
        StatusDetails {
            name: name.to_owned(),
            group: self.group.to_owned(),
            kind: self.resource.to_owned(),
            ..StatusDetails::default()
        }
    }
}

/// A `field.Error` of type `FieldValueInvalid`.
#[derive(Debug, Clone)]
pub struct InvalidField {
    pub field: String,
    /// The offending value as Go's `%v`/`%q` prints it: integers bare, strings quoted.
    pub value: String,
    pub detail: String,
}

/// A `field.Error` of any type: its path, its `CauseType` and `ErrorBody()`.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueTooLong`, ...
    pub reason: &'static str,
    /// `Invalid value: "x": detail`, `Required value: detail`, ...
    pub body: String,
}

impl InvalidField {
    fn body(&self) -> String {
        format!("Invalid value: {}: {}", self.value, self.detail)
    }
}

impl Status {
    /// `NewUnauthorized("Unauthorized")`, as the authentication filter writes it.
    pub fn unauthorized() -> Self {
        Self::failure(401, "Unauthorized", "Unauthorized".into(), None)
    }

    /// `NewNotFound`: `<resource> "<name>" not found`.
    pub fn not_found(resource: GroupResource<'_>, name: &str) -> Self {
        let message = format!("{} {name:?} not found", resource.qualified());
        Self::failure(404, "NotFound", message, Some(resource.details(name)))
    }

    /// The router's 404 for a path no handler serves.
    pub fn no_such_path() -> Self {
        Self::failure(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            Some(StatusDetails::default()),
        )
    }

    /// `NewBadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::failure(400, "BadRequest", message.into(), None)
    }

    /// `NewConflict`: `Operation cannot be fulfilled on <resource> "<name>": <err>`.
    pub fn conflict(resource: GroupResource<'_>, name: &str, err: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} {name:?}: {err}",
            resource.qualified()
        );
        Self::failure(409, "Conflict", message, Some(resource.details(name)))
    }

    /// `NewInvalid(kind, name, errs)`: 422 with one cause per field error.
    pub fn invalid(kind: GroupResource<'_>, name: &str, errors: &[InvalidField]) -> Self {
        let errors: Vec<FieldError> = errors
            .iter()
            .map(|e| FieldError {
                field: e.field.clone(),
                reason: "FieldValueInvalid",
                body: e.body(),
            })
            .collect();
        Self::invalid_fields(kind, name, &errors)
    }

    /// `NewInvalid(kind, name, errs)` for field errors of any type.
    pub fn invalid_fields(kind: GroupResource<'_>, name: &str, errors: &[FieldError]) -> Self {
        let listed: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.body))
            .collect();
        let aggregate = match listed.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let message = format!("{} {name:?} is invalid: {aggregate}", kind.qualified());
        let causes = errors
            .iter()
            .map(|e| StatusCause {
                reason: e.reason,
                message: e.body.clone(),
                field: e.field.clone(),
            })
            .collect();
        Self::failure(
            422,
            "Invalid",
            message,
            Some(StatusDetails {
                causes,
                ..kind.details(name)
            }),
        )
    }

    /// `NewAlreadyExists`: `<resource> "<name>" already exists`.
    pub fn already_exists(resource: GroupResource<'_>, name: &str) -> Self {
        let message = format!("{} {name:?} already exists", resource.qualified());
        Self::failure(409, "AlreadyExists", message, Some(resource.details(name)))
    }

    /// `NewForbidden`, as `ForbiddenStatusError` builds it: the message is HTML-escaped and
    /// carries `: <reason>` only when the authorizer gave a reason.
    pub fn forbidden(resource: GroupResource<'_>, name: &str, message: &str, reason: &str) -> Self {
        let err = if reason.is_empty() {
            message.to_owned()
        } else {
            format!("{message}: {reason}")
        };
        let text = if resource.resource.is_empty() && resource.group.is_empty() {
            format!("forbidden: {err}")
        } else if name.is_empty() {
            format!("{} is forbidden: {err}", resource.qualified())
        } else {
            format!("{} {name:?} is forbidden: {err}", resource.qualified())
        };
        Self::failure(
            403,
            "Forbidden",
            escape_html(&text),
            Some(resource.details(name)),
        )
    }

    /// `NewInternalError(err)`.
    pub fn internal(err: &str) -> Self {
        let cause = StatusCause {
            message: err.to_owned(),
            ..StatusCause::default()
        };
        let details = StatusDetails {
            causes: vec![cause],
            ..StatusDetails::default()
        };
        Self::failure(
            500,
            "InternalError",
            format!("Internal error occurred: {err}"),
            Some(details),
        )
    }

    /// `NewServiceUnavailable(reason)`.
    pub fn service_unavailable(message: &str) -> Self {
        Self::failure(503, "ServiceUnavailable", message.to_owned(), None)
    }

    /// The request-timeout Status of the create handler's finisher.
    pub fn timeout() -> Self {
        let message = "Timeout: request did not complete within requested timeout - context deadline exceeded";
        Self::failure(
            504,
            "Timeout",
            message.to_owned(),
            Some(StatusDetails::default()),
        )
    }

    /// A 405 for a method the path does not support.
    pub fn method_not_allowed() -> Self {
        let message = "the server does not allow this method on the requested resource";
        Self::failure(
            405,
            "MethodNotAllowed",
            message.to_owned(),
            Some(StatusDetails::default()),
        )
    }

    /// `NewUnsupportedMediaType`-style 415 of input negotiation.
    pub fn unsupported_media_type() -> Self {
        let message = "the body of the request was in an unknown format - accepted media types include: \
                       application/json, application/yaml, application/vnd.kubernetes.protobuf";
        Self::failure(415, "UnsupportedMediaType", message.to_owned(), None)
    }

    /// `NewRequestEntityTooLargeError` for a body over the read limit.
    pub fn request_entity_too_large(limit: usize) -> Self {
        let message = format!("Request entity too large: limit is {limit}");
        Self::failure(413, "RequestEntityTooLarge", message, None)
    }

    /// A Status for an arbitrary code, the way `NewGenericServerResponse` reasons about it.
    pub fn generic(code: u16) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            500..=599 => "InternalError",
            _ => "",
        };
        let phrase = StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        Self::failure(
            code,
            reason,
            format!(
                "the server responded with the status code {code} but did not return more information ({phrase})"
            ),
            None,
        )
    }
}

/// The `sanitizer` of `responsewriters`: `&`, `<`, `>` become entities.
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORE: &str = "";

    fn text(status: &Status) -> String {
        serde_json::to_string(status).unwrap()
    }

    #[test]
    fn not_found_names_the_plural_resource_in_details() {
        let status = Status::not_found(
            GroupResource {
                group: CORE,
                resource: "serviceaccounts",
            },
            "billing",
        );
        assert_eq!(
            text(&status),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"serviceaccounts \"billing\" not found","reason":"NotFound","details":{"name":"billing","kind":"serviceaccounts"},"code":404}"#
        );
    }

    #[test]
    fn several_invalid_fields_aggregate_in_brackets() {
        let field = |f: &str| InvalidField {
            field: f.into(),
            value: "1".into(),
            detail: "bad".into(),
        };
        let status = Status::invalid(
            GroupResource {
                group: "g",
                resource: "K",
            },
            "",
            &[field("a"), field("b")],
        );
        assert_eq!(
            status.message,
            r#"K.g "" is invalid: [a: Invalid value: 1: bad, b: Invalid value: 1: bad]"#
        );
        assert_eq!(status.details.unwrap().causes.len(), 2);
    }

    #[test]
    fn forbidden_escapes_html_and_appends_a_reason_only_when_there_is_one() {
        let gr = GroupResource {
            group: CORE,
            resource: "secrets",
        };
        let plain = Status::forbidden(gr, "", r#"User "<x>" cannot list"#, "");
        assert_eq!(
            plain.message,
            r#"secrets is forbidden: User "&lt;x&gt;" cannot list"#
        );
        let with_reason =
            Status::forbidden(gr, "s", "User \"x\" cannot get", "RBAC: role not found");
        assert_eq!(
            with_reason.message,
            r#"secrets "s" is forbidden: User "x" cannot get: RBAC: role not found"#
        );
    }

    #[test]
    fn a_non_resource_forbidden_has_empty_details() {
        let status = Status::forbidden(
            GroupResource {
                group: "",
                resource: "",
            },
            "",
            "User \"system:anonymous\" cannot get path \"/openid/v1/jwks\"",
            "",
        );
        assert_eq!(
            text(&status),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"forbidden: User \"system:anonymous\" cannot get path \"/openid/v1/jwks\"","reason":"Forbidden","details":{},"code":403}"#
        );
    }

    #[test]
    fn internal_error_lists_its_cause() {
        assert_eq!(
            text(&Status::internal("failed to generate token: boom")),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Internal error occurred: failed to generate token: boom","reason":"InternalError","details":{"causes":[{"message":"failed to generate token: boom"}]},"code":500}"#
        );
    }
}
