//! Who a request is from, once authenticated: the user the authenticators produce and the
//! authorizer and the reviews consume (kube-apiserver's `user.Info`, in its
//! `authentication.k8s.io/v1` form). Depends on nothing else in the stand-in.

use std::collections::BTreeMap;

use serde::Serialize;

/// `authentication.k8s.io/v1 UserInfo`, with Go's `omitempty` on every field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The group of every authenticated user.
const AUTHENTICATED: &str = "system:authenticated";

impl UserInfo {
    pub(crate) fn anonymous() -> Self {
        Self {
            username: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..Self::default()
        }
    }

    /// The authenticated-group adder: every authenticated user is in `system:authenticated`.
    pub(crate) fn with_authenticated_group(mut self) -> Self {
        if !self.groups.iter().any(|g| g == AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.into());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_user_info_serialises_as_an_empty_object() {
        assert_eq!(serde_json::to_string(&UserInfo::default()).unwrap(), "{}");
    }
}
