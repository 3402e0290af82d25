//! SECURITY.md §2.6 (K1–K10) and §4 (D1–D11): keys and where they come from.

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokenvend::dev::keys::SigningKey;

use crate::harness::{
    Expect, Reply, ScriptedIssuer, Service, b64, check, config, forge, header, sample,
};

fn with(jwk: &Value, changes: &Value) -> Value {
    let mut jwk = jwk.clone();
    for (key, value) in changes.as_object().unwrap() {
        jwk[key] = value.clone();
    }
    jwk
}

/// An issuer whose JWKS holds exactly `keys` (as JWK values) at the time the service starts,
/// and a token signed by `signer` naming `kid`.
async fn serving(
    keys: impl FnOnce(&ScriptedIssuer) -> Vec<Value>,
) -> (ScriptedIssuer, ScriptedIssuer, Service) {
    let alpha = ScriptedIssuer::start().await;
    let beta = ScriptedIssuer::start().await;
    let jwks = keys(&alpha);
    alpha.serve_jwk_values(&jwks);
    let service = Service::start(&alpha, &beta).await;
    (alpha, beta, service)
}

#[tokio::test]
async fn keys_that_could_be_misused_are_never_used_to_verify() {
    let weak_modulus = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xC5u8; 128]);
    // Each row: the misused key (published beside nothing else usable for that kid) and the token.
    let (alpha, _beta, service) = serving(|alpha| {
        let rsa = alpha.rsa.public_jwk();
        let ec = alpha.ec.public_jwk();
        vec![
            with(&rsa, &json!({"kid": "k2-weak", "n": weak_modulus})),
            with(&rsa, &json!({"kid": "k3-e3", "e": "Aw"})),
            with(&rsa, &json!({"kid": "k5-enc", "use": "enc"})),
            with(&rsa, &json!({"kid": "k5-oaep", "alg": "RSA-OAEP"})),
            with(&ec, &json!({"kid": "k6-crv", "crv": "P-384"})),
            with(&ec, &json!({"kid": "k7-offcurve", "y": b64([0u8; 32])})),
            json!({"kty": "foo", "kid": "k10-foo"}),
            json!({"kty": "OKP", "kid": "k10-ed448", "crv": "Ed448", "x": b64([1u8; 57])}),
            json!(5),
            // K9: a malformed entry does not spoil the usable key beside it.
            rsa,
        ]
    })
    .await;
    let claims = alpha.claims();
    let rows = [
        ("K2 1024-bit RSA", "k2-weak", Algorithm::RS256),
        ("K3 e=3", "k3-e3", Algorithm::RS256),
        ("K5 use enc", "k5-enc", Algorithm::RS256),
        ("K5 alg RSA-OAEP", "k5-oaep", Algorithm::RS256),
        ("K6 P-256 labelled P-384", "k6-crv", Algorithm::ES256),
        ("K7 point off the curve", "k7-offcurve", Algorithm::ES256),
        ("K10 unknown kty", "k10-foo", Algorithm::RS256),
        ("K10 Ed448", "k10-ed448", Algorithm::RS256),
    ];
    for (case, kid, algorithm) in rows {
        let signer = if algorithm == Algorithm::ES256 {
            &alpha.ec
        } else {
            &alpha.rsa
        };
        let alg = if algorithm == Algorithm::ES256 {
            "ES256"
        } else {
            "RS256"
        };
        let token = forge(signer, algorithm, &json!({"alg": alg, "kid": kid}), &claims);
        check(
            case,
            service.exchange(&token).await,
            Expect::Rejected,
            &token,
        )
        .await;
    }
    let token = alpha.token(&claims);
    check(
        "K9 the usable key beside a malformed entry",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
}

#[tokio::test]
async fn a_jwks_with_a_duplicate_kid_is_refused_whole() {
    let (alpha, _beta, service) = serving(|alpha| {
        let twin = SigningKey::generate(Algorithm::RS256).unwrap();
        vec![
            with(&twin.public_jwk(), &json!({"kid": alpha.rsa.kid()})),
            alpha.rsa.public_jwk(),
        ]
    })
    .await;
    let token = alpha.token(&alpha.claims());
    check(
        "K8 duplicate kid",
        service.exchange(&token).await,
        Expect::Unavailable,
        &token,
    )
    .await;
}

#[tokio::test]
async fn a_flood_of_unknown_kids_causes_at_most_one_jwks_fetch() {
    let alpha = ScriptedIssuer::start().await;
    let beta = ScriptedIssuer::start().await;
    let service = std::sync::Arc::new(Service::start(&alpha, &beta).await);
    let before = alpha.hits("/jwks");
    let claims = alpha.claims();
    let requests = (0..500).map(|i| {
        let token = forge(
            &alpha.rsa,
            Algorithm::RS256,
            &json!({"alg": "RS256", "kid": format!("unknown-{i}")}),
            &claims,
        );
        let service = std::sync::Arc::clone(&service);
        tokio::spawn(async move { service.exchange(&token).await.status().as_u16() })
    });
    for request in requests {
        assert_eq!(request.await.unwrap(), 401);
    }
    // K1: at most one fetch per cooldown, however many unknown kids arrive.
    assert!(
        alpha.hits("/jwks") - before <= 1,
        "{} JWKS fetches",
        alpha.hits("/jwks") - before
    );
    // N16: garbage tokens never reach the issuer at all.
    let fetched = alpha.hits("/jwks");
    for _ in 0..200 {
        assert_eq!(
            service.exchange("garbage.garbage.garbage").await.status(),
            401
        );
    }
    assert_eq!(alpha.hits("/jwks"), fetched);
}

/// Starts the service with alpha's discovery (or JWKS) scripted by `script` beforehand and
/// checks a correctly signed token gets `expect`.
async fn with_discovery(
    case: &str,
    script: impl FnOnce(&ScriptedIssuer, &ScriptedIssuer),
    expect: Expect,
) {
    let alpha = ScriptedIssuer::start().await;
    let beta = ScriptedIssuer::start().await;
    script(&alpha, &beta);
    let service = Service::start(&alpha, &beta).await;
    let token = alpha.token(&alpha.claims());
    check(case, service.exchange(&token).await, expect, &token).await;
}

#[tokio::test]
async fn discovery_documents_are_trusted_only_for_the_exact_issuer_on_its_own_host() {
    with_discovery(
        "D1 issuer with a trailing slash",
        |alpha, _| {
            alpha.serve_discovery(&with(
                &alpha.discovery_document(),
                &json!({"issuer": format!("{}/", alpha.url)}),
            ));
        },
        Expect::Unavailable,
    )
    .await;
    with_discovery(
        "D1 another issuer",
        |alpha, _| {
            alpha.serve_discovery(&with(
                &alpha.discovery_document(),
                &json!({"issuer": "https://evil.test"}),
            ));
        },
        Expect::Unavailable,
    )
    .await;
    with_discovery(
        "D2 jwks_uri on another host",
        |alpha, beta| {
            alpha.serve_discovery(&with(
                &alpha.discovery_document(),
                &json!({"jwks_uri": format!("{}/jwks", beta.url)}),
            ));
            beta.serve_jwks(&[&alpha.rsa]);
        },
        Expect::Unavailable,
    )
    .await;
    with_discovery(
        "D3 jwks_uri over plain http off loopback",
        |alpha, _| {
            alpha.serve_discovery(&with(
                &alpha.discovery_document(),
                &json!({"jwks_uri": "http://keys.example.com/jwks"}),
            ));
        },
        Expect::Unavailable,
    )
    .await;
    with_discovery(
        "D10 metadata advertising none and HS256 widens nothing",
        |alpha, _| {
            alpha.serve_discovery(&with(
                &alpha.discovery_document(),
                &json!({"id_token_signing_alg_values_supported": ["none", "HS256", "RS256"]}),
            ));
        },
        Expect::Issued,
    )
    .await;
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let alpha = ScriptedIssuer::start().await;
    let beta = ScriptedIssuer::start().await;
    let internal = ScriptedIssuer::start().await;
    // D4: the JWKS answers with a redirect to an "internal" service.
    alpha.reply("/jwks", Reply::redirect(&format!("{}/jwks", internal.url)));
    internal.serve_jwks(&[&alpha.rsa]);
    let service = Service::start(&alpha, &beta).await;
    let token = alpha.token(&alpha.claims());
    check(
        "D4 redirect",
        service.exchange(&token).await,
        Expect::Unavailable,
        &token,
    )
    .await;
    assert_eq!(
        internal.hits("/jwks"),
        0,
        "the redirect target was contacted"
    );
}

#[tokio::test]
async fn a_huge_jwks_is_refused_and_the_good_keys_are_kept() {
    let (alpha, _beta, service) = serving(|alpha| vec![alpha.rsa.public_jwk()]).await;
    let token = alpha.token(&alpha.claims());
    check(
        "D6 warm",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
    // D6: 10,000 keys, then a 1 MB body. The rotated key cannot be fetched; the old one still works.
    let rotated = SigningKey::generate(Algorithm::RS256).unwrap();
    let many: Vec<Value> = (0..10_000)
        .map(|i| with(&rotated.public_jwk(), &json!({"kid": format!("k{i}")})))
        .collect();
    alpha.serve_jwk_values(&many);
    let unknown = forge(
        &rotated,
        Algorithm::RS256,
        &header(&rotated, "RS256"),
        &alpha.claims(),
    );
    check(
        "D6 10,000 keys",
        service.exchange(&unknown).await,
        Expect::Rejected,
        &unknown,
    )
    .await;
    let token = alpha.token(&alpha.claims());
    check(
        "D6 old key kept",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
}

#[tokio::test]
async fn an_issuer_outage_is_survived_with_cached_keys_and_fails_closed_without() {
    let alpha = ScriptedIssuer::start().await;
    let beta = ScriptedIssuer::start().await;
    let service = Service::start(&alpha, &beta).await;
    // D7 warm cache: the issuer goes down, cached keys keep verifying.
    alpha.reply("/jwks", Reply::status(500));
    alpha.reply("/.well-known/openid-configuration", Reply::status(500));
    let token = alpha.token(&alpha.claims());
    check(
        "D7 warm cache",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
    // D7 cold cache: beta was never reachable, so its tokens get 503, never a pass.
    let cold_alpha = ScriptedIssuer::start().await;
    cold_alpha.reply("/.well-known/openid-configuration", Reply::status(503));
    let cold = Service::start_with_config(&config(&cold_alpha, &beta, "")).await;
    let token = cold_alpha.token(&cold_alpha.claims());
    check(
        "D7 cold cache",
        cold.exchange(&token).await,
        Expect::Unavailable,
        &token,
    )
    .await;
    let ready = cold
        .http
        .get(format!("{}/readyz", cold.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_its_unknown_kid_and_an_empty_refresh_changes_nothing() {
    let alpha = ScriptedIssuer::start().await;
    let beta = ScriptedIssuer::start().await;
    let service =
        Service::start_with_config(&config(&alpha, &beta, "    keyRefreshCooldown: 1s")).await;
    let wait_out_cooldown = || tokio::time::sleep(Duration::from_millis(1100));
    // D9: a refresh that yields no usable key keeps the old keys.
    alpha.serve_jwk_values(&[]);
    wait_out_cooldown().await;
    let unknown = forge(
        &alpha.rsa,
        Algorithm::RS256,
        &json!({"alg": "RS256", "kid": "nobody"}),
        &alpha.claims(),
    );
    check(
        "D9 refresh to an empty JWKS",
        service.exchange(&unknown).await,
        Expect::Rejected,
        &unknown,
    )
    .await;
    let token = alpha.token(&alpha.claims());
    check(
        "D9 old keys kept",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
    // D8: a key published and used at once is found by a refresh on its unknown kid.
    let rotated = SigningKey::generate(Algorithm::RS256).unwrap();
    alpha.serve_jwks(&[&rotated]);
    wait_out_cooldown().await;
    let token = forge(
        &rotated,
        Algorithm::RS256,
        &header(&rotated, "RS256"),
        &alpha.claims(),
    );
    check(
        "D8 rotated key",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
    // Removed keys are dropped at that successful refresh.
    let old = alpha.token(&alpha.claims());
    check(
        "D8 removed key",
        service.exchange(&old).await,
        Expect::Rejected,
        &old,
    )
    .await;
}

#[tokio::test]
async fn a_private_issuer_over_https_is_trusted_through_its_ca_file() {
    let alpha = ScriptedIssuer::start_tls().await;
    let beta = ScriptedIssuer::start().await;
    let token = alpha.token(&alpha.claims());
    // Without caFile the issuer's certificate is not trusted: no keys, 503.
    let untrusted = Service::start(&alpha, &beta).await;
    check(
        "caFile absent",
        untrusted.exchange(&token).await,
        Expect::Unavailable,
        &token,
    )
    .await;
    let ca = std::env::temp_dir().join(format!("tokenvend-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, alpha.ca_pem.as_ref().unwrap()).unwrap();
    let trusted = Service::start_with_config(&config(
        &alpha,
        &beta,
        &format!("    caFile: {}", ca.display()),
    ))
    .await;
    check(
        "caFile present",
        trusted.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
    let _ = std::fs::remove_file(ca);
}

#[tokio::test]
async fn a_slow_drip_issuer_does_not_hold_a_request_forever() {
    // D5: headers at once, then one byte a second.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{").await;
                for _ in 0..120 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if stream.write_all(b" ").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let slow = format!("http://{addr}");
    let beta = ScriptedIssuer::start().await;
    let text = config(&beta, &beta, "").replacen(
        &format!("url: \"{}\"", beta.url),
        &format!("url: \"{slow}\""),
        1,
    );
    let started = std::time::Instant::now();
    let service = Service::start_with_config(&text).await;
    // The warm-up fetch gave up within the fetch timeout (10 s), not the drip's two minutes.
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    let signer = SigningKey::generate(Algorithm::RS256).unwrap();
    let mut claims = beta.claims();
    claims["iss"] = json!(slow);
    let token = forge(
        &signer,
        Algorithm::RS256,
        &header(&signer, "RS256"),
        &claims,
    );
    check(
        "D5 slow drip",
        service.exchange(&token).await,
        Expect::Unavailable,
        &token,
    )
    .await;
}

/// A JWKS endpoint speaking raw HTTP/1.1, serving whatever body the test sets: announced by
/// `Content-Length`, or in chunks with no length announced (so only counting what arrives
/// can stop it).
struct RawJwks {
    url: String,
    body: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl RawJwks {
    async fn start(chunked: bool) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let body = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let served = std::sync::Arc::clone(&body);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let body = served.lock().unwrap().clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request).await;
                    let framing = if chunked {
                        "transfer-encoding: chunked".to_owned()
                    } else {
                        format!("content-length: {}", body.len())
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n{framing}\r\n\r\n"
                    );
                    let mut response = head.into_bytes();
                    if chunked {
                        for chunk in body.chunks(16 * 1024) {
                            response.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                            response.extend_from_slice(chunk);
                            response.extend_from_slice(b"\r\n");
                        }
                        response.extend_from_slice(b"0\r\n\r\n");
                    } else {
                        response.extend_from_slice(&body);
                    }
                    let _ = stream.write_all(&response).await;
                });
            }
        });
        Self { url, body }
    }

    /// Serves a key set of `keys` padded (with a member the parser ignores) to exactly `size` bytes.
    fn serve(&self, keys: &[&SigningKey], size: usize) {
        let keys: Vec<Value> = keys.iter().map(|key| key.public_jwk()).collect();
        let open = json!({ "keys": keys }).to_string();
        let open = open.strip_suffix('}').unwrap();
        let padding = size - open.len() - r#","padding":""}"#.len();
        let body = format!(r#"{open},"padding":"{}"}}"#, "x".repeat(padding));
        assert_eq!(body.len(), size);
        *self.body.lock().unwrap() = body.into_bytes();
    }
}

/// D6: a key set one byte over the body cap is refused, whatever its framing, and the keys
/// in force stay; the same keys at exactly the cap are loaded.
async fn a_jwks_body_over_the_cap_is_refused(chunked: bool) {
    let cap = tokenvend::oidc::MAX_BODY_BYTES;
    let jwks = RawJwks::start(chunked).await;
    let alpha = ScriptedIssuer::start().await;
    let beta = ScriptedIssuer::start().await;
    jwks.serve(&[&alpha.rsa], 1000);
    let extra = format!("    jwksUrl: \"{}\"\n    keyRefreshCooldown: 1s", jwks.url);
    let service = Service::start_with_config(&config(&alpha, &beta, &extra)).await;
    let fetches = |metrics: &str, result: &str| {
        sample(
            metrics,
            &format!(r#"tokenvend_jwks_fetches_total{{issuer="alpha",result="{result}"}}"#),
        )
    };

    let rotated = SigningKey::generate(Algorithm::RS256).unwrap();
    let signed_by_rotated = || {
        forge(
            &rotated,
            Algorithm::RS256,
            &header(&rotated, "RS256"),
            &alpha.claims(),
        )
    };
    let wait_out_cooldown = || tokio::time::sleep(Duration::from_millis(1100));
    jwks.serve(&[&alpha.rsa, &rotated], cap + 1);
    wait_out_cooldown().await;
    let token = signed_by_rotated();
    check(
        "D6 one byte over the cap",
        service.exchange(&token).await,
        Expect::Rejected,
        &token,
    )
    .await;
    let metrics = service.metrics().await;
    assert_eq!(fetches(&metrics, "error"), Some(1.0), "{metrics}");
    let token = alpha.token(&alpha.claims());
    check(
        "D6 keys in force kept",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;

    jwks.serve(&[&alpha.rsa, &rotated], cap);
    wait_out_cooldown().await;
    let token = signed_by_rotated();
    check(
        "D6 exactly at the cap",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
    assert_eq!(fetches(&service.metrics().await, "success"), Some(2.0));
}

#[tokio::test]
async fn a_jwks_body_announced_over_the_cap_is_refused() {
    a_jwks_body_over_the_cap_is_refused(false).await;
}

#[tokio::test]
async fn a_chunked_jwks_body_growing_over_the_cap_is_refused() {
    a_jwks_body_over_the_cap_is_refused(true).await;
}

/// The readiness check of issuer `alpha`.
async fn alpha_ready(service: &Service) -> bool {
    let body: Value = service
        .http
        .get(format!("{}/readyz", service.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let checks = body["checks"].as_array().unwrap();
    let alpha = checks.iter().find(|c| c["name"] == "issuer:alpha").unwrap();
    alpha["ok"].as_bool().unwrap()
}

#[tokio::test]
async fn cached_keys_are_refused_once_the_outage_outlasts_the_staleness_limit() {
    // D7 with the limit shortened from 24 h to 1 s (an undocumented knob for this test).
    let alpha = ScriptedIssuer::start().await;
    let beta = ScriptedIssuer::start().await;
    let extra = "    keyRefreshCooldown: 1s\n    maxKeyStaleness: 1s";
    let service = Service::start_with_config(&config(&alpha, &beta, extra)).await;
    let past_the_limit = || tokio::time::sleep(Duration::from_millis(1300));
    // Fresh keys, or (on a slow start) stale ones refreshed on the spot: the issuer is up.
    let token = alpha.token(&alpha.claims());
    check(
        "D7 issuer up",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;

    alpha.reply("/jwks", Reply::status(500));
    past_the_limit().await;
    let token = alpha.token(&alpha.claims());
    check(
        "D7 outage past the staleness limit",
        service.exchange(&token).await,
        Expect::Unavailable,
        &token,
    )
    .await;
    assert!(!alpha_ready(&service).await, "stale keys reported ready");

    // Once a fetch succeeds again (after the refresh cooldown), the issuer's tokens pass.
    alpha.serve_jwks(&[&alpha.rsa, &alpha.ec]);
    past_the_limit().await;
    let token = alpha.token(&alpha.claims());
    check(
        "D7 issuer back",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
    assert!(alpha_ready(&service).await);
}
