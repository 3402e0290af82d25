//! What `tokenvend token` prints or writes: the bare token, the service's JSON document, a
//! kubeconfig or a kubectl ExecCredential. The kubeconfig is built here from the JSON answer's
//! plain data (cluster, service account, token): a server cannot make it run a command
//! (`exec`) or point at a cluster of its choosing beside the one it names.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::service::{ClusterData, TokenDocument, check_transport};
use crate::k8s::{ExecCredential, KubeconfigCluster, kubeconfig};
use crate::policy::ServiceAccountRef;

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

/// Renders a token document as `output`.
///
/// # Errors
/// For [`Output::Kubeconfig`]: the answer names no cluster or service account, or names them
/// in a form that cannot be used (an API server URL that is not `https://` or loopback
/// `http://`, trust roots that are not base64 of PEM text, an invalid service account).
pub fn render(document: &TokenDocument, output: Output) -> anyhow::Result<String> {
    Ok(match output {
        Output::Token => format!("{}\n", document.token),
        Output::Json => to_json(document),
        Output::ExecCredential => to_json(&ExecCredential::new(
            &document.token,
            document.expiration_timestamp,
        )),
        Output::Kubeconfig => client_kubeconfig(document)?,
    })
}

fn client_kubeconfig(document: &TokenDocument) -> anyhow::Result<String> {
    let (Some(cluster), Some(account)) = (&document.cluster, &document.service_account) else {
        anyhow::bail!(
            "the server's answer names no cluster or service account to build a kubeconfig \
             from; use a newer tokenvend server, or --output token|json|exec-credential"
        );
    };
    let account = ServiceAccountRef::parse(&format!("{}/{}", account.namespace, account.name))
        .map_err(|m| {
            anyhow::anyhow!("the server's answer names an invalid service account: {m}")
        })?;
    Ok(kubeconfig(&cluster_of(cluster)?, &account, &document.token))
}

fn cluster_of(cluster: &ClusterData) -> anyhow::Result<KubeconfigCluster> {
    check_transport(&cluster.server, "the server's answer: cluster.server")?;
    let ca_pem = cluster
        .certificate_authority_data
        .as_deref()
        .map(|data| {
            let pem = STANDARD.decode(data).ok().and_then(|b| String::from_utf8(b).ok());
            pem.ok_or_else(|| {
                anyhow::anyhow!("the server's answer: cluster.certificateAuthorityData is not base64 of PEM text")
            })
        })
        .transpose()?;
    Ok(KubeconfigCluster {
        server: cluster.server.clone(),
        ca_pem,
    })
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
            "serviceAccount": {"namespace": "production", "name": "deployer"},
            "policy": "deploy",
            "cluster": {"server": "https://k8s.example.com", "certificateAuthorityData": STANDARD.encode("PEM")},
        }))
        .unwrap()
    }

    fn kubeconfig_of(document: &TokenDocument) -> anyhow::Result<serde_json::Value> {
        let text = render(document, Output::Kubeconfig)?;
        Ok(serde_saphyr::from_str(&text).unwrap())
    }

    #[test]
    fn the_kubeconfig_output_is_built_from_the_answers_cluster_and_service_account() {
        let parsed = kubeconfig_of(&document()).unwrap();
        assert_eq!(
            parsed["clusters"][0]["cluster"]["server"],
            "https://k8s.example.com"
        );
        assert_eq!(
            parsed["clusters"][0]["cluster"]["certificate-authority-data"],
            STANDARD.encode("PEM")
        );
        assert_eq!(
            parsed["users"][0]["user"],
            serde_json::json!({"token": "a.b.c"})
        );
        assert_eq!(parsed["contexts"][0]["context"]["namespace"], "production");
    }

    #[test]
    fn a_kubeconfig_is_refused_when_the_answer_cannot_make_a_safe_one() {
        let rows: Vec<(&str, serde_json::Value)> = vec![
            ("no cluster", serde_json::Value::Null),
            (
                "plain http",
                serde_json::json!({"server": "http://k8s.example.com"}),
            ),
            (
                "not a url",
                serde_json::json!({"server": "k8s.example.com"}),
            ),
            (
                "ca not base64",
                serde_json::json!({"server": "https://k8s", "certificateAuthorityData": "%%%"}),
            ),
        ];
        for (case, cluster) in rows {
            let mut document = document();
            document.cluster = serde_json::from_value(cluster).unwrap();
            assert!(kubeconfig_of(&document).is_err(), "{case}");
        }
        let mut document = document();
        document.service_account.as_mut().unwrap().namespace = "a b".into();
        assert!(kubeconfig_of(&document).is_err(), "invalid service account");
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
