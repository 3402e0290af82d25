//! Request-body decoding as `createHandler` does it: input media-type negotiation (415), the
//! decode with the endpoint's group/version/kind as the default (400), and unknown fields,
//! which the default `fieldValidation=Warn` turns into `Warning` headers.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::status::Status;

/// kube-apiserver's `maxRequestBodyBytes`: 3 MiB.
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The fields a type accepts; `None` children are not checked further (free-form maps, or
/// parts whose fields the stand-in ignores).
pub struct Schema {
    pub fields: &'static [(&'static str, Option<&'static Schema>)],
}

/// The type an endpoint decodes.
pub struct ApiType {
    pub group_version: &'static str,
    pub kind: &'static str,
    pub schema: &'static Schema,
}

/// `ObjectMeta`'s fields.
pub static OBJECT_META: Schema = Schema {
    fields: &[
        ("name", None),
        ("generateName", None),
        ("namespace", None),
        ("selfLink", None),
        ("uid", None),
        ("resourceVersion", None),
        ("generation", None),
        ("creationTimestamp", None),
        ("deletionTimestamp", None),
        ("deletionGracePeriodSeconds", None),
        ("labels", None),
        ("annotations", None),
        ("ownerReferences", None),
        ("finalizers", None),
        ("managedFields", None),
    ],
};

/// The decoded body and the warnings it earned.
pub struct Decoded<T> {
    pub object: T,
    pub warnings: Vec<String>,
}

/// Decodes a create body as `T`.
///
/// # Errors
/// 415 for a media type other than JSON (YAML is accepted when the body is JSON, which is
/// valid YAML), 400 for a body that is not a JSON object, names another kind, or has fields
/// of the wrong type.
pub fn decode<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    api: &ApiType,
) -> Result<Decoded<T>, Status> {
    check_media_type(headers)?;
    let body = read(body)?;
    let body = body.as_ref();
    let unrecognized = |error: &dyn std::fmt::Display| {
        Status::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): {error} ({})",
            api.kind,
            summarize(body)
        ))
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| unrecognized(&e))?;
    let Value::Object(object) = value else {
        return Err(unrecognized(
            &"couldn't get version/kind; json parse error: expected an object",
        ));
    };
    let text_field = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let group_version = text_field("apiVersion").unwrap_or_else(|| api.group_version.to_owned());
    let kind = text_field("kind").unwrap_or_else(|| api.kind.to_owned());
    let version = group_version.rsplit('/').next().unwrap_or_default();
    let cannot_handle = |error: &dyn std::fmt::Display| {
        Status::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {}: {error}",
            api.kind
        ))
    };
    if (group_version.as_str(), kind.as_str()) != (api.group_version, api.kind) {
        return Err(cannot_handle(&format!(
            "no kind {kind:?} is registered for version {group_version:?} in scheme \"pkg/api/legacyscheme/scheme.go:30\""
        )));
    }
    let mut warnings = Vec::new();
    unknown_fields(&object, api.schema, "", &mut warnings);
    let object = serde_json::from_value(Value::Object(object)).map_err(|e| cannot_handle(&e))?;
    Ok(Decoded { object, warnings })
}

/// The body as the router read it: over [`MAX_REQUEST_BODY_BYTES`] is 413, as kube's
/// `limitedReadBody` answers.
fn read(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Status> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Status::request_entity_too_large(MAX_REQUEST_BODY_BYTES)
        } else {
            Status::bad_request(rejection.body_text())
        }
    })
}

/// A missing Content-Type means JSON; parameters such as `charset` are ignored.
/// The Kubernetes protobuf media type (kubectl's default for built-in kinds).
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// Whether the body is declared as Kubernetes protobuf.
pub fn is_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(PROTOBUF))
}

/// The `apiVersion` and `kind` of a Kubernetes protobuf body: the magic `k8s\0`, then a
/// `runtime.Unknown` whose field 1 is the `TypeMeta` {1: apiVersion, 2: kind}. Enough for
/// kinds whose request carries no fields (SelfSubjectReview); `None` if it is not such a body.
pub fn protobuf_type_meta(body: &[u8]) -> Option<(String, String)> {
    let unknown = body.strip_prefix(b"k8s\0")?;
    let type_meta = protobuf_field(unknown, 1)?;
    let text = |number| String::from_utf8(protobuf_field(type_meta, number)?.to_vec()).ok();
    Some((text(1)?, text(2)?))
}

/// The first length-delimited field `number` of a protobuf message.
fn protobuf_field(mut message: &[u8], number: u64) -> Option<&[u8]> {
    while !message.is_empty() {
        let key = read_varint(&mut message)?;
        match key & 7 {
            0 => {
                read_varint(&mut message)?;
            }
            2 => {
                let len = usize::try_from(read_varint(&mut message)?).ok()?;
                let (value, rest) = (message.get(..len)?, message.get(len..)?);
                if key >> 3 == number {
                    return Some(value);
                }
                message = rest;
            }
            _ => return None,
        }
    }
    None
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn check_media_type(headers: &HeaderMap) -> Result<(), Status> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media_type = value.to_str().unwrap_or_default();
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "application/yaml" => Ok(()),
        _ => Err(Status::unsupported_media_type()),
    }
}

fn unknown_fields(
    object: &Map<String, Value>,
    schema: &Schema,
    prefix: &str,
    warnings: &mut Vec<String>,
) {
    for (name, value) in object {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match schema.fields.iter().find(|(field, _)| field == name) {
            None => warnings.push(format!("unknown field {path:?}")),
            Some((_, Some(child))) => {
                if let Value::Object(inner) = value {
                    unknown_fields(inner, child, &path, warnings);
                }
            }
            Some((_, None)) => {}
        }
    }
}

/// apiserver's `summarizeData(body, 30)`.
fn summarize(body: &[u8]) -> String {
    if body.is_empty() {
        return "<empty>".into();
    }
    let text = String::from_utf8_lossy(body);
    if text.chars().count() > 30 {
        let head: String = text.chars().take(30).collect();
        format!("{head} ...")
    } else {
        text.into_owned()
    }
}

/// The `Warning` header value for `text`: `299 - "<text>"`.
pub fn warning_header(text: &str) -> String {
    format!("299 - {text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    static SPEC: Schema = Schema {
        fields: &[("audiences", None)],
    };
    static ROOT: Schema = Schema {
        fields: &[
            ("apiVersion", None),
            ("kind", None),
            ("metadata", Some(&OBJECT_META)),
            ("spec", Some(&SPEC)),
        ],
    };
    static TYPE: ApiType = ApiType {
        group_version: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        schema: &ROOT,
    };

    fn ok(body: &[u8]) -> Result<Bytes, BytesRejection> {
        Ok(Bytes::copy_from_slice(body))
    }

    fn json_headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", content_type.parse().unwrap());
        headers
    }

    #[test]
    fn unknown_fields_become_warnings_with_their_full_path() {
        let body = br#"{"spec":{"audiences":[],"foo":1},"bar":true}"#;
        let decoded = decode::<Value>(&HeaderMap::new(), ok(body), &TYPE).unwrap();
        assert_eq!(
            decoded.warnings,
            [r#"unknown field "bar""#, r#"unknown field "spec.foo""#]
        );
        assert_eq!(
            warning_header(&decoded.warnings[1]),
            r#"299 - "unknown field \"spec.foo\"""#
        );
    }

    #[test]
    fn a_wrong_kind_cannot_be_handled() {
        let body = br#"{"apiVersion":"v1","kind":"ConfigMap"}"#;
        let status = decode::<Value>(&HeaderMap::new(), ok(body), &TYPE)
            .err()
            .unwrap();
        assert_eq!(status.code, 400);
        assert!(
            status
                .message
                .starts_with(r#"ConfigMap in version "v1" cannot be handled as a TokenRequest: "#)
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_unrecognized() {
        let status = decode::<Value>(&HeaderMap::new(), ok(b"not json"), &TYPE)
            .err()
            .unwrap();
        assert_eq!((status.code, status.reason), (400, "BadRequest"));
        assert!(
            status.message.starts_with(
                "the object provided is unrecognized (must be of type TokenRequest): "
            )
        );
        assert!(status.message.ends_with("(not json)"));
    }

    #[test]
    fn media_type_parameters_are_ignored_and_other_types_refused() {
        assert!(
            decode::<Value>(
                &json_headers("application/json; charset=utf-8"),
                ok(b"{}"),
                &TYPE
            )
            .is_ok()
        );
        let status = decode::<Value>(&json_headers("text/plain"), ok(b"{}"), &TYPE)
            .err()
            .unwrap();
        assert_eq!(status.code, 415);
    }
}
