//! Reading a JWKS document into usable verification keys. Every entry is checked on its own:
//! a key that could be misused (symmetric, encryption-only, weak, mislabelled) is dropped.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// More keys than this in one document is refused outright.
pub const MAX_KEYS: usize = 50;
const MIN_RSA_BITS: usize = 2048;

/// The kind of public key, which fixes the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
}

/// A public key from an issuer's JWKS, fit for verifying signatures.
pub struct VerifyingKey {
    pub kind: KeyKind,
    /// The JWK's own `alg`, when it states one.
    pub declared_algorithm: Option<Algorithm>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Whether this key may verify a signature made with `algorithm`.
    pub fn allows(&self, algorithm: Algorithm) -> bool {
        let family_fits = match self.kind {
            KeyKind::Rsa => matches!(
                algorithm,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            KeyKind::EcP256 => algorithm == Algorithm::ES256,
            KeyKind::EcP384 => algorithm == Algorithm::ES384,
        };
        family_fits
            && self
                .declared_algorithm
                .is_none_or(|declared| declared == algorithm)
    }
}

/// The usable keys of one JWKS document, by `kid`.
pub type KeyMap = HashMap<String, Arc<VerifyingKey>>;

/// Why a whole document was refused (the previous keys stay in use).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("not a JSON object with a `keys` array")]
    NotAKeySet,
    #[error("more than {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("kid {0:?} appears more than once")]
    DuplicateKeyId(String),
    #[error("no usable signing key")]
    NoUsableKey,
}

/// Parses a JWKS body. Unusable entries are skipped (and counted in the returned number);
/// a duplicate `kid` among usable keys refuses the document, since either could be the real one.
pub fn parse_key_set(body: &[u8]) -> Result<(KeyMap, usize), JwksError> {
    let document: Value = serde_json::from_slice(body).map_err(|_| JwksError::NotAKeySet)?;
    let Some(entries) = document.get("keys").and_then(Value::as_array) else {
        return Err(JwksError::NotAKeySet);
    };
    if entries.len() > MAX_KEYS {
        return Err(JwksError::TooManyKeys);
    }
    let mut keys = KeyMap::new();
    let mut skipped = 0;
    for entry in entries {
        let Some((kid, key)) = usable_key(entry) else {
            skipped += 1;
            continue;
        };
        if keys.insert(kid.clone(), Arc::new(key)).is_some() {
            return Err(JwksError::DuplicateKeyId(kid));
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok((keys, skipped))
}

fn usable_key(entry: &Value) -> Option<(String, VerifyingKey)> {
    let field = |name: &str| entry.get(name).and_then(Value::as_str);
    let kid =
        field("kid").filter(|kid| !kid.is_empty() && kid.len() <= super::token::MAX_KID_LEN)?;
    if entry.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return None;
    }
    let declared_algorithm = match entry.get("alg") {
        None => None,
        Some(alg) => Some(alg.as_str()?.parse::<Algorithm>().ok()?),
    };
    let (kind, key) = match field("kty")? {
        "RSA" => (KeyKind::Rsa, rsa_key(field("n")?, field("e")?)?),
        "EC" => ec_key(field("crv")?, field("x")?, field("y")?)?,
        _ => return None,
    };
    let key = VerifyingKey {
        kind,
        declared_algorithm,
        key,
    };
    if let Some(declared) = declared_algorithm
        && !key.allows(declared)
    {
        return None;
    }
    Some((kid.to_owned(), key))
}

fn rsa_key(n: &str, e: &str) -> Option<DecodingKey> {
    let modulus = URL_SAFE_NO_PAD.decode(n).ok()?;
    let exponent = URL_SAFE_NO_PAD.decode(e).ok()?;
    let significant: &[u8] = {
        let start = modulus.iter().position(|&b| b != 0)?;
        &modulus[start..]
    };
    let bits = significant.len() * 8 - significant[0].leading_zeros() as usize;
    if bits < MIN_RSA_BITS || exponent != [0x01, 0x00, 0x01] {
        return None;
    }
    Some(DecodingKey::from_rsa_raw_components(significant, &exponent))
}

fn ec_key(crv: &str, x: &str, y: &str) -> Option<(KeyKind, DecodingKey)> {
    let (kind, size, curve) = match crv {
        "P-256" => (
            KeyKind::EcP256,
            32,
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        ),
        "P-384" => (
            KeyKind::EcP384,
            48,
            &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
        ),
        _ => return None,
    };
    let x_bytes = URL_SAFE_NO_PAD.decode(x).ok()?;
    let y_bytes = URL_SAFE_NO_PAD.decode(y).ok()?;
    if x_bytes.len() != size || y_bytes.len() != size {
        return None;
    }
    // A point off the curve is refused here, when the set is loaded, not at verification.
    let point = [&[0x04], x_bytes.as_slice(), y_bytes.as_slice()].concat();
    aws_lc_rs::signature::ParsedPublicKey::new(curve, &point).ok()?;
    Some((kind, DecodingKey::from_ec_components(x, y).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dev_pki::keys::SigningKey;
    use serde_json::json;

    fn rsa() -> Value {
        SigningKey::generate(Algorithm::RS256).unwrap().public_jwk()
    }

    fn ec() -> Value {
        SigningKey::generate(Algorithm::ES256).unwrap().public_jwk()
    }

    fn with(mut jwk: Value, changes: &Value) -> Value {
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                jwk.as_object_mut().unwrap().remove(key);
            } else {
                jwk[key] = value.clone();
            }
        }
        jwk
    }

    fn load(keys: &[Value]) -> Result<(KeyMap, usize), JwksError> {
        parse_key_set(json!({"keys": keys}).to_string().as_bytes())
    }

    #[test]
    fn rsa_and_ec_signing_keys_load_by_kid() {
        let (rsa, ec) = (rsa(), ec());
        let (keys, skipped) = load(&[rsa.clone(), ec.clone()]).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(keys[rsa["kid"].as_str().unwrap()].kind, KeyKind::Rsa);
        assert_eq!(keys[ec["kid"].as_str().unwrap()].kind, KeyKind::EcP256);
    }

    #[test]
    fn keys_that_could_be_misused_are_dropped_one_by_one() {
        let weak_n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xC5u8; 128]);
        let p384_size = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8; 48]);
        let rows: Vec<(&str, Value)> = vec![
            (
                "oct",
                json!({"kty": "oct", "kid": "oct1", "alg": "HS256", "k": "c2VjcmV0"}),
            ),
            ("use enc", with(rsa(), &json!({"use": "enc"}))),
            ("alg RSA-OAEP", with(rsa(), &json!({"alg": "RSA-OAEP"}))),
            ("RSA labelled ES256", with(rsa(), &json!({"alg": "ES256"}))),
            ("EC labelled RS256", with(ec(), &json!({"alg": "RS256"}))),
            ("RSA 1024 bits", with(rsa(), &json!({"n": weak_n}))),
            ("RSA e=3", with(rsa(), &json!({"e": "Aw"}))),
            ("RSA e=1", with(rsa(), &json!({"e": "AQ"}))),
            (
                "P-256 point labelled P-384",
                with(ec(), &json!({"crv": "P-384", "alg": null})),
            ),
            (
                "P-384 sized coordinates labelled P-256",
                with(ec(), &json!({"x": p384_size, "y": p384_size})),
            ),
            (
                "secp256k1",
                with(ec(), &json!({"crv": "secp256k1", "alg": null})),
            ),
            (
                "P-256 point off the curve",
                with(
                    ec(),
                    &json!({"y": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0u8; 32])}),
                ),
            ),
            (
                "OKP",
                json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
            ),
            ("unknown kty", json!({"kty": "foo", "kid": "foo"})),
            ("no kid", with(rsa(), &json!({"kid": null}))),
            ("not an object", json!(5)),
        ];
        for (case, bad) in rows {
            let good = ec();
            let (keys, skipped) = load(&[bad, good.clone()]).unwrap();
            assert_eq!((keys.len(), skipped), (1, 1), "{case}");
            assert!(keys.contains_key(good["kid"].as_str().unwrap()), "{case}");
        }
    }

    #[test]
    fn whole_documents_are_refused_when_ambiguous_empty_or_oversized() {
        let key = rsa();
        let mut twin = rsa();
        twin["kid"] = key["kid"].clone();
        assert!(matches!(
            load(&[key.clone(), twin]),
            Err(JwksError::DuplicateKeyId(_))
        ));
        assert_eq!(load(&[]).unwrap_err(), JwksError::NoUsableKey);
        assert_eq!(
            load(&[with(key.clone(), &json!({"use": "enc"}))]).unwrap_err(),
            JwksError::NoUsableKey
        );
        let many: Vec<Value> = (0..=MAX_KEYS)
            .map(|i| with(key.clone(), &json!({"kid": format!("k{i}")})))
            .collect();
        assert_eq!(load(&many).unwrap_err(), JwksError::TooManyKeys);
        for body in [&b"[]"[..], b"{}", b"{\"keys\": {}}", b"not json"] {
            assert_eq!(parse_key_set(body).unwrap_err(), JwksError::NotAKeySet);
        }
    }

    #[test]
    fn a_key_verifies_only_the_algorithms_of_its_kind_and_label() {
        let (keys, _) = load(&[with(rsa(), &json!({"alg": null}))]).unwrap();
        let rsa_key = keys.values().next().unwrap();
        assert!(rsa_key.allows(Algorithm::RS256) && rsa_key.allows(Algorithm::PS256));
        assert!(!rsa_key.allows(Algorithm::ES256) && !rsa_key.allows(Algorithm::HS256));
        let (keys, _) = load(&[rsa()]).unwrap();
        let labelled = keys.values().next().unwrap();
        assert!(labelled.allows(Algorithm::RS256) && !labelled.allows(Algorithm::PS256));
        let (keys, _) = load(&[ec()]).unwrap();
        let ec_key = keys.values().next().unwrap();
        assert!(
            ec_key.allows(Algorithm::ES256)
                && !ec_key.allows(Algorithm::ES384)
                && !ec_key.allows(Algorithm::RS256)
        );
    }
}
