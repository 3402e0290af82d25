//! What `tokenvend token` prints or writes: the bare token, the service's JSON document, a
//! kubeconfig (rendered by the service, which knows the cluster), or a kubectl ExecCredential.

use super::service::TokenDocument;
use crate::http::ExecCredential;

/// The rendering of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// The bare token and a newline.
    Token,
    /// The service's JSON document (token, expirationTimestamp, serviceAccount, ...).
    Json,
    /// A kubeconfig for the service account.
    Kubeconfig,
    /// A `client.authentication.k8s.io/v1` ExecCredential, for kubectl exec plugins.
    ExecCredential,
}

/// Renders a token document as `output`; `None` for [`Output::Kubeconfig`], which only the
/// service can render.
pub fn render(document: &TokenDocument, output: Output) -> Option<String> {
    let text = match output {
        Output::Token => format!("{}\n", document.token),
        Output::Json => to_json(document),
        Output::ExecCredential => to_json(&ExecCredential::new(
            &document.token,
            document.expiration_timestamp,
        )),
        Output::Kubeconfig => return None,
    };
    Some(text)
}

fn to_json(value: &impl serde::Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("documents serialise");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> TokenDocument {
        serde_json::from_value(serde_json::json!({
            "token": "a.b.c",
            "expirationTimestamp": "2030-01-01T00:00:00Z",
            "policy": "deploy"
        }))
        .unwrap()
    }

    #[test]
    fn the_token_output_is_the_bare_token_and_a_newline() {
        assert_eq!(render(&document(), Output::Token).unwrap(), "a.b.c\n");
    }

    #[test]
    fn the_json_output_keeps_every_field_of_the_service() {
        let text = render(&document(), Output::Json).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["policy"], "deploy");
        assert_eq!(value["expirationTimestamp"], "2030-01-01T00:00:00Z");
    }

    #[test]
    fn the_exec_credential_output_carries_token_and_expiry() {
        let text = render(&document(), Output::ExecCredential).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["kind"], "ExecCredential");
        assert_eq!(value["status"]["token"], "a.b.c");
        assert_eq!(
            value["status"]["expirationTimestamp"],
            "2030-01-01T00:00:00Z"
        );
    }
}
