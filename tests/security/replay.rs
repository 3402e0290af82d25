//! Catalogue rows R1 and R2 (docs/threat-model.md): replay with `replayProtection: true`.

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::harness::{Expect, ScriptedIssuer, Service, Why, check, config, forge, header};

/// The P-256 group order, for the high-S twin of a signature.
const ORDER: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";

/// `(r, s)` → `(r, n - s)`: a second valid encoding of the same ES256 signature (S6).
fn high_s_twin(token: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = engine.decode(signature).unwrap();
    let order: Vec<u16> = (0..32)
        .map(|i| u16::from_str_radix(&ORDER[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut borrow = 0i32;
    for i in (0..32).rev() {
        let mut digit = i32::from(order[i]) - i32::from(bytes[32 + i]) - borrow;
        borrow = i32::from(digit < 0);
        if digit < 0 {
            digit += 256;
        }
        bytes[32 + i] = u8::try_from(digit).unwrap();
    }
    format!("{input}.{}", engine.encode(bytes))
}

#[tokio::test]
async fn a_token_is_exchanged_once_whatever_its_signature_encoding() {
    let alpha = ScriptedIssuer::start().await;
    let beta = ScriptedIssuer::start().await;
    let service =
        Service::start_with_config(&config(&alpha, &beta, "    replayProtection: true")).await;
    let token = alpha.token(&alpha.claims());
    check(
        "R1 first use",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
    let replay = service.exchange(&token).await;
    let body: serde_json::Value = {
        let response = replay;
        assert_eq!(response.status(), 401);
        response.json().await.unwrap()
    };
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already been used"),
        "{body}"
    );

    let es = forge(
        &alpha.ec,
        Algorithm::ES256,
        &header(&alpha.ec, "ES256"),
        &alpha.claims(),
    );
    let twin = high_s_twin(&es);
    assert_ne!(es, twin);
    check(
        "S6 high-S twin is a valid signature",
        service.exchange(&twin).await,
        Expect::Issued,
        &twin,
    )
    .await;
    service
        .expect(
            "R2 the original after its twin",
            &es,
            Expect::Rejected(Why::Replayed),
        )
        .await;

    let mut no_jti = alpha.claims();
    no_jti.as_object_mut().unwrap().remove("jti");
    let token = alpha.token(&no_jti);
    service
        .expect(
            "no jti under replay protection",
            &token,
            Expect::Rejected(Why::Claims),
        )
        .await;

    let metrics = service.metrics().await;
    assert!(
        metrics.contains(r#"tokenvend_replays_rejected_total{issuer="alpha"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_failed_exchange_does_not_burn_the_token() {
    let alpha = ScriptedIssuer::start().await;
    let beta = ScriptedIssuer::start().await;
    let service =
        Service::start_with_config(&config(&alpha, &beta, "    replayProtection: true")).await;
    let token = alpha.token(&alpha.claims());
    let bad_request = service
        .http
        .post(format!("{}/v1/token", service.address))
        .bearer_auth(&token)
        .json(
            &json!({"serviceAccount": "production/deployer", "audiences": ["https://not-allowed"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bad_request.status(), 403);
    check(
        "the same token, after a denial",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
}
