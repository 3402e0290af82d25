//! Property tests over the HTTP gate and the token pre-parser: arbitrary input never panics,
//! never passes, and never yields anything but the documented refusals.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use tokenvend::oidc::{UnverifiedToken, has_token_shape};

/// `PROPTEST_CASES` from the environment, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_.=+/ -]{0,300}",
        (
            "[A-Za-z0-9_-]{0,80}",
            "[A-Za-z0-9_-]{0,80}",
            "[A-Za-z0-9_-]{0,80}"
        )
            .prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        (any::<Vec<u8>>(), any::<Vec<u8>>()).prop_map(|(header, payload)| {
            use base64::Engine;
            let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!("{}.{}.c2ln", engine.encode(header), engine.encode(payload))
        }),
        ("\\PC{0,40}", "\\PC{0,40}").prop_map(|(alg, iss)| {
            use base64::Engine;
            let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let header = serde_json::json!({"alg": alg, "kid": "k"}).to_string();
            let payload = serde_json::json!({"iss": iss}).to_string();
            format!("{}.{}.c2ln", engine.encode(header), engine.encode(payload))
        }),
    ]
}

proptest! {
    // 4,000 cases in the normal suite; PROPTEST_CASES=N runs a longer fuzz session.
    #![proptest_config(ProptestConfig { cases: cases(4000), ..ProptestConfig::default() })]

    #[test]
    fn the_pre_parser_never_panics_and_accepts_only_well_shaped_tokens(raw in token_like()) {
        if let Ok(token) = UnverifiedToken::parse(&raw) {
            prop_assert!(has_token_shape(&raw));
            prop_assert!(!token.unverified_key_id.is_empty());
            prop_assert!(token.unverified_key_id.len() <= 256);
        }
    }
}

/// The gate, through the real router: any Authorization value and query is answered with a
/// documented status, and never 5xx.
#[tokio::test]
async fn the_http_gate_answers_arbitrary_credentials_with_documented_statuses() {
    let (_alpha, _beta, service) = crate::harness::setup().await;
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(300),
        ..ProptestConfig::default()
    });
    let inputs = (
        prop_oneof![
            "\\PC{0,64}",
            "(Bearer|bearer|Basic|Token)[ \t]{0,2}[A-Za-z0-9_.=+/-]{0,200}"
        ],
        "[a-z_]{0,12}(=[A-Za-z0-9.]{0,20})?",
    );
    let inputs_count = cases(300);
    let cases: Vec<(String, String)> = (0..inputs_count)
        .map(|_| inputs.new_tree(&mut runner).unwrap().current())
        .collect();
    for (authorization, query) in cases {
        let mut request = service
            .http
            .post(format!("{}/v1/token?{query}", service.address));
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&authorization) {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let status = request.send().await.unwrap().status().as_u16();
        assert!(
            matches!(status, 400 | 401),
            "{authorization:?} ?{query}: {status}"
        );
    }
}
