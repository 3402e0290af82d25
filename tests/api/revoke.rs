//! Revocable tokens against the stand-in: a revocable grant binds each token to a Secret,
//! `POST /oauth2/revoke` deletes it (after a TokenReview) and the API server then refuses the
//! token; forged and garbage tokens revoke nothing; a failed mint leaves no binding; the API
//! down during a revocation is a 503 that a retry recovers from; the sweeper deletes the
//! bindings of expired tokens and no others. docs/revocation.md explains the design.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use k8s_openapi::api::core::v1::Secret;
use kube_standin::{Fault, FaultTarget};
use serde_json::{Value, json};
use tokenvend::k8s;

use test_support::app::{
    CONFIG, REVOCABLE_POLICY, TestApp, assert_error, release_claims, sample, spawn_app_with,
    webapp_claims,
};
use test_support::sandbox::TempDir;

const RELEASER: &str = "system:serviceaccount:production:releaser";
const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// The test config with the revocable `release` policy, and a stand-in whose token success
/// cache lasts `cache`.
async fn spawn(cache: Duration) -> TestApp {
    spawn_app_with(&format!("{CONFIG}{REVOCABLE_POLICY}"), |options| {
        options.token_success_cache_ttl = cache;
    })
    .await
}

/// A revocable token for acme/release (the JSON response).
async fn mint(app: &TestApp, body: Option<Value>) -> Value {
    let response = app.post_token(&app.id_token(release_claims()), body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn revoke(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/oauth2/revoke", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "token={}&token_type_hint=access_token",
            form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap()
}

fn bindings(app: &TestApp) -> Vec<Secret> {
    app.apiserver().secrets()
}

fn name_of(secret: &Secret) -> String {
    format!(
        "{}/{}",
        secret.metadata.namespace.as_deref().unwrap(),
        secret.metadata.name.as_deref().unwrap()
    )
}

/// `kubectl auth whoami` with a kubeconfig of `token` for the stand-in: whether it succeeded,
/// and what it printed.
async fn kubectl_whoami(app: &TestApp, dir: &TempDir, token: &str) -> (bool, String) {
    let kubeconfig: PathBuf = dir.join("config");
    std::fs::write(&kubeconfig, app.apiserver().kubeconfig(token)).unwrap();
    crate::formats::kubectl_whoami(kubeconfig, dir.home()).await
}

/// Waits (at most `within`) until `check` holds.
async fn eventually<F: AsyncFnMut() -> bool>(within: Duration, mut check: F) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_revoked_token_is_refused_by_the_api_server_once_its_cache_entry_expires() {
    let app = spawn(Duration::from_secs(1)).await;
    let issued = mint(&app, None).await;
    assert_eq!(issued["revocable"], true);
    let token = issued["token"].as_str().unwrap().to_owned();
    let stored = bindings(&app);
    assert_eq!(stored.len(), 1);
    let labels = stored[0].metadata.labels.clone().unwrap();
    assert_eq!(labels["tokenvend.io/policy"], "release");
    assert_eq!(labels["tokenvend.io/issuer"], "local");
    assert_eq!(
        stored[0].type_.as_deref(),
        Some("tokenvend.io/token-binding")
    );
    assert!(stored[0].data.is_none());
    let dir = TempDir::new("revoke-whoami");
    let (ok, whoami) = kubectl_whoami(&app, &dir, &token).await;
    assert!(ok, "kubectl auth whoami:\n{whoami}");
    assert_eq!(whoami.trim(), RELEASER);

    let response = revoke(&app, &token).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.text().await.unwrap(), "");
    assert!(bindings(&app).is_empty());
    let mut last = String::new();
    let refused = eventually(Duration::from_secs(20), async || {
        let (ok, text) = kubectl_whoami(&app, &dir, &token).await;
        last = text;
        !ok
    })
    .await;
    assert!(refused, "kubectl still works after revocation:\n{last}");
    assert!(last.contains("Unauthorized"), "{last}");
    assert_ne!(
        app.review(&token, &[API_AUDIENCE]).await.authenticated,
        Some(true)
    );
    // Revoking again changes nothing and says nothing.
    assert_eq!(revoke(&app, &token).await.status(), 200);
    let metrics = app.metrics().await;
    assert_eq!(
        sample(&metrics, r#"tokenvend_revocations_total{via="oauth2"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_requests_total{endpoint="revoke",outcome="revoked"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_requests_total{endpoint="revoke",outcome="invalid_token"}"#
        ),
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_token_minted_for_another_audience_is_revoked_too() {
    let app = spawn(Duration::ZERO).await;
    let issued = mint(
        &app,
        Some(json!({"audiences": ["https://vault.example.com"]})),
    )
    .await;
    let token = issued["token"].as_str().unwrap();
    assert_eq!(
        app.review(token, &["https://vault.example.com"])
            .await
            .authenticated,
        Some(true)
    );

    assert_eq!(revoke(&app, token).await.status(), 200);

    assert!(bindings(&app).is_empty());
    assert_ne!(
        app.review(token, &["https://vault.example.com"])
            .await
            .authenticated,
        Some(true)
    );
    app.stop().await;
}

/// The claims of a JWT, unverified.
fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn forged_and_garbage_tokens_revoke_nothing_and_learn_nothing() {
    let app = spawn(Duration::ZERO).await;
    let victim = mint(&app, None).await;
    let victim_token = victim["token"].as_str().unwrap();
    let before = bindings(&app);
    assert_eq!(before.len(), 1);
    // The victim's claims (its binding's name and uid), signed by another key.
    let forged = app
        .issuer
        .mint(Algorithm::RS256, claims_of(victim_token))
        .unwrap();
    assert_eq!(
        claims_of(&forged)["kubernetes.io"]["secret"]["name"],
        before[0].metadata.name.as_deref().unwrap()
    );
    let reviews_before = app.metrics().await;

    for token in [
        forged.as_str(),
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
    ] {
        let response = revoke(&app, token).await;
        assert_eq!(response.status(), 200, "{token}");
        assert_eq!(response.text().await.unwrap(), "");
    }

    assert_eq!(
        bindings(&app).iter().map(name_of).collect::<Vec<_>>(),
        before.iter().map(name_of).collect::<Vec<_>>()
    );
    assert_eq!(
        app.review(victim_token, &[API_AUDIENCE])
            .await
            .authenticated,
        Some(true)
    );
    let metrics = app.metrics().await;
    assert_eq!(
        sample(&metrics, r#"tokenvend_revocations_total{via="oauth2"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_requests_total{endpoint="revoke",outcome="invalid_token"}"#
        ),
        Some(4.0)
    );
    // Only the forged token names a binding: one TokenReview, no delete.
    let reviews = |m: &str| {
        sample(
            m,
            r#"tokenvend_kube_binding_requests_total{call="token_review",code="success"}"#,
        )
        .unwrap_or(0.0)
    };
    assert_eq!(reviews(&metrics) - reviews(&reviews_before), 1.0);
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_kube_binding_requests_total{call="delete_secret",code="success"}"#
        ),
        None
    );
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_revocation_request_is_invalid_request() {
    let app = spawn(Duration::ZERO).await;
    let url = format!("{}/oauth2/revoke", app.address);
    let form = |body: &'static str| {
        app.http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    for request in [
        form(""),
        form("token_type_hint=access_token"),
        form("token=a&token=b"),
        app.http.post(&url).json(&json!({"token": "a.b.c"})),
        app.http.post(format!("{url}?token=a.b.c")),
    ] {
        assert_error(request.send().await.unwrap(), 400, "invalid_request").await;
    }
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_requests_total{endpoint="revoke",outcome="invalid_request"}"#
        ),
        Some(5.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_token_request_leaves_no_binding_behind() {
    let app = spawn(Duration::ZERO).await;
    app.apiserver().inject_for(
        FaultTarget::TokenRequest,
        Fault::Status {
            code: 500,
            retry_after: None,
            times: 1,
        },
    );

    let response = app.post_token(&app.id_token(release_claims()), None).await;

    assert_eq!(response.status(), 502);
    assert!(
        eventually(Duration::from_secs(10), async || bindings(&app).is_empty()).await,
        "a binding was left behind: {:?}",
        bindings(&app).iter().map(name_of).collect::<Vec<_>>()
    );
    // Created, then deleted.
    assert_eq!(app.apiserver().secret_writes(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_failed_binding_create_fails_the_request_like_a_failed_token_request() {
    let app = spawn(Duration::ZERO).await;
    app.apiserver().inject_for(
        FaultTarget::SecretCreate,
        Fault::Status {
            code: 500,
            retry_after: None,
            times: 1,
        },
    );

    let response = app.post_token(&app.id_token(release_claims()), None).await;

    assert_error(response, 502, "upstream_error").await;
    assert_eq!(app.apiserver().token_requests(), 0);
    assert!(bindings(&app).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn non_revocable_policies_write_no_secret_and_say_nothing_of_revocation() {
    let app = spawn(Duration::ZERO).await;

    let response = app.post_token(&app.id_token(webapp_claims()), None).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("revocable").is_none(), "{body}");
    assert_eq!(app.apiserver().secret_writes(), 0);
    assert_eq!(app.apiserver().token_requests(), 1);
    assert!(bindings(&app).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_dry_run_of_a_revocable_grant_creates_nothing_and_grants_say_revocable() {
    let app = spawn(Duration::ZERO).await;

    let response = app
        .http
        .post(format!("{}/v1/token?dryRun=true", app.address))
        .bearer_auth(app.id_token(release_claims()))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["revocable"], true, "{body}");
    assert_eq!(app.apiserver().secret_writes(), 0);
    // The caller's grants say which are revocable.
    for (claims, revocable) in [(release_claims(), Some(true)), (webapp_claims(), None)] {
        let listed: Value = app
            .http
            .get(format!("{}/v1/grants", app.address))
            .bearer_auth(app.id_token(claims))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            listed["grants"][0]
                .get("revocable")
                .and_then(Value::as_bool),
            revocable,
            "{listed}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_api_down_during_a_revocation_is_503_with_retry_after_and_a_retry_revokes() {
    let app = spawn(Duration::ZERO).await;
    let issued = mint(&app, None).await;
    let token = issued["token"].as_str().unwrap();
    let fail = |code| Fault::Status {
        code,
        retry_after: Some(2),
        times: 1,
    };
    // The API server's wait is passed on when its Status names one; its plain-text 429 says
    // it only in a header the kube client does not keep, so the default (1 s) applies there.
    for (target, fault, expected) in [
        (FaultTarget::Any, fail(503), "2"),
        (FaultTarget::TokenReview, fail(429), "1"),
        (FaultTarget::SecretDeleteCollection, fail(500), "2"),
    ] {
        app.apiserver().inject_for(target, fault);

        let response = revoke(&app, token).await;

        assert_eq!(response.headers()["retry-after"], expected, "{target:?}");
        assert_error(response, 503, "temporarily_unavailable").await;
        assert_eq!(bindings(&app).len(), 1, "{target:?}");
    }
    app.apiserver()
        .inject_for(FaultTarget::Any, Fault::Stall(Duration::from_secs(5)));
    let response = revoke(&app, token).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_error(response, 503, "temporarily_unavailable").await;
    app.apiserver().clear_faults();

    assert_eq!(revoke(&app, token).await.status(), 200);

    assert!(bindings(&app).is_empty());
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_requests_total{endpoint="revoke",outcome="error"}"#
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(&metrics, r#"tokenvend_revocations_total{via="oauth2"}"#),
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_sweep_deletes_the_bindings_of_expired_tokens_and_no_live_one() {
    let app = spawn(Duration::ZERO).await;
    let short = mint(&app, Some(json!({"expirationSeconds": 600}))).await;
    let long = mint(&app, Some(json!({"expirationSeconds": 3600}))).await;
    assert_eq!(bindings(&app).len(), 2);
    let short_expiry: jiff::Timestamp = short["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let long_expiry: jiff::Timestamp = long["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Now: nothing has expired.
    let report = app.sweeper.sweep_once(jiff::Timestamp::now()).await;
    assert_eq!((report.deleted, report.failed.len()), (0, 0));
    assert_eq!(bindings(&app).len(), 2);
    // A moment before the long token expires, well after the short one did.
    let later = long_expiry - jiff::SignedDuration::from_secs(60);
    assert!(later > short_expiry + jiff::SignedDuration::from_secs(1200));
    let report = app.sweeper.sweep_once(later).await;

    assert_eq!(report.deleted, 1, "{report:?}");
    let left = bindings(&app);
    assert_eq!(left.len(), 1);
    let token = long["token"].as_str().unwrap();
    assert_eq!(
        claims_of(token)["kubernetes.io"]["secret"]["name"],
        left[0].metadata.name.as_deref().unwrap()
    );
    assert_eq!(
        app.review(token, &[API_AUDIENCE]).await.authenticated,
        Some(true)
    );
    // The same sweep again deletes nothing more.
    assert_eq!(app.sweeper.sweep_once(later).await.deleted, 0);
    let metrics = app.metrics().await;
    assert_eq!(
        sample(&metrics, r#"tokenvend_revocations_total{via="expired"}"#),
        Some(1.0)
    );
    app.stop().await;
}

/// A Secret that only looks like a binding (its labels say tokenvend, its type does not) is
/// never swept: the admission policy would refuse the delete, and with it the whole collection
/// delete, every sweep after.
#[tokio::test]
async fn a_sweep_leaves_a_secret_of_another_type_alone_whatever_its_labels() {
    let bucket = k8s::binding::expiry_bucket(jiff::Timestamp::now().as_second() + 600);
    let app = spawn_app_with(&format!("{CONFIG}{REVOCABLE_POLICY}"), move |options| {
        options.token_success_cache_ttl = Duration::ZERO;
        let mut lookalike = kube_standin::SeedSecret::opaque("production", "tokenvend-lookalike");
        lookalike.labels = [
            (k8s::binding::MANAGED_BY_LABEL, k8s::binding::MANAGED_BY),
            (k8s::binding::EXPIRES_LABEL, &bucket.to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        lookalike
            .data
            .insert("password".to_owned(), b"kept".to_vec());
        options.secrets.push(lookalike);
    })
    .await;
    let short = mint(&app, Some(json!({"expirationSeconds": 600}))).await;
    assert_eq!(bindings(&app).len(), 2);
    let expiry: jiff::Timestamp = short["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let report = app
        .sweeper
        .sweep_once(expiry + jiff::SignedDuration::from_secs(1800))
        .await;

    assert_eq!((report.deleted, report.failed.len()), (1, 0), "{report:?}");
    let left = bindings(&app);
    assert_eq!(left.len(), 1);
    assert_eq!(name_of(&left[0]), "production/tokenvend-lookalike");
    app.stop().await;
}

#[tokio::test]
async fn a_failed_sweep_is_retried_by_the_next_one() {
    let app = spawn(Duration::ZERO).await;
    mint(&app, Some(json!({"expirationSeconds": 600}))).await;
    let after = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    app.apiserver().inject_for(
        FaultTarget::SecretDeleteCollection,
        Fault::Status {
            code: 503,
            retry_after: None,
            times: 1,
        },
    );

    let failed = app.sweeper.sweep_once(after).await;
    assert_eq!(failed.failed, ["production"]);
    assert_eq!(bindings(&app).len(), 1);

    let retried = app.sweeper.sweep_once(after).await;
    assert_eq!((retried.deleted, retried.failed.len()), (1, 0));
    assert!(bindings(&app).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_api_during_a_revocation_is_503_with_retry_after() {
    let mut app = spawn(Duration::ZERO).await;
    let issued = mint(&app, None).await;
    app.stop_apiserver().await;

    let response = revoke(&app, issued["token"].as_str().unwrap()).await;

    assert_eq!(response.headers()["retry-after"], "1");
    assert_error(response, 503, "temporarily_unavailable").await;
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_kube_binding_requests_total{call="token_review",code="transport"}"#
        ),
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_namespace_whose_sweep_fails_holds_no_other_back() {
    let ops_policy = r#"
  - name: ops-release
    issuer: local
    match: {repository: acme/ops}
    grant:
      serviceAccounts: [ops/releaser]
      revocable: true
"#;
    // tokenvend may not collection-delete in `ops`.
    let app = spawn_app_with(
        &format!("{CONFIG}{REVOCABLE_POLICY}{ops_policy}"),
        |options| {
            for rule in &mut options.rbac {
                if rule.namespace.as_deref() == Some("ops") {
                    rule.verbs.retain(|verb| verb != "deletecollection");
                }
            }
        },
    )
    .await;
    let short = Some(json!({"expirationSeconds": 600}));
    mint(&app, short.clone()).await;
    let ops = app.id_token(json!({"sub": "ops", "repository": "acme/ops"}));
    assert_eq!(app.post_token(&ops, short).await.status(), 200);
    assert_eq!(bindings(&app).len(), 2);
    let after = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    let sweeps = |metrics: &str| {
        sample(
            metrics,
            r#"tokenvend_kube_binding_requests_total{call="delete_secrets",code="success"}"#,
        )
        .unwrap_or(0.0)
    };

    let first = app.sweeper.sweep_once(after).await;

    assert_eq!(
        (first.deleted, first.failed.clone()),
        (1, vec!["ops".to_owned()])
    );
    assert_eq!(
        bindings(&app)
            .iter()
            .map(|secret| secret.metadata.namespace.clone().unwrap())
            .collect::<Vec<_>>(),
        ["ops"]
    );
    let calls = sweeps(&app.metrics().await);
    // The next sweep at the same time: `production` is done, only `ops` is tried again.
    let second = app.sweeper.sweep_once(after).await;
    assert_eq!((second.deleted, second.failed), (0, vec!["ops".to_owned()]));
    assert_eq!(sweeps(&app.metrics().await), calls);
    app.stop().await;
}

/// A user of the stand-in that may create tokens of every service account in `production`,
/// and nothing else: what `create serviceaccounts/token` in a namespace gives.
const MINTER_TOKEN: &str = "minter-token";

fn with_minter(options: &mut kube_standin::ApiServerOptions) {
    options.token_success_cache_ttl = Duration::ZERO;
    options
        .users
        .push(kube_standin::SeedUser::new(MINTER_TOKEN, "minter"));
    options.rbac.push(kube_standin::RbacRule::create_tokens(
        "minter",
        "production",
        &[],
    ));
}

/// A token of `production/<account>`, minted straight at the API server (not through
/// tokenvend) by the minter and bound to the Secret `production/<secret>` (the API server
/// fills in its uid).
async fn mint_bound_directly(app: &TestApp, account: &str, secret: &str) -> String {
    use k8s_openapi::api::authentication::v1::{
        BoundObjectReference, TokenRequest, TokenRequestSpec,
    };
    use k8s_openapi::api::core::v1::ServiceAccount;
    let config = tokenvend::dev::session::kube_config_for(
        app.apiserver(),
        MINTER_TOKEN,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let accounts: kube::Api<ServiceAccount> =
        kube::Api::namespaced(kube::Client::try_from(config).unwrap(), "production");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![API_AUDIENCE.to_owned()],
            expiration_seconds: Some(600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Secret".to_owned()),
                name: Some(secret.to_owned()),
                uid: None,
            }),
        },
        ..TokenRequest::default()
    };
    let minted: TokenRequest = accounts
        .create_subresource(
            "token",
            account,
            &kube::api::PostParams::default(),
            &request,
        )
        .await
        .unwrap();
    minted.status.unwrap().token
}

/// Anyone who may create tokens in a namespace can bind one to any Secret there: a genuine
/// token of another service account, bound to someone else's binding, must not revoke it.
#[tokio::test]
async fn a_token_of_another_service_account_bound_to_a_binding_revokes_nothing() {
    let app = spawn_app_with(&format!("{CONFIG}{REVOCABLE_POLICY}"), with_minter).await;
    let victim = mint(&app, None).await;
    let victim_token = victim["token"].as_str().unwrap();
    let before = bindings(&app);
    assert_eq!(before.len(), 1);
    let binding = before[0].metadata.name.clone().unwrap();
    // `production/deployer`, not the binding's `production/releaser`.
    let intruder = mint_bound_directly(&app, "deployer", &binding).await;
    assert_eq!(
        app.review(&intruder, &[API_AUDIENCE]).await.authenticated,
        Some(true)
    );

    let response = revoke(&app, &intruder).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "");
    assert_eq!(
        bindings(&app).iter().map(name_of).collect::<Vec<_>>(),
        before.iter().map(name_of).collect::<Vec<_>>()
    );
    assert_eq!(
        app.review(victim_token, &[API_AUDIENCE])
            .await
            .authenticated,
        Some(true)
    );
    let metrics = app.metrics().await;
    assert_eq!(
        sample(&metrics, r#"tokenvend_revocations_total{via="oauth2"}"#),
        Some(0.0)
    );
    app.stop().await;
}

/// A genuine token bound to a Secret that merely has a binding's name (another type, no
/// labels) does not get that Secret deleted.
#[tokio::test]
async fn a_token_bound_to_a_lookalike_secret_revokes_nothing() {
    let app = spawn_app_with(&format!("{CONFIG}{REVOCABLE_POLICY}"), |options| {
        with_minter(options);
        let mut lookalike = kube_standin::SeedSecret::opaque("production", "tokenvend-lookalike");
        lookalike
            .data
            .insert("password".to_owned(), b"kept".to_vec());
        options.secrets.push(lookalike);
    })
    .await;
    let token = mint_bound_directly(&app, "releaser", "tokenvend-lookalike").await;
    assert_eq!(
        app.review(&token, &[API_AUDIENCE]).await.authenticated,
        Some(true)
    );

    let response = revoke(&app, &token).await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        bindings(&app).iter().map(name_of).collect::<Vec<_>>(),
        ["production/tokenvend-lookalike"]
    );
    assert_eq!(
        app.review(&token, &[API_AUDIENCE]).await.authenticated,
        Some(true)
    );
    app.stop().await;
}

/// A delete the API server refuses for good (RBAC, the admission policy, an invalid request)
/// is 200: a 503 would tell the caller its token passed the review, and a retry would change
/// nothing. The operator learns of it from the log and the audit record.
#[tokio::test]
async fn a_refused_delete_after_the_review_is_200_not_503() {
    let app = spawn(Duration::ZERO).await;
    let issued = mint(&app, None).await;
    let token = issued["token"].as_str().unwrap();
    for code in [403, 422, 400] {
        app.apiserver().inject_for(
            FaultTarget::SecretDeleteCollection,
            Fault::Status {
                code,
                retry_after: None,
                times: 1,
            },
        );

        let response = revoke(&app, token).await;

        assert_eq!(response.status(), 200, "{code}");
        assert!(!response.headers().contains_key("retry-after"), "{code}");
        assert_eq!(response.text().await.unwrap(), "", "{code}");
        assert_eq!(bindings(&app).len(), 1, "{code}");
    }
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_requests_total{endpoint="revoke",outcome="error"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_kube_binding_requests_total{call="delete_secret",code="403"}"#
        ),
        Some(1.0)
    );
    app.stop().await;
}

/// `tokenvend_kube_binding_requests_total{call="token_review"}`, all codes.
fn reviews_sent(metrics: &str) -> f64 {
    [
        "success",
        "timeout",
        "transport",
        "403",
        "429",
        "500",
        "503",
    ]
    .iter()
    .filter_map(|code| {
        sample(
            metrics,
            &format!(
                r#"tokenvend_kube_binding_requests_total{{call="token_review",code="{code}"}}"#
            ),
        )
    })
    .sum()
}

/// Unauthenticated callers choose what tokenvend sends to the API server: a token whose own
/// (unverified) claims say it has expired is not worth a TokenReview.
#[tokio::test]
async fn a_token_whose_claims_have_expired_is_not_reviewed() {
    let app = spawn(Duration::ZERO).await;
    let issued = mint(&app, None).await;
    let mut claims = claims_of(issued["token"].as_str().unwrap());
    let now = jiff::Timestamp::now().as_second();
    claims["exp"] = json!(now - 60);
    claims["iat"] = json!(now - 700);
    claims["nbf"] = json!(now - 700);
    let expired = app.issuer.mint(Algorithm::RS256, claims).unwrap();
    // Were it reviewed, the review would fail and the caller get a 503.
    app.apiserver().inject_for(
        FaultTarget::TokenReview,
        Fault::Status {
            code: 503,
            retry_after: None,
            times: 1,
        },
    );

    let response = revoke(&app, &expired).await;

    assert_eq!(response.status(), 200);
    assert_eq!(reviews_sent(&app.metrics().await), 0.0);
    assert_eq!(bindings(&app).len(), 1);
    app.stop().await;
}

/// At most 16 revocations wait for a TokenReview at once; beyond that a request is 503
/// `temporarily_unavailable` with `Retry-After` without a review, whatever its token.
#[tokio::test]
async fn revocation_reviews_are_capped() {
    let app = spawn(Duration::ZERO).await;
    let issued = mint(&app, None).await;
    let token = issued["token"].as_str().unwrap().to_owned();
    // Each review hangs until tokenvend's deadline (2 s) gives up on it.
    app.apiserver().inject_for(
        FaultTarget::TokenReview,
        Fault::Stall(Duration::from_secs(5)),
    );

    let requests: Vec<_> = (0..24)
        .map(|_| {
            let app_http = app.http.clone();
            let url = format!("{}/oauth2/revoke", app.address);
            let body = format!(
                "token={}",
                form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
            );
            tokio::spawn(async move {
                app_http
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    for request in requests {
        let response = request.await.unwrap();
        assert!(response.headers().contains_key("retry-after"));
        assert_error(response, 503, "temporarily_unavailable").await;
    }

    app.apiserver().clear_faults();
    assert_eq!(reviews_sent(&app.metrics().await), 16.0);
    assert_eq!(revoke(&app, &token).await.status(), 200);
    assert!(bindings(&app).is_empty());
    app.stop().await;
}
