//! The vocabulary of revocable tokens: the Secret a revocable token is bound to (its type,
//! labels and annotations), the label selectors that find bindings again, and the expiry
//! buckets they are swept by. Everything that creates, revokes or sweeps bindings (the
//! exchange, `POST /oauth2/revoke`, `tokenvend revoke`, the sweeper, `tokenvend rbac`) uses
//! these names, so they cannot drift apart. docs/revocation.md explains the design.
//!
//! [`calls`] holds the service's own API calls on bindings (create, delete one, sweep, review
//! a presented token); [`operator`] the search and delete of `tokenvend revoke`, which runs
//! with an operator's credentials.

pub mod calls;
pub mod operator;

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The `type` of every binding Secret. The admission policy `tokenvend rbac` prints lets
/// tokenvend create and delete Secrets of this type only, and only without data.
pub const BINDING_TYPE: &str = "tokenvend.io/token-binding";
/// `metadata.generateName` of binding Secrets; revocation refuses to act on a Secret whose
/// name does not start with it.
pub const NAME_PREFIX: &str = "tokenvend-";

/// The standard label naming the tool that manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "tokenvend";
/// The granting policy's name (`team.policy` for a team file's policy).
pub const POLICY_LABEL: &str = "tokenvend.io/policy";
/// The issuer's name in the config.
pub const ISSUER_LABEL: &str = "tokenvend.io/issuer";
/// [`subject_digest`] of the caller's `(iss, sub)`.
pub const SUBJECT_LABEL: &str = "tokenvend.io/subject";
/// [`service_account_digest`] of the bound token's service account. Revocation deletes a
/// binding only through a selector on this label, with the digest of the service account the
/// TokenReview authenticated: a token can end only a binding of its own service account.
pub const SERVICE_ACCOUNT_LABEL: &str = "tokenvend.io/service-account";
/// [`expiry_bucket`] of the latest the minted token can expire, as decimal Unix seconds.
pub const EXPIRES_LABEL: &str = "tokenvend.io/expires";

/// The latest the bound token can expire (RFC 3339): the time of the Secret's create plus
/// the lifetime asked for plus what was left of the mint deadline (`kubernetes.requestTimeout`,
/// retries included), since the TokenRequest may be sent that much later and the API server
/// counts the lifetime from then. The token itself may expire up to that much earlier.
pub const EXPIRES_AT_ANNOTATION: &str = "tokenvend.io/expires-at";
/// The caller's `sub` claim, as presented (the label holds only its digest).
pub const SUBJECT_ANNOTATION: &str = "tokenvend.io/subject";
/// The caller's issuer URL (`iss`).
pub const ISSUER_URL_ANNOTATION: &str = "tokenvend.io/issuer-url";
/// `NAMESPACE/NAME` of the service account the bound token is for.
pub const SERVICE_ACCOUNT_ANNOTATION: &str = "tokenvend.io/service-account";

/// Width of an expiry bucket: a binding's `tokenvend.io/expires` label is its token's expiry
/// rounded up to a multiple of this, so a sweep can name whole buckets in a label selector.
pub const BUCKET_SECONDS: i64 = 600;

/// Annotation values longer than this are cut (claim text is caller-controlled).
const MAX_ANNOTATION_CHARS: usize = 1024;

/// The first 32 hex digits of SHA-256 over `iss`, a zero byte and `sub`: a caller identity
/// that fits a label value and carries no claim text.
pub fn subject_digest(iss: &str, sub: &str) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(iss.as_bytes());
    context.update(&[0]);
    context.update(sub.as_bytes());
    let digest = context.finish();
    digest.as_ref()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The first 32 hex digits of SHA-256 over `NAMESPACE/NAME` of a service account: the
/// service account as a label value (a namespace and a name together can be longer than 63
/// characters).
pub fn service_account_digest(namespace: &str, name: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{namespace}/{name}").as_bytes(),
    );
    digest.as_ref()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `unix_seconds` rounded up to the next multiple of [`BUCKET_SECONDS`] (itself if it is one).
/// A binding in bucket `b` holds a token that expires at or before `b`, so once `b` is in the
/// past every binding in it is expired.
pub fn expiry_bucket(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(BUCKET_SECONDS) * BUCKET_SECONDS
        + if unix_seconds.rem_euclid(BUCKET_SECONDS) == 0 {
            0
        } else {
            BUCKET_SECONDS
        }
}

/// Whether `value` is a valid Kubernetes label value: at most 63 characters, empty or
/// alphanumeric at both ends with `-`, `_`, `.` and alphanumerics between. (Defined in
/// `policy`, which checks revocable policies' names at load and depends on nothing.)
pub use crate::policy::is_label_value;

/// Who a binding is for: everything its labels and annotations record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSpec<'a> {
    /// The service account's namespace: the binding lives next to it.
    pub namespace: &'a str,
    pub service_account: &'a str,
    /// Policy name as labelled (`team.policy` for team policies); a valid label value.
    pub policy: &'a str,
    /// Issuer name from the config; a valid label value.
    pub issuer: &'a str,
    /// The caller's `iss` and `sub` claims.
    pub iss: &'a str,
    pub sub: &'a str,
    /// The latest the bound token can expire (see [`EXPIRES_AT_ANNOTATION`]).
    pub expires: Timestamp,
}

impl BindingSpec<'_> {
    /// The Secret to create (`generateName`, no data): the API server names it and gives it
    /// the uid the TokenRequest's `boundObjectRef` then carries.
    pub fn secret(&self) -> Secret {
        let labels = BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
            (POLICY_LABEL.to_owned(), self.policy.to_owned()),
            (ISSUER_LABEL.to_owned(), self.issuer.to_owned()),
            (SUBJECT_LABEL.to_owned(), subject_digest(self.iss, self.sub)),
            (
                SERVICE_ACCOUNT_LABEL.to_owned(),
                service_account_digest(self.namespace, self.service_account),
            ),
            (
                EXPIRES_LABEL.to_owned(),
                expiry_bucket(self.expires.as_second()).to_string(),
            ),
        ]);
        let annotations = BTreeMap::from([
            (EXPIRES_AT_ANNOTATION.to_owned(), self.expires.to_string()),
            (SUBJECT_ANNOTATION.to_owned(), capped(self.sub)),
            (ISSUER_URL_ANNOTATION.to_owned(), capped(self.iss)),
            (
                SERVICE_ACCOUNT_ANNOTATION.to_owned(),
                format!("{}/{}", self.namespace, self.service_account),
            ),
        ]);
        Secret {
            metadata: ObjectMeta {
                generate_name: Some(NAME_PREFIX.to_owned()),
                namespace: Some(self.namespace.to_owned()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            type_: Some(BINDING_TYPE.to_owned()),
            ..Secret::default()
        }
    }
}

fn capped(text: &str) -> String {
    text.chars().take(MAX_ANNOTATION_CHARS).collect()
}

/// A label selector for bindings: always `managed-by=tokenvend`, then the given conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub policy: Option<String>,
    pub issuer: Option<String>,
    /// [`subject_digest`] value.
    pub subject: Option<String>,
    /// [`service_account_digest`] value.
    pub service_account: Option<String>,
    /// Expiry buckets (`tokenvend.io/expires in (...)`).
    pub expiry_buckets: Vec<i64>,
}

impl Selector {
    /// The field selector that goes with every selection (`fieldSelector=`): the binding type
    /// only. Labels alone could match a Secret of another type that merely carries them; the
    /// admission policy would refuse to delete it, and with it every collection delete that
    /// includes it.
    pub fn to_field_selector(&self) -> String {
        format!("type={BINDING_TYPE}")
    }

    /// The selector text for a list or collection delete (`labelSelector=`).
    pub fn to_label_selector(&self) -> String {
        let mut terms = vec![format!("{MANAGED_BY_LABEL}={MANAGED_BY}")];
        if let Some(policy) = &self.policy {
            terms.push(format!("{POLICY_LABEL}={policy}"));
        }
        if let Some(issuer) = &self.issuer {
            terms.push(format!("{ISSUER_LABEL}={issuer}"));
        }
        if let Some(subject) = &self.subject {
            terms.push(format!("{SUBJECT_LABEL}={subject}"));
        }
        if let Some(service_account) = &self.service_account {
            terms.push(format!("{SERVICE_ACCOUNT_LABEL}={service_account}"));
        }
        if !self.expiry_buckets.is_empty() {
            let buckets: Vec<String> = self.expiry_buckets.iter().map(i64::to_string).collect();
            terms.push(format!("{EXPIRES_LABEL} in ({})", buckets.join(",")));
        }
        terms.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_digest_is_32_hex_digits_of_sha256_of_iss_nul_sub() {
        // Computed independently: `printf 'a\0b' | sha256sum | cut -c1-32`.
        let digest = subject_digest("a", "b");
        assert_eq!(digest, "59b271ae1bbcb1d31d41929817f4b16f");
        assert!(digest.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(subject_digest("a", "b"), subject_digest("a\0", "b"));
        assert_ne!(subject_digest("ab", ""), subject_digest("a", "b"));
        assert!(is_label_value(&digest));
    }

    #[test]
    fn service_account_digest_is_32_hex_digits_of_sha256_of_namespace_slash_name() {
        // Computed independently: `printf 'payments/deployer' | sha256sum | cut -c1-32`.
        let digest = service_account_digest("payments", "deployer");
        assert_eq!(digest, "e9b5d1890370eb85a867637fac97ec3a");
        assert!(is_label_value(&digest));
        assert_ne!(
            service_account_digest("payments", "deployer"),
            service_account_digest("payment", "sdeployer")
        );
    }

    #[test]
    fn expiry_buckets_round_up_to_ten_minutes() {
        assert_eq!(expiry_bucket(0), 0);
        assert_eq!(expiry_bucket(1), 600);
        assert_eq!(expiry_bucket(600), 600);
        assert_eq!(expiry_bucket(601), 1200);
        assert_eq!(expiry_bucket(1_784_887_199), 1_784_887_200);
    }

    #[test]
    fn label_values_follow_kubernetes_rules() {
        for good in ["", "deploy-webapp", "payments.deploy", "a", "A_b.c-9"] {
            assert!(is_label_value(good), "{good:?}");
        }
        let long = "a".repeat(64);
        for bad in ["-a", "a-", "a b", "a/b", "é", long.as_str()] {
            assert!(!is_label_value(bad), "{bad:?}");
        }
        assert!(is_label_value(&"a".repeat(63)));
    }

    #[test]
    fn a_binding_secret_has_no_data_and_every_label() {
        let expires: Timestamp = "2026-11-30T10:05:00Z".parse().unwrap();
        let secret = BindingSpec {
            namespace: "payments",
            service_account: "deployer",
            policy: "deploy-webapp",
            issuer: "github",
            iss: "https://token.actions.githubusercontent.com",
            sub: "repo:acme/webapp:ref:refs/heads/main",
            expires,
        }
        .secret();
        assert_eq!(secret.type_.as_deref(), Some(BINDING_TYPE));
        assert!(secret.data.is_none() && secret.string_data.is_none());
        assert_eq!(secret.metadata.generate_name.as_deref(), Some("tokenvend-"));
        assert_eq!(secret.metadata.name, None);
        let labels = secret.metadata.labels.unwrap();
        assert_eq!(
            labels[EXPIRES_LABEL],
            expiry_bucket(expires.as_second()).to_string()
        );
        assert_eq!(labels[POLICY_LABEL], "deploy-webapp");
        assert_eq!(
            labels[SERVICE_ACCOUNT_LABEL],
            service_account_digest("payments", "deployer")
        );
        assert!(labels.values().all(|value| is_label_value(value)));
        let annotations = secret.metadata.annotations.unwrap();
        assert_eq!(annotations[SERVICE_ACCOUNT_ANNOTATION], "payments/deployer");
        assert_eq!(annotations[EXPIRES_AT_ANNOTATION], "2026-11-30T10:05:00Z");
    }

    #[test]
    fn selectors_always_name_tokenvend() {
        assert_eq!(
            Selector::default().to_label_selector(),
            "app.kubernetes.io/managed-by=tokenvend"
        );
        let selector = Selector {
            policy: Some("p".into()),
            expiry_buckets: vec![600, 1200],
            ..Selector::default()
        };
        assert_eq!(
            selector.to_label_selector(),
            "app.kubernetes.io/managed-by=tokenvend,tokenvend.io/policy=p,tokenvend.io/expires in (600,1200)"
        );
    }
}
