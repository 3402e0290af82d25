//! Service-account token claims: building them as `claims.go` `Claims()` does and validating
//! them as its `validator.Validate` and `jwt.go` `AuthenticateToken` do.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

use super::cluster::{Cluster, uid};
use super::user::UserInfo;
use dev_pki::keys::SigningKey;

/// `WarnOnlyBoundTokenExpirationSeconds`: the lifetime kubelet asks for when it wants an
/// extended token.
pub const WARN_ONLY_EXPIRATION_SECONDS: u64 = 60 * 60 + 7;
/// `ExpirationExtensionSeconds`: one year.
pub const EXTENDED_EXPIRATION_SECONDS: u64 = 24 * 365 * 60 * 60;
/// go-jose's default leeway for `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: u64 = 60;

/// A `{name, uid}` reference inside the `kubernetes.io` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    #[serde(default)]
    pub uid: String,
}

/// What a token is bound to, resolved against the cluster.
#[derive(Debug, Clone, Default)]
pub struct Binding {
    pub pod: Option<ObjectRef>,
    pub secret: Option<ObjectRef>,
    /// For a pod-bound token the pod's node, whose UID is empty when the node is missing.
    pub node: Option<ObjectRef>,
}

/// The inputs of `Claims()`.
pub struct TokenSpec<'a> {
    pub issuer: &'a str,
    pub namespace: &'a str,
    pub service_account: ObjectRef,
    pub audiences: &'a [String],
    /// `now + lifetime` is the JWT's `exp`.
    pub lifetime: u64,
    /// `kubernetes.io.warnafter`, set for extended tokens only.
    pub warn_after: Option<u64>,
    pub binding: Binding,
}

fn reference(object: &ObjectRef) -> Value {
    if object.uid.is_empty() {
        json!({"name": object.name})
    } else {
        json!({"name": object.name, "uid": object.uid})
    }
}

/// The claims of a bound service-account token. A `serde_json::Map` is ordered by key, which
/// gives the sorted order go-jose's normalisation produces.
pub fn build(spec: &TokenSpec<'_>, now: u64) -> Value {
    let mut private = serde_json::Map::new();
    private.insert("namespace".into(), json!(spec.namespace));
    private.insert("serviceaccount".into(), reference(&spec.service_account));
    let binding = &spec.binding;
    for (name, object) in [
        ("pod", &binding.pod),
        ("secret", &binding.secret),
        ("node", &binding.node),
    ] {
        if let Some(object) = object {
            private.insert(name.into(), reference(object));
        }
    }
    if let Some(warn_after) = spec.warn_after {
        private.insert("warnafter".into(), json!(warn_after));
    }
    json!({
        "aud": spec.audiences,
        "exp": now + spec.lifetime,
        "iat": now,
        "iss": spec.issuer,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": private,
        "nbf": now,
        "sub": format!("system:serviceaccount:{}:{}", spec.namespace, spec.service_account.name),
    })
}

/// A token that authenticated: who it is and for which of the requested audiences.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: UserInfo,
    pub audiences: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct SignedClaims {
    #[serde(default)]
    aud: Audiences,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    jti: Option<String>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<Private>,
}

/// `aud` is an array in tokens kube mints, but a single string is valid JWT.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Audiences {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct Private {
    namespace: String,
    serviceaccount: ObjectRef,
    pod: Option<ObjectRef>,
    secret: Option<ObjectRef>,
    node: Option<ObjectRef>,
}

/// Validates a bound service-account token for `targets` (the requested audiences).
///
/// `Ok(None)` when the token is not one of ours (not a JWT, or another issuer), which kube
/// treats as "not handled" rather than as an error. `Err` carries kube's error message.
pub fn validate(
    token: &str,
    issuer: &str,
    key: &SigningKey,
    cluster: &Cluster,
    targets: &[String],
    now: u64,
) -> Result<Option<Authenticated>, String> {
    if unverified_issuer(token).as_deref() != Some(issuer) {
        return Ok(None);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if header.kid.as_deref() != Some(key.kid()) {
        return Err("invalid signature, no keys found".into());
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<SignedClaims>(token, key.decoding_key(), &validation)
        .map_err(|e| format!("failed to verify the token: {e}"))?
        .claims;
    let token_audiences = match claims.aud {
        Audiences::None => Vec::new(),
        Audiences::One(one) => vec![one],
        Audiences::Many(many) => many,
    };
    let audiences: Vec<String> = token_audiences
        .iter()
        .filter(|a| targets.contains(a))
        .cloned()
        .collect();
    if audiences.is_empty() {
        return Err(format!(
            "token audiences {} is invalid for the target audiences {}",
            go_quote(&token_audiences),
            go_quote(targets)
        ));
    }
    check_times(claims.exp, claims.nbf, claims.iat, now)?;
    let private = claims.kubernetes.ok_or(
        "service account token claims could not be validated due to unexpected private claim",
    )?;
    let user = validate_private(&private, cluster, claims.jti.as_deref())?;
    Ok(Some(Authenticated { user, audiences }))
}

/// The `iss` of a JWT, read without verifying anything: only to route it.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("iss")?.as_str().map(str::to_owned)
}

fn check_times(
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    now: u64,
) -> Result<(), String> {
    if exp.is_some_and(|exp| now.saturating_sub(LEEWAY_SECONDS) > exp) {
        return Err("service account token has expired".into());
    }
    if nbf.is_some_and(|nbf| now + LEEWAY_SECONDS < nbf) {
        return Err("service account token is not valid yet".into());
    }
    if iat.is_some_and(|iat| now + LEEWAY_SECONDS < iat) {
        return Err("service account token is issued in the future".into());
    }
    Ok(())
}

const INVALIDATED: &str = "service account token has been invalidated";

fn validate_private(
    private: &Private,
    cluster: &Cluster,
    jti: Option<&str>,
) -> Result<UserInfo, String> {
    let namespace = private.namespace.as_str();
    let account_ref = &private.serviceaccount;
    let account = cluster
        .service_account(namespace, &account_ref.name)
        .ok_or(INVALIDATED)?;
    let account_uid = uid(&account.metadata);
    if account_uid != account_ref.uid {
        return Err(format!(
            "service account UID ({account_uid}) does not match claim ({})",
            account_ref.uid
        ));
    }
    let mut extra = BTreeMap::new();
    if let Some(pod_ref) = &private.pod {
        let pod = cluster.pod(namespace, &pod_ref.name).ok_or(INVALIDATED)?;
        check_uid("pod", uid(&pod.metadata), &pod_ref.uid)?;
        extra.insert(
            "authentication.kubernetes.io/pod-name".to_owned(),
            vec![pod_ref.name.clone()],
        );
        extra.insert(
            "authentication.kubernetes.io/pod-uid".to_owned(),
            vec![pod_ref.uid.clone()],
        );
    }
    if let Some(secret_ref) = &private.secret {
        let secret = cluster
            .secret(namespace, &secret_ref.name)
            .ok_or(INVALIDATED)?;
        check_uid("secret", uid(&secret.metadata), &secret_ref.uid)?;
    }
    if let Some(node_ref) = &private.node {
        // In a pod-bound token the node is informational; only a node-bound token is
        // invalidated with its node.
        if private.pod.is_none() {
            let node = cluster.node(&node_ref.name).ok_or(INVALIDATED)?;
            check_uid("node", uid(&node.metadata), &node_ref.uid)?;
        }
        extra.insert(
            "authentication.kubernetes.io/node-name".to_owned(),
            vec![node_ref.name.clone()],
        );
        if !node_ref.uid.is_empty() {
            extra.insert(
                "authentication.kubernetes.io/node-uid".to_owned(),
                vec![node_ref.uid.clone()],
            );
        }
    }
    if let Some(jti) = jti.filter(|jti| !jti.is_empty()) {
        extra.insert(
            "authentication.kubernetes.io/credential-id".to_owned(),
            vec![format!("JTI={jti}")],
        );
    }
    Ok(UserInfo {
        username: format!("system:serviceaccount:{namespace}:{}", account_ref.name),
        uid: account_uid.to_owned(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
        ],
        extra,
    })
}

fn check_uid(kind: &str, recorded: &str, claimed: &str) -> Result<(), String> {
    if recorded == claimed {
        Ok(())
    } else {
        Err(format!(
            "{kind} UID ({recorded}) does not match service account {kind} ref claim ({claimed})"
        ))
    }
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quote(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_serialise_in_sorted_key_order_with_an_audience_array() {
        let spec = TokenSpec {
            issuer: "https://issuer",
            namespace: "payments",
            service_account: ObjectRef {
                name: "billing".into(),
                uid: "sa".into(),
            },
            audiences: &["one".to_owned()],
            lifetime: 900,
            warn_after: Some(3607),
            binding: Binding {
                pod: Some(ObjectRef {
                    name: "web-0".into(),
                    uid: "pod".into(),
                }),
                node: Some(ObjectRef {
                    name: "node-a".into(),
                    uid: String::new(),
                }),
                secret: None,
            },
        };
        let claims = build(&spec, 100);
        let jti = claims["jti"].as_str().unwrap();
        let expected = format!(
            r#"{{"aud":["one"],"exp":1000,"iat":100,"iss":"https://issuer","jti":"{jti}","kubernetes.io":{{"namespace":"payments","node":{{"name":"node-a"}},"pod":{{"name":"web-0","uid":"pod"}},"serviceaccount":{{"name":"billing","uid":"sa"}},"warnafter":3607}},"nbf":100,"sub":"system:serviceaccount:payments:billing"}}"#
        );
        assert_eq!(serde_json::to_string(&claims).unwrap(), expected);
    }

    #[test]
    fn go_quote_prints_string_slices_like_fmt_q() {
        assert_eq!(go_quote(&["a".into(), "b c".into()]), r#"["a" "b c"]"#);
    }

    #[test]
    fn tokens_of_other_issuers_are_not_handled() {
        assert_eq!(unverified_issuer("not-a-jwt"), None);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"x"}"#);
        assert_eq!(
            unverified_issuer(&format!("e30.{payload}.sig")).as_deref(),
            Some("x")
        );
    }
}
