//! apimachinery's name and key validation, with its exact messages: what `ValidateObjectMeta`
//! and `ValidateSecret` report for a Secret. Two generations of helpers live side by side
//! upstream and word length limits differently: `k8s.io/apimachinery/pkg/util/validation`
//! (names, config keys: "characters") and `pkg/api/validate/content` (label keys and values,
//! which `util/validation` now forwards to: "bytes").

use std::collections::BTreeMap;

use super::errors::FieldError;

const DNS1123_SUBDOMAIN_MAX: usize = 253;
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const LABEL_KEY_MAX: usize = 63;
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_KEY_EXAMPLES: &[&str] = &["MyName", "my.name", "123-abc"];
const LABEL_VALUE_MAX: usize = 63;
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
/// `core.MaxSecretSize`: the sum of a Secret's data values.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;
/// `TotalAnnotationSizeLimitB`: the sum of the annotations' keys and values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// The unit a length limit is worded in: `util/validation` says characters,
/// `validate/content` says bytes (both count bytes).
#[derive(Debug, Clone, Copy)]
enum Unit {
    Characters,
    Bytes,
}

/// `RegexError`: the message, the examples, and the pattern.
fn regex_error(message: &str, pattern: &str, examples: &[&str]) -> String {
    let mut text = format!("{message} (e.g. ");
    for (index, example) in examples.iter().enumerate() {
        if index > 0 {
            text.push_str(" or ");
        }
        text.push_str(&format!("'{example}', "));
    }
    text.push_str(&format!("regex used for validation is '{pattern}')"));
    text
}

fn max_len_error(length: usize, unit: Unit) -> String {
    match unit {
        Unit::Characters => format!("must be no more than {length} characters"),
        Unit::Bytes => format!("must be no more than {length} bytes"),
    }
}

fn alphanumeric(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// One DNS-1123 label of a subdomain: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn is_dns_label(part: &str) -> bool {
    part.starts_with(alphanumeric)
        && part.ends_with(alphanumeric)
        && part.chars().all(|c| alphanumeric(c) || c == '-')
}

/// `IsDNS1123Subdomain` of `util/validation`: what names are checked with.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    subdomain(value, Unit::Characters)
}

fn subdomain(value: &str, unit: Unit) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX, unit));
    }
    if !value.split('.').all(is_dns_label) {
        errors.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errors
}

/// `NameIsDNSSubdomain(name, prefix)`, the Secret's `ValidateNameFunc`. A prefix (a
/// `generateName`) is checked with `maskTrailingDash`: when it is longer than one character
/// and ends in '-', its last two characters are replaced by "a" (so "a.-" passes as "aa").
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    if prefix && name.len() > 1 && name.ends_with('-') {
        let mut masked = name.as_bytes()[..name.len() - 2].to_vec();
        masked.push(b'a');
        return dns1123_subdomain(&String::from_utf8_lossy(&masked));
    }
    dns1123_subdomain(name)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, the empty string excluded.
fn is_qualified_name_part(value: &str) -> bool {
    value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `IsQualifiedName`, which is `content.IsLabelKey`: an optional DNS-subdomain prefix and
/// `/`, then a name part.
pub fn qualified_name(value: &str) -> Vec<String> {
    let parts: Vec<&str> = value.split('/').collect();
    let mut errors = Vec::new();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                errors.extend(
                    subdomain(prefix, Unit::Bytes)
                        .into_iter()
                        .map(|e| format!("prefix part {e}")),
                );
            }
            *name
        }
        _ => {
            return vec![format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(LABEL_KEY_RULE, LABEL_KEY_FMT, LABEL_KEY_EXAMPLES)
            )];
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > LABEL_KEY_MAX {
        errors.push(format!(
            "name part {}",
            max_len_error(LABEL_KEY_MAX, Unit::Bytes)
        ));
    }
    // The regex is matched even against an empty name part, which fails it too.
    if !is_qualified_name_part(name) {
        errors.push(format!(
            "name part {}",
            regex_error(LABEL_KEY_RULE, LABEL_KEY_FMT, LABEL_KEY_EXAMPLES)
        ));
    }
    errors
}

/// `IsValidLabelValue`, which is `content.IsLabelValue`.
pub fn label_value(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        errors.push(max_len_error(LABEL_VALUE_MAX, Unit::Bytes));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errors.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errors
}

/// `IsConfigMapKey`: the keys of a Secret's `data`.
pub fn config_map_key(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX, Unit::Characters));
    }
    if value.is_empty()
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        errors.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if value == "." {
        errors.push("must not be '.'".to_owned());
    } else if value == ".." {
        errors.push("must not be '..'".to_owned());
    } else if value.starts_with("..") {
        errors.push("must not start with '..'".to_owned());
    }
    errors
}

/// `field.Invalid(path, value, detail)`.
pub fn invalid(field: &str, value: &str, detail: &str) -> FieldError {
    FieldError {
        field: field.to_owned(),
        reason: "FieldValueInvalid",
        body: format!("Invalid value: {value:?}: {detail}"),
    }
}

/// `field.NotSupported(path, value, supported)`: a value that is not a plain string is
/// printed as JSON, as `ErrorBody` does.
pub fn not_supported(field: &str, value: &serde_json::Value, supported: &[&str]) -> FieldError {
    let value = match value {
        serde_json::Value::String(text) => format!("{text:?}"),
        other => other.to_string(),
    };
    let supported: Vec<String> = supported.iter().map(|v| format!("{v:?}")).collect();
    FieldError {
        field: field.to_owned(),
        reason: "FieldValueNotSupported",
        body: format!(
            "Unsupported value: {value}: supported values: {}",
            supported.join(", ")
        ),
    }
}

/// `field.Required(path, detail)`.
pub fn required(field: &str, detail: &str) -> FieldError {
    let body = if detail.is_empty() {
        "Required value".to_owned()
    } else {
        format!("Required value: {detail}")
    };
    FieldError {
        field: field.to_owned(),
        reason: "FieldValueRequired",
        body,
    }
}

/// `ValidateLabels`: every key a qualified name, every value a label value.
pub fn labels(labels: &BTreeMap<String, String>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in labels {
        for detail in qualified_name(key) {
            errors.push(invalid("metadata.labels", key, &detail));
        }
        for detail in label_value(value) {
            errors.push(invalid("metadata.labels", value, &detail));
        }
    }
    errors
}

/// `field.TooLong(path, _, limit)`: the value is left out of the message.
pub fn too_long(field: &str, limit: usize) -> FieldError {
    let unit = if limit == 1 { "byte" } else { "bytes" };
    FieldError {
        field: field.to_owned(),
        reason: "FieldValueTooLong",
        body: format!("Too long: may not be more than {limit} {unit}"),
    }
}

/// `ValidateAnnotations`: every key, lower-cased, a qualified name; then the keys and values
/// together at most 256 KiB.
pub fn annotations(annotations: &BTreeMap<String, String>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for key in annotations.keys() {
        for detail in qualified_name(&key.to_lowercase()) {
            errors.push(invalid("metadata.annotations", key, &detail));
        }
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > TOTAL_ANNOTATION_SIZE_LIMIT {
        errors.push(too_long(
            "metadata.annotations",
            TOTAL_ANNOTATION_SIZE_LIMIT,
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_follow_rfc_1123() {
        assert!(dns1123_subdomain("tokenvend-x7k2p").is_empty());
        assert!(dns1123_subdomain("a.b-c").is_empty());
        assert_eq!(
            dns1123_subdomain("Bad_Name"),
            [
                r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert_eq!(dns1123_subdomain(&"a".repeat(254)).len(), 1);
        assert_eq!(dns1123_subdomain("a..b").len(), 1);
    }

    #[test]
    fn config_keys_list_their_examples_like_regex_error() {
        assert!(config_map_key("token").is_empty());
        assert_eq!(
            config_map_key("a b"),
            [
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
            ]
        );
        assert_eq!(config_map_key(".."), ["must not be '..'"]);
        assert_eq!(config_map_key("..x"), ["must not start with '..'"]);
    }

    #[test]
    fn label_keys_may_have_a_prefix_and_values_may_be_empty() {
        assert!(qualified_name("tokenvend.io/expires").is_empty());
        assert!(qualified_name("app.kubernetes.io/managed-by").is_empty());
        assert_eq!(qualified_name("Bad.io/x").len(), 1);
        assert_eq!(qualified_name("a/b/c").len(), 1);
        assert!(label_value("").is_empty());
        assert!(label_value("1784887200").is_empty());
        assert_eq!(label_value("-x").len(), 1);
        assert_eq!(
            label_value(&"a".repeat(64)),
            ["must be no more than 63 bytes"]
        );
    }

    #[test]
    fn a_generate_name_prefix_has_its_trailing_dash_masked() {
        assert!(name_is_dns_subdomain("tokenvend-", true).is_empty());
        // The last two characters become "a": "a.-" is checked as "aa".
        assert!(name_is_dns_subdomain("a.-", true).is_empty());
        assert_eq!(name_is_dns_subdomain("a.-", false).len(), 1);
        assert_eq!(name_is_dns_subdomain("-", true).len(), 1);
    }

    #[test]
    fn too_long_leaves_the_value_out() {
        let error = too_long("data", MAX_SECRET_SIZE);
        assert_eq!(
            (error.reason, error.body.as_str()),
            (
                "FieldValueTooLong",
                "Too long: may not be more than 1048576 bytes"
            )
        );
        assert_eq!(
            too_long("x", 1).body,
            "Too long: may not be more than 1 byte"
        );
    }

    #[test]
    fn annotation_keys_are_checked_lower_cased() {
        let keys = |key: &str| BTreeMap::from([(key.to_owned(), "any value at all".to_owned())]);
        assert!(annotations(&keys("Tokenvend.io/Expires-At")).is_empty());
        let errors = annotations(&keys("a b"));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "metadata.annotations");
        assert!(
            errors[0]
                .body
                .starts_with(r#"Invalid value: "a b": name part must consist"#)
        );
    }
}
