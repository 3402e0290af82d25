//! Service accounts a grant names: fixed (`production/deployer`) or templated from claims
//! (`ci-${claims.repository_owner}/deployer`). A rendered name must still be a valid
//! Kubernetes name, or the grant gives nothing: it never becomes a request to Kubernetes.

use std::fmt;

use serde_json::{Map, Value};

use super::ServiceAccountRef;

/// A `NAMESPACE/NAME` as written in a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantedAccount {
    Fixed(ServiceAccountRef),
    Templated { text: String, parts: Vec<Part> },
}

/// A piece of a templated name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    /// `${claims.NAME}`: a top-level claim, which must be a string (or an integer).
    Claim(String),
}

impl GrantedAccount {
    /// Parses a grant entry; a template must have the shape of a valid name once filled in.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.contains("${") {
            return ServiceAccountRef::parse(text).map(Self::Fixed);
        }
        let parts = parse_parts(text)?;
        let sample: String = parts
            .iter()
            .map(|p| {
                if let Part::Literal(l) = p {
                    l.as_str()
                } else {
                    "x"
                }
            })
            .collect();
        ServiceAccountRef::parse(&sample).map_err(|e| format!("even filled in, {e}"))?;
        if !namespace_has_literal(&parts) {
            return Err(
                "the namespace needs a literal part (e.g. `ci-${claims.repository_id}`): a \
                 placeholder alone would let the caller's claims pick any namespace"
                    .to_owned(),
            );
        }
        Ok(Self::Templated {
            text: text.to_owned(),
            parts,
        })
    }

    /// The service account for these claims, if the rendered name is valid.
    pub fn render(&self, claims: &Map<String, Value>) -> Result<ServiceAccountRef, String> {
        let parts = match self {
            Self::Fixed(sa) => return Ok(sa.clone()),
            Self::Templated { parts, .. } => parts,
        };
        let mut text = String::new();
        for part in parts {
            match part {
                Part::Literal(literal) => text.push_str(literal),
                Part::Claim(name) => match claims.get(name) {
                    Some(Value::String(value)) => text.push_str(value),
                    Some(Value::Number(number)) if number.is_u64() || number.is_i64() => {
                        text.push_str(&number.to_string());
                    }
                    _ => return Err(format!("claim `{name}` is missing or not a string")),
                },
            }
        }
        ServiceAccountRef::parse(&text).map_err(|e| format!("rendered name is invalid: {e}"))
    }

    /// The claims a template reads, in order (none for a fixed account).
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        let parts: &[Part] = match self {
            Self::Fixed(_) => &[],
            Self::Templated { parts, .. } => parts,
        };
        parts.iter().filter_map(|part| match part {
            Part::Claim(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The fixed service account, if this entry is not a template.
    pub fn fixed(&self) -> Option<&ServiceAccountRef> {
        match self {
            Self::Fixed(sa) => Some(sa),
            Self::Templated { .. } => None,
        }
    }

    /// The namespace with each placeholder written `*` (`ci-${claims.x}/d` → `ci-*`).
    pub fn namespace_shape(&self) -> String {
        let parts = match self {
            Self::Fixed(sa) => return sa.namespace().to_owned(),
            Self::Templated { parts, .. } => parts,
        };
        let mut shape = String::new();
        for part in parts {
            match part {
                Part::Literal(literal) => match literal.split_once('/') {
                    Some((before, _)) => {
                        shape.push_str(before);
                        return shape;
                    }
                    None => shape.push_str(literal),
                },
                Part::Claim(_) => shape.push('*'),
            }
        }
        shape
    }

    /// The namespace and name as written (templates unrendered).
    pub fn written_parts(&self) -> (String, String) {
        let text = self.to_string();
        let (namespace, name) = text.split_once('/').unwrap_or((text.as_str(), ""));
        (namespace.to_owned(), name.to_owned())
    }

    /// Whether some claims could make this entry name `namespace/name`.
    pub fn could_name(&self, namespace: &str, name: &str) -> bool {
        match self {
            Self::Fixed(sa) => sa.namespace() == namespace && sa.name() == name,
            Self::Templated { parts, .. } => {
                let pattern: String = parts
                    .iter()
                    .map(|part| match part {
                        Part::Literal(literal) => regex::escape(literal),
                        Part::Claim(_) => "[a-z0-9.-]+".to_owned(),
                    })
                    .collect();
                regex::Regex::new(&format!("^(?:{pattern})$"))
                    .is_ok_and(|re| re.is_match(&format!("{namespace}/{name}")))
            }
        }
    }
}

impl fmt::Display for GrantedAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(sa) => write!(f, "{sa}"),
            Self::Templated { text, .. } => f.write_str(text),
        }
    }
}

/// Whether the namespace (everything before the first `/`, which only a literal can hold)
/// has a character of its own besides placeholders.
fn namespace_has_literal(parts: &[Part]) -> bool {
    for part in parts {
        if let Part::Literal(literal) = part {
            return match literal.split_once('/') {
                Some((namespace, _)) => !namespace.is_empty(),
                None => true,
            };
        }
    }
    false
}

fn parse_parts(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            parts.push(Part::Literal(rest[..start].to_owned()));
        }
        let Some(end) = rest[start..].find('}') else {
            return Err("unterminated `${`".to_owned());
        };
        let expression = &rest[start + 2..start + end];
        let Some(name) = expression.strip_prefix("claims.") else {
            return Err(format!(
                "`${{{expression}}}`: only `${{claims.NAME}}` is supported"
            ));
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "`${{{expression}}}`: a claim name is letters, digits and `_`"
            ));
        }
        parts.push(Part::Claim(name.to_owned()));
        rest = &rest[start + end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::claims;
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_render_from_claims_into_valid_names_only() {
        let template = GrantedAccount::parse("ci-${claims.repository_owner}/deployer").unwrap();
        let rows = [
            (json!({"repository_owner": "acme"}), Ok("ci-acme/deployer")),
            (
                json!({"repository_owner": "Acme"}),
                Err("rendered name is invalid"),
            ),
            (
                json!({"repository_owner": "acme/evil"}),
                Err("rendered name is invalid"),
            ),
            (
                json!({"repository_owner": "acme\n"}),
                Err("rendered name is invalid"),
            ),
            (
                json!({"repository_owner": "a*"}),
                Err("rendered name is invalid"),
            ),
            (
                json!({"repository_owner": ""}),
                Err("rendered name is invalid"),
            ),
            (
                json!({"repository_owner": ["acme"]}),
                Err("missing or not a string"),
            ),
            (json!({}), Err("missing or not a string")),
            (json!({"repository_owner": 42}), Ok("ci-42/deployer")),
        ];
        for (value, expected) in rows {
            let rendered = template
                .render(&claims(value.clone()))
                .map(|sa| sa.to_string());
            match expected {
                Ok(name) => assert_eq!(rendered.as_deref(), Ok(name), "{value}"),
                Err(text) => assert!(rendered.unwrap_err().contains(text), "{value}"),
            }
        }
    }

    #[test]
    fn malformed_templates_are_refused_at_load() {
        for text in [
            "ci-${claims.owner/deployer",
            "ci-${owner}/deployer",
            "ci-${claims.}/deployer",
            "ci-${claims.a.b}/deployer",
            "${claims.ns}",
            "CI-${claims.owner}/deployer",
            "ci-${claims.owner}/deployer/x",
        ] {
            assert!(GrantedAccount::parse(text).is_err(), "{text}");
        }
        // A namespace that is nothing but placeholders lets the caller's claims pick any
        // namespace at all, kube-system included.
        for text in [
            "${claims.environment}/deployer",
            "${claims.ns}/${claims.name}",
            "${claims.a}${claims.b}/deployer",
        ] {
            let message = GrantedAccount::parse(text).unwrap_err();
            assert!(message.contains("literal part"), "{text}: {message}");
        }
        for text in [
            "ci-${claims.ns}/deployer",
            "${claims.team}-ci/deployer",
            "${claims.a}-${claims.b}/x",
        ] {
            assert!(GrantedAccount::parse(text).is_ok(), "{text}");
        }
        assert!(
            GrantedAccount::parse("production/deployer")
                .unwrap()
                .fixed()
                .is_some()
        );
        assert!(
            GrantedAccount::parse("ns-${claims.ns}/${claims.name}")
                .unwrap()
                .fixed()
                .is_none()
        );
    }
}
