//! The cheap, unverified look at a token that decides where it goes: shape, header and
//! the claimed issuer. Nothing read here is trusted; names say so.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::VerifyError;

/// Longest token accepted, checked before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest `kid` accepted; it is only ever a map key.
pub const MAX_KID_LEN: usize = 256;

/// A token whose shape is right, with what its unverified header and payload claim.
#[derive(Debug)]
pub struct UnverifiedToken<'t> {
    pub raw: &'t str,
    pub unverified_algorithm: Algorithm,
    pub unverified_key_id: String,
    pub unverified_issuer: String,
}

#[derive(Deserialize)]
struct HeaderView {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
}

#[derive(Deserialize)]
struct IssuerView {
    iss: String,
}

/// Whether `raw` is a compact JWS by its characters alone: at most [`MAX_TOKEN_LEN`] bytes of
/// `[A-Za-z0-9_-]` in three non-empty dot-separated segments.
pub fn has_token_shape(raw: &str) -> bool {
    raw.len() <= MAX_TOKEN_LEN
        && raw.split('.').count() == 3
        && raw.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl<'t> UnverifiedToken<'t> {
    /// Checks the shape and reads the header and the claimed issuer, refusing what no issuer
    /// could have signed: a missing or oversized `kid`, a `typ` other than JWT, a non-object
    /// payload, an `iss` that is not a single string.
    pub fn parse(raw: &'t str) -> Result<Self, VerifyError> {
        if !has_token_shape(raw) {
            return Err(VerifyError::Malformed("shape"));
        }
        let mut segments = raw.split('.');
        let (Some(header), Some(payload)) = (segments.next(), segments.next()) else {
            return Err(VerifyError::Malformed("shape"));
        };
        let header: HeaderView = decode_json(header).ok_or(VerifyError::Malformed("header"))?;
        let algorithm =
            Algorithm::from_str(&header.alg).map_err(|_| VerifyError::AlgorithmNotAllowed)?;
        if header
            .typ
            .as_deref()
            .is_some_and(|typ| !typ.eq_ignore_ascii_case("JWT"))
        {
            return Err(VerifyError::Malformed("typ"));
        }
        let Some(kid) = header
            .kid
            .filter(|kid| !kid.is_empty() && kid.len() <= MAX_KID_LEN)
        else {
            return Err(VerifyError::Malformed("kid"));
        };
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| VerifyError::Malformed("payload"))?;
        if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(VerifyError::Malformed("payload"));
        }
        let issuer: IssuerView =
            serde_json::from_slice(&payload).map_err(|_| VerifyError::Malformed("iss"))?;
        Ok(Self {
            raw,
            unverified_algorithm: algorithm,
            unverified_key_id: kid,
            unverified_issuer: issuer.iss,
        })
    }
}

fn decode_json<T: for<'de> Deserialize<'de>>(segment: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    #[test]
    fn a_well_formed_token_is_routed_by_its_claimed_issuer() {
        let raw = token(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#,
            r#"{"iss":"https://idp"}"#,
        );
        let parsed = UnverifiedToken::parse(&raw).unwrap();
        assert_eq!(parsed.unverified_issuer, "https://idp");
        assert_eq!(parsed.unverified_key_id, "k1");
        assert_eq!(parsed.unverified_algorithm, Algorithm::ES256);
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_key_is_looked_up() {
        let ok_header = r#"{"alg":"RS256","kid":"k1"}"#;
        let ok_payload = r#"{"iss":"https://idp"}"#;
        let good = token(ok_header, ok_payload);
        let rows: Vec<(String, VerifyError)> = vec![
            (String::new(), VerifyError::Malformed("shape")),
            ("a.b".into(), VerifyError::Malformed("shape")),
            ("a.b.c.d.e".into(), VerifyError::Malformed("shape")),
            (format!("{good}."), VerifyError::Malformed("shape")),
            (format!("{good}\n"), VerifyError::Malformed("shape")),
            (format!(" {good}"), VerifyError::Malformed("shape")),
            (format!("{good}=="), VerifyError::Malformed("shape")),
            (good.replacen('.', "..", 1), VerifyError::Malformed("shape")),
            (
                "a".repeat(MAX_TOKEN_LEN + 1),
                VerifyError::Malformed("shape"),
            ),
            (
                token(r#"{"alg":"none","kid":"k1"}"#, ok_payload),
                VerifyError::AlgorithmNotAllowed,
            ),
            (
                token(r#"{"alg":"NONE","kid":"k1"}"#, ok_payload),
                VerifyError::AlgorithmNotAllowed,
            ),
            (
                token(r#"{"alg":"ES512","kid":"k1"}"#, ok_payload),
                VerifyError::AlgorithmNotAllowed,
            ),
            (
                token(r#"{"alg":"RS256"}"#, ok_payload),
                VerifyError::Malformed("kid"),
            ),
            (
                token(r#"{"alg":"RS256","kid":""}"#, ok_payload),
                VerifyError::Malformed("kid"),
            ),
            (
                token(r#"{"alg":"RS256","kid":123}"#, ok_payload),
                VerifyError::Malformed("header"),
            ),
            (
                token(
                    &format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(300)),
                    ok_payload,
                ),
                VerifyError::Malformed("kid"),
            ),
            (
                token(r#"{"alg":"RS256","kid":"k1","typ":"at+jwt"}"#, ok_payload),
                VerifyError::Malformed("typ"),
            ),
            (
                token(r#"{"alg":"RS256","kid":"k1","alg":"HS256"}"#, ok_payload),
                VerifyError::Malformed("header"),
            ),
            (
                token("not json", ok_payload),
                VerifyError::Malformed("header"),
            ),
            (
                token(ok_header, r#"["https://idp"]"#),
                VerifyError::Malformed("payload"),
            ),
            (
                token(ok_header, "not json"),
                VerifyError::Malformed("payload"),
            ),
            (
                token(ok_header, r#"{"iss":["https://evil","https://idp"]}"#),
                VerifyError::Malformed("iss"),
            ),
            (
                token(ok_header, r#"{"iss":7}"#),
                VerifyError::Malformed("iss"),
            ),
            (
                token(ok_header, r#"{"sub":"x"}"#),
                VerifyError::Malformed("iss"),
            ),
            (
                token(ok_header, r#"{"iss":"a","iss":"b"}"#),
                VerifyError::Malformed("iss"),
            ),
        ];
        for (raw, expected) in rows {
            assert_eq!(
                UnverifiedToken::parse(&raw).unwrap_err(),
                expected,
                "{raw:?}"
            );
        }
    }
}
