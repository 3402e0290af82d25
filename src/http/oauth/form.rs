//! The RFC 8693 §2.1 request: form parameters in, a subject token and a policy [`Request`] out.

use std::borrow::Cow;

use secrecy::SecretString;

use super::{OAuthError, SERVICE_ACCOUNT_SCOPE, TOKEN_EXCHANGE, TYPE_JWT};
use crate::policy::{Request, ServiceAccountRef};

const TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
const TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Parameters RFC 8693 lets a client repeat; every other one must appear at most once.
const REPEATABLE: &[&str] = &["audience", "resource"];

/// A parsed exchange request.
pub struct ExchangeForm {
    pub subject_token: SecretString,
    pub request: Request,
    /// Whether the client sent `scope` (the response then states the granted one).
    pub scoped: bool,
}

/// The RFC 8693 §2.1 parameters. Unknown parameters (`client_id`, ...) are ignored.
pub(super) fn parse_form(body: &[u8]) -> Result<ExchangeForm, OAuthError> {
    let pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = form_urlencoded::parse(body).collect();
    let single = |name: &str| -> Result<Option<&str>, OAuthError> {
        let mut values = pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref());
        let first = values.next();
        if values.next().is_some() && !REPEATABLE.contains(&name) {
            return Err(OAuthError::InvalidRequest(format!(
                "{name} must not be given more than once"
            )));
        }
        Ok(first)
    };
    match single("grant_type")? {
        None => return Err(OAuthError::InvalidRequest("grant_type is required".into())),
        Some(TOKEN_EXCHANGE) => {}
        Some(_) => return Err(OAuthError::UnsupportedGrantType),
    }
    if single("actor_token")?.is_some() || single("actor_token_type")?.is_some() {
        return Err(OAuthError::InvalidRequest(
            "actor_token is not supported: tokenvend does not issue delegated tokens".into(),
        ));
    }
    let subject_token = match single("subject_token")? {
        Some(token) if !token.is_empty() => SecretString::from(token.to_owned()),
        _ => {
            return Err(OAuthError::InvalidRequest(
                "subject_token is required".into(),
            ));
        }
    };
    match single("subject_token_type")? {
        Some(TYPE_ID_TOKEN | TYPE_JWT) => {}
        Some(_) => {
            return Err(OAuthError::InvalidRequest(format!(
                "subject_token_type must be {TYPE_ID_TOKEN} or {TYPE_JWT}"
            )));
        }
        None => {
            return Err(OAuthError::InvalidRequest(
                "subject_token_type is required".into(),
            ));
        }
    }
    if let Some(requested) = single("requested_token_type")?
        && !matches!(requested, TYPE_JWT | TYPE_ACCESS_TOKEN)
    {
        return Err(OAuthError::InvalidRequest(format!(
            "requested_token_type must be {TYPE_JWT} or {TYPE_ACCESS_TOKEN}"
        )));
    }
    let scope = single("scope")?;
    let service_account = scope.map(selected_service_account).transpose()?.flatten();
    let audiences: Vec<String> = pairs
        .iter()
        .filter(|(n, _)| REPEATABLE.contains(&n.as_ref()))
        .map(|(_, v)| v.clone().into_owned())
        .collect();
    let audiences = (!audiences.is_empty()).then_some(audiences);
    let request = Request::new(service_account, audiences, None)
        .map_err(|_| OAuthError::InvalidRequest("audience values must be non-empty".into()))?;
    Ok(ExchangeForm {
        subject_token,
        request,
        scoped: scope.is_some(),
    })
}

/// The service account a space-separated `scope` selects, if any. Scopes without the
/// `serviceaccount:` prefix are ignored (RFC 6749 §3.3 lets a server ignore scopes).
fn selected_service_account(scope: &str) -> Result<Option<ServiceAccountRef>, OAuthError> {
    let mut selected: Option<ServiceAccountRef> = None;
    for value in scope.split(' ').filter(|s| !s.is_empty()) {
        let Some(name) = value.strip_prefix(SERVICE_ACCOUNT_SCOPE) else {
            continue;
        };
        let account = ServiceAccountRef::parse(name)
            .map_err(|m| OAuthError::InvalidScope(format!("scope {SERVICE_ACCOUNT_SCOPE}: {m}")))?;
        if selected.as_ref().is_some_and(|s| *s != account) {
            return Err(OAuthError::InvalidScope(
                "scope may select one service account only".into(),
            ));
        }
        selected = Some(account);
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(extra: &str) -> String {
        format!(
            "grant_type={}&subject_token=a.b.c&subject_token_type={}{extra}",
            form_urlencoded::byte_serialize(TOKEN_EXCHANGE.as_bytes()).collect::<String>(),
            form_urlencoded::byte_serialize(TYPE_ID_TOKEN.as_bytes()).collect::<String>(),
        )
    }

    fn code_of(body: &str) -> &'static str {
        match parse_form(body.as_bytes()) {
            Ok(_) => "ok",
            Err(error) => error.status_and_code().1,
        }
    }

    #[test]
    fn form_parameters_map_to_rfc_6749_codes() {
        let rows = [
            (form(""), "ok"),
            (form("&client_id=ci&resource=https%3A%2F%2Fa"), "ok"),
            (form("&audience=a&audience=b"), "ok"),
            (form("&scope=openid+serviceaccount%3Aprod%2Fdeployer"), "ok"),
            ("subject_token=a.b.c".to_owned(), "invalid_request"),
            (
                form("").replace("token-exchange", "jwt-bearer"),
                "unsupported_grant_type",
            ),
            (form("&grant_type=x"), "invalid_request"),
            (form("&actor_token=x&actor_token_type=y"), "invalid_request"),
            (form("&subject_token=again"), "invalid_request"),
            (form("").replace("id_token", "saml2"), "invalid_request"),
            (
                form("&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Asaml2"),
                "invalid_request",
            ),
            (form("&audience="), "invalid_request"),
            (form("&scope=serviceaccount%3Anot-a-name"), "invalid_scope"),
            (
                form("&scope=serviceaccount%3Aa%2Fb+serviceaccount%3Aa%2Fc"),
                "invalid_scope",
            ),
        ];
        for (body, code) in rows {
            assert_eq!(code_of(&body), code, "{body}");
        }
    }

    #[test]
    fn repeated_audiences_and_resources_all_become_audiences() {
        let parsed = parse_form(form("&audience=a&resource=r&audience=b").as_bytes()).unwrap();
        assert_eq!(
            parsed.request.audiences(),
            Some(&["a".to_owned(), "r".to_owned(), "b".to_owned()][..])
        );
    }
}
