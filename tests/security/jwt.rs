//! The JWT rows of the attack catalogue (A, H, S, T, C, P, M in docs/threat-model.md), one
//! case each.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dev_pki::keys::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::harness::{
    Expect, ScriptedIssuer, Service, Why, b64, check, config, forge, forge_raw, header, now, sample,
};

fn hmac(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let key = EncodingKey::from_secret(secret).unwrap();
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{input}.{signature}")
}

fn with(claims: &Value, changes: &Value) -> Value {
    let mut claims = claims.clone();
    for (key, value) in changes.as_object().unwrap() {
        claims[key] = value.clone();
    }
    claims
}

fn without(claims: &Value, key: &str) -> Value {
    let mut claims = claims.clone();
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// Replaces the signature segment of a token.
fn resign(token: &str, signature: &str) -> String {
    let (input, _) = token.rsplit_once('.').unwrap();
    format!("{input}.{signature}")
}

#[tokio::test]
async fn every_row_of_the_jwt_catalogue_gets_its_expected_answer() {
    let alpha = ScriptedIssuer::start().await;
    let beta = ScriptedIssuer::start().await;
    // A4/K4: the JWKS also publishes a symmetric key; it must never become a verification key.
    let oct = json!({"kty": "oct", "kid": "oct1", "alg": "HS256", "k": b64("published-secret")});
    alpha.serve_jwk_values(&[alpha.rsa.public_jwk(), alpha.ec.public_jwk(), oct]);
    let service = Service::start(&alpha, &beta).await;
    let attacker = SigningKey::generate(Algorithm::RS256).unwrap();
    let claims = alpha.claims();
    let rs = |header: &Value, claims: &Value| forge(&alpha.rsa, Algorithm::RS256, header, claims);
    let good = rs(&header(&alpha.rsa, "RS256"), &claims);
    let (good_input, good_signature) = good.rsplit_once('.').unwrap();
    let (_, good_payload) = good_input.split_once('.').unwrap();
    let rsa_jwk = alpha.rsa.public_jwk();
    let ec_sig = forge(
        &alpha.ec,
        Algorithm::ES256,
        &header(&alpha.ec, "ES256"),
        &claims,
    );
    let p256_order = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    let order = (0..32)
        .map(|i| u8::from_str_radix(&p256_order[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<u8>>();
    let ec_input = ec_sig.rsplit_once('.').unwrap().0.to_owned();
    let now = now();
    let kid = alpha.rsa.kid();

    let rows: Vec<(&str, String, Expect)> = vec![
        // 2.1 Algorithms
        // The classic unsigned form never gets past the shape check (an empty segment).
        (
            "A1 alg none, no signature",
            format!(
                "{}.{good_payload}.",
                b64(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#))
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "A2 alg NONE, two segments",
            format!(
                "{}.{good_payload}",
                b64(format!(r#"{{"alg":"NONE","kid":"{kid}"}}"#))
            ),
            Expect::Rejected(Why::Malformed),
        ),
        // With a signature segment and the real kid, only `alg` differs from a good token.
        (
            "A1 alg none",
            format!(
                "{}.{good_payload}.{good_signature}",
                b64(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#))
            ),
            Expect::Rejected(Why::Algorithm),
        ),
        (
            "A2 alg None",
            format!(
                "{}.{good_payload}.{good_signature}",
                b64(format!(r#"{{"alg":"None","kid":"{kid}"}}"#))
            ),
            Expect::Rejected(Why::Algorithm),
        ),
        (
            "A2 alg NONE",
            format!(
                "{}.{good_payload}.{good_signature}",
                b64(format!(r#"{{"alg":"NONE","kid":"{kid}"}}"#))
            ),
            Expect::Rejected(Why::Algorithm),
        ),
        (
            "A2 alg nOnE",
            format!(
                "{}.{good_payload}.{good_signature}",
                b64(format!(r#"{{"alg":"nOnE","kid":"{kid}"}}"#))
            ),
            Expect::Rejected(Why::Algorithm),
        ),
        (
            "A3 HS256 keyed with the JWK text",
            hmac(
                rsa_jwk.to_string().as_bytes(),
                &header(&alpha.rsa, "HS256"),
                &claims,
            ),
            Expect::Rejected(Why::Algorithm),
        ),
        (
            "A3 HS256 keyed with n",
            hmac(
                rsa_jwk["n"].as_str().unwrap().as_bytes(),
                &header(&alpha.rsa, "HS256"),
                &claims,
            ),
            Expect::Rejected(Why::Algorithm),
        ),
        (
            "A4 HS256 with a published oct key",
            hmac(
                b"published-secret",
                &json!({"alg": "HS256", "kid": "oct1"}),
                &claims,
            ),
            Expect::Rejected(Why::Algorithm),
        ),
        (
            "A5a PS256 by the real key",
            forge(
                &alpha.rsa,
                Algorithm::PS256,
                &header(&alpha.rsa, "PS256"),
                &claims,
            ),
            Expect::Rejected(Why::Algorithm),
        ),
        (
            "A5b RS384 by the real key",
            forge(
                &alpha.rsa,
                Algorithm::RS384,
                &header(&alpha.rsa, "RS384"),
                &claims,
            ),
            Expect::Rejected(Why::Algorithm),
        ),
        (
            "A5c ES256 naming the RSA key",
            forge(
                &alpha.ec,
                Algorithm::ES256,
                &header(&alpha.rsa, "ES256"),
                &claims,
            ),
            Expect::Rejected(Why::Algorithm),
        ),
        (
            "A5d RS256 naming the EC key",
            forge(
                &alpha.rsa,
                Algorithm::RS256,
                &header(&alpha.ec, "RS256"),
                &claims,
            ),
            Expect::Rejected(Why::Algorithm),
        ),
        (
            "A6 ES256 allowed beside RS256",
            forge(
                &alpha.ec,
                Algorithm::ES256,
                &header(&alpha.ec, "ES256"),
                &with(&claims, &json!({"jti": "a6"})),
            ),
            Expect::Issued,
        ),
        (
            "A8 ES512",
            format!(
                "{}.{good_payload}.{good_signature}",
                b64(format!(r#"{{"alg":"ES512","kid":"{}"}}"#, alpha.ec.kid()))
            ),
            Expect::Rejected(Why::Algorithm),
        ),
        (
            "A8 EdDSA",
            format!(
                "{}.{good_payload}.{good_signature}",
                b64(format!(r#"{{"alg":"EdDSA","kid":"{}"}}"#, alpha.ec.kid()))
            ),
            Expect::Rejected(Why::Algorithm),
        ),
        // 2.2 Header and key source injection
        (
            "H1 embedded jwk",
            forge(
                &attacker,
                Algorithm::RS256,
                &json!({"alg": "RS256", "kid": alpha.rsa.kid(), "jwk": attacker.public_jwk()}),
                &claims,
            ),
            Expect::Rejected(Why::Signature),
        ),
        (
            "H2 jku to the attacker",
            forge(
                &attacker,
                Algorithm::RS256,
                &json!({"alg": "RS256", "kid": attacker.kid(), "jku": format!("{}/evil", alpha.url)}),
                &claims,
            ),
            Expect::Rejected(Why::Kid),
        ),
        (
            "H2 x5u to the attacker",
            forge(
                &attacker,
                Algorithm::RS256,
                &json!({"alg": "RS256", "kid": attacker.kid(), "x5u": format!("{}/evil", alpha.url)}),
                &claims,
            ),
            Expect::Rejected(Why::Kid),
        ),
        (
            "H3 x5c chain",
            forge(
                &attacker,
                Algorithm::RS256,
                &json!({"alg": "RS256", "kid": alpha.rsa.kid(), "x5c": ["MIIBattacker"]}),
                &claims,
            ),
            Expect::Rejected(Why::Signature),
        ),
        (
            "H4 real signature with a jku",
            rs(
                &json!({"alg": "RS256", "kid": alpha.rsa.kid(), "jku": format!("{}/evil", alpha.url)}),
                &with(&claims, &json!({"jti": "h4"})),
            ),
            Expect::Issued,
        ),
        (
            "H5 crit unknown",
            rs(
                &json!({"alg": "RS256", "kid": alpha.rsa.kid(), "crit": ["exp"], "exp": 1}),
                &claims,
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "H6 crit empty",
            rs(
                &json!({"alg": "RS256", "kid": alpha.rsa.kid(), "crit": []}),
                &claims,
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "H7 b64 false",
            rs(
                &json!({"alg": "RS256", "kid": alpha.rsa.kid(), "b64": false, "crit": ["b64"]}),
                &claims,
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "H8 kid path traversal",
            rs(
                &json!({"alg": "RS256", "kid": "../../../../dev/null"}),
                &claims,
            ),
            Expect::Rejected(Why::Kid),
        ),
        (
            "H8 kid SQL",
            rs(&json!({"alg": "RS256", "kid": "x' OR '1'='1"}), &claims),
            Expect::Rejected(Why::Kid),
        ),
        (
            "H9 kid missing",
            rs(&json!({"alg": "RS256"}), &claims),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "H10 kid a number",
            rs(&json!({"alg": "RS256", "kid": 123}), &claims),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "H11 typ at+jwt",
            rs(
                &json!({"alg": "RS256", "kid": alpha.rsa.kid(), "typ": "at+jwt"}),
                &claims,
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "H11 typ absent",
            rs(
                &json!({"alg": "RS256", "kid": alpha.rsa.kid()}),
                &with(&claims, &json!({"jti": "h11"})),
            ),
            Expect::Issued,
        ),
        (
            "H12 duplicate alg",
            forge_raw(
                &alpha.rsa,
                Algorithm::RS256,
                &format!(
                    r#"{{"alg":"RS256","kid":"{}","alg":"HS256"}}"#,
                    alpha.rsa.kid()
                ),
                &claims.to_string(),
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "H13 deeply nested header",
            forge_raw(
                &alpha.rsa,
                Algorithm::RS256,
                &format!(
                    r#"{{"alg":"RS256","kid":"{}","x":{}1{}}}"#,
                    alpha.rsa.kid(),
                    "[".repeat(3000),
                    "]".repeat(3000)
                ),
                &claims.to_string(),
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "H14 header not JSON",
            forge_raw(
                &alpha.rsa,
                Algorithm::RS256,
                "not json",
                &claims.to_string(),
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "H14 header invalid UTF-8",
            format!(
                "{}.{good_payload}.{good_signature}",
                b64([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])
            ),
            Expect::Rejected(Why::Malformed),
        ),
        // 2.3 Signature encoding
        (
            "S1 empty signature",
            format!("{good_input}."),
            Expect::Rejected(Why::Malformed),
        ),
        (
            // One byte short, still canonical base64url: the signature check refuses it.
            "S2 truncated signature",
            format!(
                "{good_input}.{}",
                b64(&URL_SAFE_NO_PAD.decode(good_signature).unwrap()[..255])
            ),
            Expect::Rejected(Why::Signature),
        ),
        (
            "S2 extended signature",
            format!("{good}AAAA"),
            Expect::Rejected(Why::Signature),
        ),
        (
            "S3 ECDSA r=s=0",
            format!("{ec_input}.{}", b64([0u8; 64])),
            Expect::Rejected(Why::Signature),
        ),
        (
            "S4 ECDSA r=s=n",
            format!(
                "{ec_input}.{}",
                b64([order.clone(), order.clone()].concat())
            ),
            Expect::Rejected(Why::Signature),
        ),
        (
            "S5 ECDSA DER signature",
            format!(
                "{ec_input}.{}",
                b64([
                    &[0x30u8, 0x44, 0x02, 0x20][..],
                    &[1u8; 32],
                    &[0x02, 0x20],
                    &[1u8; 32]
                ]
                .concat())
            ),
            Expect::Rejected(Why::Signature),
        ),
        (
            "S7 padding on the signature",
            format!("{good}=="),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "S8 standard alphabet",
            resign(&good, &good_signature.replace('-', "+").replace('_', "/")),
            if good_signature.contains(['-', '_']) {
                Expect::Rejected(Why::Malformed)
            } else {
                Expect::Issued
            },
        ),
        (
            "S11 five segments",
            format!("{good}.AAAA.BBBB"),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "S12 two segments",
            good_input.to_owned(),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "S12 dots only",
            "..".to_owned(),
            Expect::Rejected(Why::Malformed),
        ),
        // 2.4 Time claims
        (
            "T1 expired",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(
                    &claims,
                    &json!({"exp": now - 120, "iat": now - 400, "nbf": now - 400}),
                ),
            ),
            Expect::Rejected(Why::Expired),
        ),
        (
            "T2 expired 45 s ago (leeway 30 s)",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(
                    &claims,
                    &json!({"exp": now - 45, "iat": now - 400, "nbf": now - 400}),
                ),
            ),
            Expect::Rejected(Why::Expired),
        ),
        (
            "T2 expired 10 s ago (within leeway)",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(
                    &claims,
                    &json!({"exp": now - 10, "iat": now - 400, "nbf": now - 400, "jti": "t2"}),
                ),
            ),
            Expect::Issued,
        ),
        (
            "T3 nbf in the future",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"nbf": now + 3600})),
            ),
            Expect::Rejected(Why::NotYetValid),
        ),
        (
            "T4 nbf a string",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"nbf": "soon"})),
            ),
            Expect::Rejected(Why::Claims),
        ),
        (
            "T5 iat a year ahead",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"iat": now + 31_536_000})),
            ),
            Expect::Rejected(Why::IssuedInFuture),
        ),
        (
            "T6 iat a string",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"iat": "yesterday"})),
            ),
            Expect::Rejected(Why::Claims),
        ),
        (
            "T6 iat missing",
            rs(&header(&alpha.rsa, "RS256"), &without(&claims, "iat")),
            Expect::Rejected(Why::Claims),
        ),
        (
            "T7 exp missing",
            rs(&header(&alpha.rsa, "RS256"), &without(&claims, "exp")),
            Expect::Rejected(Why::Claims),
        ),
        (
            "T7 exp null",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"exp": null})),
            ),
            Expect::Rejected(Why::Claims),
        ),
        (
            "T8 exp a string",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"exp": (now + 300).to_string()})),
            ),
            Expect::Rejected(Why::Claims),
        ),
        (
            "T9 exp a float (refused consistently)",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"exp": now as f64 + 300.7})),
            ),
            Expect::Rejected(Why::Claims),
        ),
        (
            "T10 exp negative",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"exp": -1})),
            ),
            Expect::Rejected(Why::Claims),
        ),
        (
            "T10 exp true",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"exp": true})),
            ),
            Expect::Rejected(Why::Claims),
        ),
        (
            "T10 exp 1e20",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"exp": 1e20})),
            ),
            Expect::Rejected(Why::Claims),
        ),
        (
            "T10 exp 2^64",
            forge_raw(
                &alpha.rsa,
                Algorithm::RS256,
                &header(&alpha.rsa, "RS256").to_string(),
                &claims.to_string().replace(
                    &format!("\"exp\":{}", now + 300),
                    "\"exp\":18446744073709551616",
                ),
            ),
            Expect::Rejected(Why::Claims),
        ),
        (
            "T11 exp u64::MAX",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"exp": u64::MAX})),
            ),
            Expect::Rejected(Why::Lifetime),
        ),
        (
            "T11 exp year 9999",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"exp": 253_402_300_799u64})),
            ),
            Expect::Rejected(Why::Lifetime),
        ),
        // 2.5 Audience and issuer
        (
            "C1 aud missing",
            rs(&header(&alpha.rsa, "RS256"), &without(&claims, "aud")),
            Expect::Rejected(Why::Claims),
        ),
        (
            "C2 aud null",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"aud": null})),
            ),
            Expect::Rejected(Why::Claims),
        ),
        (
            "C3 aud ours and another",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"aud": ["tokenvend", "other"]})),
            ),
            Expect::Rejected(Why::Audience),
        ),
        (
            "C3 aud [ours]",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"aud": ["tokenvend"], "jti": "c3"})),
            ),
            Expect::Issued,
        ),
        (
            "C4 aud other",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"aud": "other"})),
            ),
            Expect::Rejected(Why::Audience),
        ),
        (
            "C4 aud upper case",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"aud": "TOKENVEND"})),
            ),
            Expect::Rejected(Why::Audience),
        ),
        (
            "C4 aud trailing slash",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"aud": "tokenvend/"})),
            ),
            Expect::Rejected(Why::Audience),
        ),
        (
            "C4 aud []",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"aud": []})),
            ),
            Expect::Rejected(Why::Audience),
        ),
        (
            "C5 aud a number",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"aud": 5})),
            ),
            Expect::Rejected(Why::Claims),
        ),
        (
            "C7 iss missing",
            rs(&header(&alpha.rsa, "RS256"), &without(&claims, "iss")),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "C8 iss trailing slash",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"iss": format!("{}/", alpha.url)})),
            ),
            Expect::Rejected(Why::Issuer),
        ),
        (
            "C8 iss upper case",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"iss": alpha.url.to_uppercase()})),
            ),
            Expect::Rejected(Why::Issuer),
        ),
        (
            "C9 iss an array",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(
                    &claims,
                    &json!({"iss": ["https://evil.example", alpha.url]}),
                ),
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "C10 iss a number",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"iss": 7})),
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "C11 beta's key claiming alpha",
            forge(
                &beta.rsa,
                Algorithm::RS256,
                &header(&beta.rsa, "RS256"),
                &claims,
            ),
            Expect::Rejected(Why::Kid),
        ),
        (
            "C12 beta's key under alpha's kid",
            forge(
                &beta.rsa,
                Algorithm::RS256,
                &header(&alpha.rsa, "RS256"),
                &claims,
            ),
            Expect::Rejected(Why::Signature),
        ),
        // 2.7 Payload structure and size
        (
            "P1 duplicate iss",
            forge_raw(
                &alpha.rsa,
                Algorithm::RS256,
                &header(&alpha.rsa, "RS256").to_string(),
                &format!(r#"{{"iss":"https://evil",{}"#, &claims.to_string()[1..]),
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "P2 duplicate custom claim",
            forge_raw(
                &alpha.rsa,
                Algorithm::RS256,
                &header(&alpha.rsa, "RS256").to_string(),
                &format!(r#"{{"repository":"evil/x",{}"#, &claims.to_string()[1..]),
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "P3 payload an array",
            forge_raw(
                &alpha.rsa,
                Algorithm::RS256,
                &header(&alpha.rsa, "RS256").to_string(),
                &format!(r#"[{},{},"x","{}","tokenvend"]"#, now + 300, now, alpha.url),
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "P4 payload not JSON",
            forge_raw(
                &alpha.rsa,
                Algorithm::RS256,
                &header(&alpha.rsa, "RS256").to_string(),
                "not json",
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "P5 deeply nested payload",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(
                    &claims,
                    &serde_json::from_str::<Value>(&format!(
                        r#"{{"x":{}1{}}}"#,
                        "[".repeat(100),
                        "]".repeat(100)
                    ))
                    .unwrap(),
                ),
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "P6 oversized token",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"pad": "x".repeat(20_000)})),
            ),
            Expect::Rejected(Why::Malformed),
        ),
        (
            "P7 sub a number",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"sub": 42})),
            ),
            Expect::Rejected(Why::Claims),
        ),
        // 3 (verification side)
        (
            "M1 NUL in a claim",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"sub": "repo:acme/webapp\u{0}evil"})),
            ),
            Expect::Rejected(Why::ControlCharacters),
        ),
        (
            "M1 newline in a claim",
            rs(
                &header(&alpha.rsa, "RS256"),
                &with(&claims, &json!({"ref": "refs/heads/main\n"})),
            ),
            Expect::Rejected(Why::ControlCharacters),
        ),
    ];
    let mut unauthorised_bodies = std::collections::BTreeSet::new();
    for (case, token, expect) in &rows {
        let before = service.rejections().await;
        let response = service.exchange(token).await;
        if matches!(expect, Expect::Rejected(_)) {
            let names: Vec<String> = response.headers().keys().map(ToString::to_string).collect();
            unauthorised_bodies.insert(names.join(","));
        }
        check(case, response, *expect, token).await;
        service.check_counted(case, &before, *expect).await;
    }
    // N14: every rejection looks the same from outside (same headers), whatever the cause.
    assert_eq!(unauthorised_bodies.len(), 1, "{unauthorised_bodies:?}");
    // H2/H4: a URL taken from a token is never fetched.
    assert_eq!(alpha.hits("/evil"), 0);
}

#[tokio::test]
async fn an_algorithm_the_issuer_does_not_allow_is_refused_even_when_the_key_would_verify_it() {
    let alpha = ScriptedIssuer::start().await;
    let beta = ScriptedIssuer::start().await;
    // The RSA key states no `alg`, so the key itself would verify RS384 as well as RS256:
    // only the issuer's `algorithms` list stands between an RS384 token and acceptance.
    let mut rsa = alpha.rsa.public_jwk();
    rsa.as_object_mut().unwrap().remove("alg");
    alpha.serve_jwk_values(&[rsa]);
    let rs384 = |issuer: &ScriptedIssuer| {
        forge(
            &issuer.rsa,
            Algorithm::RS384,
            &header(&issuer.rsa, "RS384"),
            &issuer.claims(),
        )
    };

    let text = config(&alpha, &beta, "");
    assert!(text.contains("algorithms: [RS256, ES256]"), "{text}");
    let service = Service::start_with_config(&text).await;
    let token = rs384(&alpha);
    check(
        "RS384 not in [RS256, ES256]",
        service.exchange(&token).await,
        Expect::Rejected(Why::Algorithm),
        &token,
    )
    .await;
    let token = alpha.token(&alpha.claims());
    check(
        "RS256 by the same key",
        service.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
    assert_eq!(
        sample(
            &service.metrics().await,
            r#"tokenvend_rejections_total{reason="alg_not_allowed"}"#
        ),
        Some(1.0)
    );

    // The same key and token shape, with RS384 allowed: accepted.
    let allowing =
        Service::start_with_config(&text.replacen("[RS256, ES256]", "[RS256, RS384]", 1)).await;
    let token = rs384(&alpha);
    check(
        "RS384 in [RS256, RS384]",
        allowing.exchange(&token).await,
        Expect::Issued,
        &token,
    )
    .await;
}
