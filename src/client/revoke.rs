//! `tokenvend token --revoke FILE`: hands a token back to the service at the end of a job
//! (`POST /oauth2/revoke`), so that a copy leaked into a log or an artefact stops working at
//! once instead of at its expiry. FILE is anything `tokenvend token` writes: the bare token,
//! the JSON answer (also the exec-credential cache file), an ExecCredential, or a kubeconfig
//! with one user token; `-` reads standard input. The token is never printed.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::SecretString;

use super::service::{RevokeAnswer, Service};

/// Attempts in all, the first included, when the service answers 503 or 429 or cannot be
/// reached.
pub const MAX_ATTEMPTS: u32 = 4;
/// Wait between attempts when the service names no `Retry-After`.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);
/// A longer `Retry-After` is cut to this: a job's last step should not hang.
const MAX_WAIT: Duration = Duration::from_secs(10);
/// Token files larger than this are refused (kubeconfigs with CA data fit easily).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads the token from `path` (`-`: stdin), revokes it, retrying a busy or unreachable
/// service a few times.
///
/// # Errors
/// No token in the file, a refusal (other than 503/429) by the service, or no success within
/// [`MAX_ATTEMPTS`].
pub async fn run(service: &Service, path: &Path) -> anyhow::Result<()> {
    let token = read_token(path)?;
    let mut attempt = 1;
    loop {
        let wait = match service.revoke(&token).await {
            Ok(RevokeAnswer::Done) => {
                eprintln!("token revoked");
                return Ok(());
            }
            Ok(RevokeAnswer::Later(wait)) => {
                let wait = wait.unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
                tracing::warn!(
                    attempt,
                    wait_seconds = wait.as_secs(),
                    "tokenvend is busy or cannot reach Kubernetes; retrying the revocation"
                );
                wait
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(attempt, %error, "revocation failed; retrying");
                DEFAULT_WAIT
            }
            Err(error) => return Err(error).context("revoking the token"),
        };
        anyhow::ensure!(
            attempt < MAX_ATTEMPTS,
            "the token was not revoked: tokenvend was busy or unreachable {MAX_ATTEMPTS} times"
        );
        attempt += 1;
        tokio::time::sleep(wait).await;
    }
}

fn read_token(path: &Path) -> anyhow::Result<SecretString> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_FILE_BYTES)
            .read_to_string(&mut text)
            .context("reading the token from stdin")?;
    } else {
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_FILE_BYTES).read_to_string(&mut text))
            // The argument is never echoed: it may be the token itself, given by mistake.
            .context(
                "--revoke: the file cannot be read (give the path of a file that holds the \
                 token, or - for stdin; not the token itself)",
            )?;
    }
    let token = token_in(&text).context(
        "--revoke: no token found in the file (expected a token, tokenvend's JSON answer, an \
         ExecCredential or a kubeconfig with one user token)",
    )?;
    Ok(SecretString::from(token))
}

/// The token in what `tokenvend token` writes, in any of its outputs.
fn token_in(text: &str) -> Option<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(trimmed) {
        // The JSON answer / cache file: `token`; an ExecCredential: `status.token`.
        let token = json
            .get("token")
            .or_else(|| json.get("status").and_then(|s| s.get("token")))
            .and_then(serde_json::Value::as_str)?;
        return usable(token);
    }
    if trimmed.contains("users:") {
        let yaml: serde_json::Value = serde_saphyr::from_str(trimmed).ok()?;
        let tokens: Vec<&str> = yaml
            .get("users")?
            .as_array()?
            .iter()
            .filter_map(|u| u.get("user")?.get("token")?.as_str())
            .collect();
        return match tokens.as_slice() {
            [one] => usable(one),
            _ => None,
        };
    }
    usable(trimmed)
}

/// A token is one line of visible characters.
fn usable(token: &str) -> Option<String> {
    let token = token.trim();
    (!token.is_empty() && token.chars().all(|c| c.is_ascii_graphic())).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::token_in;

    #[test]
    fn the_token_is_found_in_every_output_of_tokenvend_token() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
        for text in [
            format!("{token}\n"),
            format!(r#"{{"token":"{token}","expirationTimestamp":"2026-11-30T10:00:00Z"}}"#),
            format!(
                r#"{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"token":"{token}"}}}}"#
            ),
            format!(
                "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: {token}\n"
            ),
        ] {
            assert_eq!(token_in(&text).as_deref(), Some(token), "{text}");
        }
        // And as `tokenvend token` itself renders each output.
        let document: super::super::service::TokenDocument =
            serde_json::from_value(serde_json::json!({
                "token": token,
                "expirationTimestamp": "2030-01-01T00:00:00Z",
                "serviceAccount": {"namespace": "production", "name": "deployer"},
                "cluster": {"server": "https://k8s.example.com"},
            }))
            .unwrap();
        for output in [
            super::super::output::Output::Token,
            super::super::output::Output::Json,
            super::super::output::Output::ExecCredential,
            super::super::output::Output::Kubeconfig,
        ] {
            let text = super::super::output::render(&document, output).unwrap();
            assert_eq!(
                token_in(&text).as_deref(),
                Some(token),
                "{output:?}: {text}"
            );
        }
        for bad in ["", "  \n", "two words", r#"{"other":1}"#, "users: []\n"] {
            assert_eq!(token_in(bad), None, "{bad:?}");
        }
    }
}
