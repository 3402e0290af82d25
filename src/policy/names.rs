//! Kubernetes object names: the only service-account names a policy may grant or a caller may ask for.

use std::fmt;

/// A `NAMESPACE/NAME` reference to a ServiceAccount, both parts valid Kubernetes names:
/// the namespace a DNS-1123 label, the name a DNS-1123 subdomain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceAccountRef {
    namespace: String,
    name: String,
}

impl ServiceAccountRef {
    /// Parses `NAMESPACE/NAME`; refuses anything Kubernetes would refuse, so that an invalid
    /// name is a caller error here and never a request to the API server.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((namespace, name)) = text.split_once('/') else {
            return Err("expected NAMESPACE/NAME".to_owned());
        };
        if !is_dns1123_label(namespace) {
            return Err("namespace is not a valid DNS-1123 label".to_owned());
        }
        if !is_dns1123_subdomain(name) {
            return Err("name is not a valid DNS-1123 subdomain".to_owned());
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ServiceAccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// RFC 1123 label as Kubernetes validates it: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns1123_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// RFC 1123 subdomain as Kubernetes validates it: at most 253 characters of dot-separated labels.
pub fn is_dns1123_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns1123_label)
}

/// Whether `value` is a valid Kubernetes label value: at most 63 characters, empty or
/// alphanumeric at both ends with `-`, `_`, `.` and alphanumerics between.
pub fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return true;
    }
    let inner = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.');
    bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_references_parse() {
        let sa = ServiceAccountRef::parse("production/deployer.v2").unwrap();
        assert_eq!((sa.namespace(), sa.name()), ("production", "deployer.v2"));
        assert_eq!(sa.to_string(), "production/deployer.v2");
    }

    #[test]
    fn invalid_references_are_refused() {
        for text in [
            "deployer",
            "/deployer",
            "production/",
            "Production/deployer",
            "prod.uction/deployer",
            "production/Deployer",
            "production/-deployer",
            "production/deployer/x",
            "production/deploy er",
            "production/deployer\n",
            "production/dеployer", // Cyrillic е
            "production/..",
        ] {
            assert!(ServiceAccountRef::parse(text).is_err(), "{text:?}");
        }
        let long = format!("ns/{}", "a".repeat(64));
        assert!(ServiceAccountRef::parse(&long).is_err());
    }
}
