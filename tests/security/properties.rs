//! Property tests over the token pre-parser and the HTTP gate. The inputs are built from parts
//! whose expected answer the test works out itself (a model), so every case reaches the code
//! under test and is held to one specific outcome.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tokenvend::oidc::{UnverifiedToken, VerifyError};

/// `PROPTEST_CASES` from the environment, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The JWS `alg` names jsonwebtoken implements (RFC 7518 plus EdDSA), spelt exactly.
const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384",
    "PS512", "EdDSA",
];

/// A header or claim member: absent, or this JSON value.
fn member(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(value)
}

fn alg() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => proptest::sample::select(ALGORITHMS.to_vec()).prop_map(Value::from),
        1 => Just(json!("none")),
        1 => Just(json!("rs256")),
        1 => "\\PC{0,8}".prop_map(Value::from),
        1 => Just(json!(256)),
    ]
}

fn typ() -> impl Strategy<Value = Option<Value>> {
    member(prop_oneof![
        Just(json!("JWT")),
        Just(json!("jwt")),
        Just(json!("at+jwt")),
        "\\PC{0,6}".prop_map(Value::from),
        Just(Value::Null),
    ])
}

fn kid() -> impl Strategy<Value = Option<Value>> {
    member(prop_oneof![
        4 => "\\PC{1,20}".prop_map(Value::from),
        // Around the 256-byte limit.
        1 => (250usize..262).prop_map(|n| Value::from("k".repeat(n))),
        1 => Just(json!("")),
        1 => Just(json!(7)),
        1 => Just(Value::Null),
    ])
}

fn iss() -> impl Strategy<Value = Option<Value>> {
    member(prop_oneof![
        4 => "\\PC{0,30}".prop_map(Value::from),
        1 => Just(json!(1)),
        1 => Just(json!(["https://a", "https://b"])),
        1 => Just(Value::Null),
    ])
}

/// A token's parts: header members, payload (an object, or an array), signature segment.
#[derive(Debug, Clone)]
struct Parts {
    alg: Value,
    typ: Option<Value>,
    kid: Option<Value>,
    iss: Option<Value>,
    payload_is_array: bool,
    signature: String,
}

fn parts() -> impl Strategy<Value = Parts> {
    (
        alg(),
        typ(),
        kid(),
        iss(),
        proptest::bool::weighted(0.1),
        "[A-Za-z0-9_-]{1,40}",
    )
        .prop_map(|(alg, typ, kid, iss, payload_is_array, signature)| Parts {
            alg,
            typ,
            kid,
            iss,
            payload_is_array,
            signature,
        })
}

impl Parts {
    fn token(&self) -> String {
        let mut header = Map::new();
        header.insert("alg".into(), self.alg.clone());
        for (name, value) in [("typ", &self.typ), ("kid", &self.kid)] {
            if let Some(value) = value {
                header.insert(name.into(), value.clone());
            }
        }
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("someone"));
        if let Some(iss) = &self.iss {
            claims.insert("iss".into(), iss.clone());
        }
        let payload = if self.payload_is_array {
            json!([claims])
        } else {
            Value::Object(claims)
        };
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            self.signature
        )
    }

    /// What the pre-parser must answer, checked in its documented order: header shape, `alg`,
    /// `typ`, `kid`, payload, `iss`.
    fn expected(&self) -> Result<(Algorithm, String, String), VerifyError> {
        let optional_string = |value: &Option<Value>| match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(VerifyError::Malformed("header")),
        };
        let Value::String(alg) = &self.alg else {
            return Err(VerifyError::Malformed("header"));
        };
        let typ = optional_string(&self.typ)?;
        let kid = optional_string(&self.kid)?;
        if !ALGORITHMS.contains(&alg.as_str()) {
            return Err(VerifyError::AlgorithmNotAllowed);
        }
        if typ.is_some_and(|typ| !typ.eq_ignore_ascii_case("jwt")) {
            return Err(VerifyError::Malformed("typ"));
        }
        let kid = kid.filter(|kid| !kid.is_empty() && kid.len() <= 256);
        let Some(kid) = kid else {
            return Err(VerifyError::Malformed("kid"));
        };
        if self.payload_is_array {
            return Err(VerifyError::Malformed("payload"));
        }
        let Some(Value::String(iss)) = &self.iss else {
            return Err(VerifyError::Malformed("iss"));
        };
        Ok((alg.parse().unwrap(), kid, iss.clone()))
    }
}

/// Characters that break the compact shape wherever they are put.
fn shape_breaker() -> impl Strategy<Value = char> {
    proptest::sample::select(vec!['.', '=', '+', '/', ' ', '\n', '\t', '\0', 'é', '"'])
}

proptest! {
    // 2,000 cases in the normal suite; PROPTEST_CASES=N runs a longer session.
    #![proptest_config(ProptestConfig { cases: cases(2000), ..ProptestConfig::default() })]

    #[test]
    fn the_pre_parser_answers_each_header_and_payload_as_the_model_says(parts in parts()) {
        let raw = parts.token();
        let got = UnverifiedToken::parse(&raw).map(|token| {
            (token.unverified_algorithm, token.unverified_key_id, token.unverified_issuer)
        });
        prop_assert_eq!(got, parts.expected(), "{}", raw);
    }

    #[test]
    fn a_character_outside_the_compact_alphabet_is_refused_by_its_shape(
        parts in parts(),
        breaker in shape_breaker(),
        at in any::<prop::sample::Index>(),
    ) {
        let mut raw = parts.token();
        let boundaries: Vec<usize> = (0..=raw.len()).filter(|&i| raw.is_char_boundary(i)).collect();
        raw.insert(*at.get(&boundaries), breaker);
        prop_assert_eq!(
            UnverifiedToken::parse(&raw).map(|_| ()),
            Err(VerifyError::Malformed("shape"))
        );
    }
}

/// The service, on a runtime of its own that outlives every case.
fn gate() -> &'static (tokio::runtime::Runtime, String, reqwest::Client) {
    static GATE: OnceLock<(tokio::runtime::Runtime, String, reqwest::Client)> = OnceLock::new();
    GATE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let (alpha, beta, service) = crate::harness::setup().await;
            address_tx.send(service.address.clone()).unwrap();
            std::future::pending::<()>().await;
            drop((alpha, beta, service));
        });
        let address = address_rx.recv().unwrap();
        (runtime, address, reqwest::Client::new())
    })
}

/// An `Authorization` value: a scheme, a separator and a credential, sometimes with bytes
/// that are not visible ASCII.
fn authorization() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            4 => Just("Bearer"),
            1 => Just("bearer"),
            1 => Just("BEARER"),
            1 => Just("Basic"),
            1 => Just("Token"),
            1 => Just(""),
        ],
        prop_oneof![6 => Just(" "), 1 => Just("  "), 1 => Just("\t"), 1 => Just("")],
        prop_oneof![
            3 => "[A-Za-z0-9_-]{1,60}\\.[A-Za-z0-9_-]{1,60}\\.[A-Za-z0-9_-]{1,60}",
            2 => "[A-Za-z0-9_.=+/-]{0,120}",
            1 => "[A-Za-z0-9.]{1,20}[ \t][A-Za-z0-9.]{1,20}",
        ],
        proptest::option::weighted(0.1, prop_oneof![Just(0x80u8), Just(0xffu8)]),
    )
        .prop_map(|(scheme, separator, credential, high)| {
            let mut value = format!("{scheme}{separator}{credential}").into_bytes();
            value.extend(high);
            value
        })
}

/// What the gate answers, worked out from RFC 6750's `Bearer SP token` grammar: 400
/// `invalid_request` for anything that is not exactly one bearer credential (or for a query
/// naming a credential), else the credential is read as a token and refused as malformed.
fn gate_expects(value: &[u8], query: &str) -> (u16, &'static str) {
    let invalid = (400, "invalid_request");
    if query.starts_with("access_token") {
        return invalid;
    }
    let Some(text) = value
        .iter()
        .all(|&b| b == b'\t' || (32..127).contains(&b))
        .then(|| std::str::from_utf8(value).unwrap())
    else {
        return invalid;
    };
    let Some((scheme, token)) = text.split_once(' ') else {
        return invalid;
    };
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.bytes().any(|b| b.is_ascii_whitespace())
    {
        return invalid;
    }
    (401, "invalid_token")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(300), ..ProptestConfig::default() })]

    #[test]
    fn the_http_gate_answers_each_authorization_value_as_the_grammar_says(
        value in authorization(),
        query in prop_oneof![3 => Just(""), 2 => Just("dryRun=true"), 1 => Just("access_token=x")],
    ) {
        let (runtime, address, client) = gate();
        let header = reqwest::header::HeaderValue::from_bytes(&value);
        prop_assume!(header.is_ok(), "not representable as a header value");
        let response = runtime.block_on(async {
            let response = client
                .post(format!("{address}/v1/token?{query}"))
                .header(reqwest::header::AUTHORIZATION, header.unwrap())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        });
        let (status, body) = response;
        let (want_status, want_error) = gate_expects(&value, query);
        prop_assert_eq!(status, want_status, "{:?} ?{}: {}", String::from_utf8_lossy(&value), query, body);
        prop_assert_eq!(&body["error"], want_error);
        if want_status == 401 {
            // Random credentials never decode into a header and payload.
            prop_assert_eq!(&body["error_description"], "the token is malformed");
        }
    }
}
