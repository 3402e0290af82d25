//! Label and field selectors of list calls, with apimachinery's syntax: `k=v`, `k==v`, `k!=v`,
//! `k`, `!k`, `k in (a,b)` and `k notin (a,b)` for labels; `k=v`, `k==v`, `k!=v` for fields.

use std::collections::BTreeMap;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

/// A parsed field selector: `(field, value, equal)` terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, String, bool)>);

/// Splits on commas that are not inside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(text[start..index].trim());
                start = index + 1;
            }
            _ => {}
        }
    }
    terms.push(text[start..].trim());
    terms.into_iter().filter(|term| !term.is_empty()).collect()
}

fn valid_key(key: &str) -> Result<String, String> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_owned())
    } else {
        Err(format!(
            "unable to parse requirement: invalid label key {key:?}"
        ))
    }
}

fn set_values(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'));
    let inner = inner.ok_or_else(|| {
        format!("unable to parse requirement: expected a parenthesised set, found {text:?}")
    })?;
    Ok(inner
        .split(',')
        .map(|value| value.trim().to_owned())
        .collect())
}

impl LabelSelector {
    /// Parses `labelSelector`.
    ///
    /// # Errors
    /// A message for the 400 Status when the selector does not parse.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for term in split_terms(text) {
            let requirement = if let Some(key) = term.strip_prefix('!') {
                Requirement::DoesNotExist(valid_key(key.trim())?)
            } else if let Some((key, values)) = term.split_once(" notin ") {
                Requirement::NotIn(valid_key(key.trim())?, set_values(values)?)
            } else if let Some((key, values)) = term.split_once(" in ") {
                Requirement::In(valid_key(key.trim())?, set_values(values)?)
            } else if let Some((key, value)) = term.split_once("!=") {
                Requirement::NotEquals(valid_key(key.trim())?, value.trim().to_owned())
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                Requirement::Equals(valid_key(key.trim())?, value.trim().to_owned())
            } else {
                Requirement::Exists(valid_key(term)?)
            };
            requirements.push(requirement);
        }
        Ok(Self(requirements))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(key, value) => labels.get(key) == Some(value),
            Requirement::NotEquals(key, value) => labels.get(key) != Some(value),
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        })
    }
}

impl FieldSelector {
    /// Parses `fieldSelector`, accepting only the fields in `supported`.
    ///
    /// # Errors
    /// A message for the 400 Status: a term that does not parse, or an unsupported field.
    pub fn parse(text: &str, supported: &[&str], custom: bool) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in split_terms(text) {
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, v, true)
            } else {
                return Err(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                ));
            };
            let field = field.trim();
            if !supported.contains(&field) {
                return Err(if custom {
                    format!("field label not supported: {field}")
                } else {
                    format!(
                        "{field:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    )
                });
            }
            terms.push((field.to_owned(), value.trim().to_owned(), equal));
        }
        Ok(Self(terms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, fields: &BTreeMap<&'static str, String>) -> bool {
        self.0.iter().all(|(field, value, equal)| {
            let actual = fields.get(field.as_str()).map_or("", String::as_str);
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_selectors_match_like_apimachinery() {
        let object = labels(&[("app", "web"), ("tier", "front")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app in (web,api)", true),
            ("app notin (web,api)", false),
            ("missing notin (x)", true),
            ("app=web,tier=back", false),
            ("app in (api, web),tier", true),
        ];
        for (selector, expected) in cases {
            assert_eq!(
                LabelSelector::parse(selector).unwrap().matches(&object),
                expected,
                "{selector}"
            );
        }
    }

    #[test]
    fn malformed_label_selectors_are_refused() {
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("=x").is_err());
    }

    #[test]
    fn field_selectors_accept_only_supported_fields() {
        let supported = ["metadata.name", "type"];
        let selector =
            FieldSelector::parse("type=kubernetes.io/service-account-token", &supported, true)
                .unwrap();
        let fields = BTreeMap::from([("type", "kubernetes.io/service-account-token".to_owned())]);
        assert!(selector.matches(&fields));
        let error = FieldSelector::parse("spec.x=1", &supported, true).unwrap_err();
        assert_eq!(error, "field label not supported: spec.x");
        assert!(
            FieldSelector::parse("type!=Opaque", &supported, true)
                .unwrap()
                .matches(&fields)
        );
    }
}
