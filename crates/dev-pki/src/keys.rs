//! Signing keys for the local OIDC issuer and the Kubernetes API stand-in.
//!
//! Both sign JWTs the way their real counterparts do: the key id is derived from the public key
//! exactly as kube-apiserver derives it, and the public half is published as a JWK in the field
//! order go-jose writes, so a client that works against these keys works against a real cluster.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk as LibraryJwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, PublicKeyData as _};
use serde::Serialize;

/// Why a key could not be generated or a token not signed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Only RS256 and ES256 keys are generated: they are what kube-apiserver and common OIDC
    /// issuers use.
    #[error("unsupported signing algorithm {0:?}: only RS256 and ES256 keys are generated")]
    UnsupportedAlgorithm(Algorithm),
    #[error("key generation failed: {0}")]
    Generation(#[from] rcgen::Error),
    #[error("the JWT library rejected the key: {0}")]
    Library(#[from] jsonwebtoken::errors::Error),
    #[error("claims must be a JSON object")]
    ClaimsNotAnObject,
}

/// A freshly generated private key with its key id and public JWK.
///
/// `Debug` shows only the algorithm and key id, never private material.
pub struct SigningKey {
    algorithm: Algorithm,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: PublicJwk,
}

/// A public JWK in go-jose's field order (`use, kty, kid, crv, alg, x, y, n, e`), which is the
/// order kube-apiserver's `/openid/v1/jwks` uses.
#[derive(Debug, Clone, Serialize)]
pub struct PublicJwk {
    #[serde(rename = "use")]
    use_: &'static str,
    kty: &'static str,
    kid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<&'static str>,
    alg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<String>,
}

impl SigningKey {
    /// RS256 → a fresh 2048-bit RSA key; ES256 → a fresh P-256 key.
    ///
    /// # Errors
    /// Any other algorithm is refused; key generation itself can fail only on a broken crypto
    /// backend.
    pub fn generate(alg: Algorithm) -> anyhow::Result<Self> {
        Ok(Self::generate_key(alg)?)
    }

    fn generate_key(alg: Algorithm) -> Result<Self, KeyError> {
        let (key_pair, encoding) = match alg {
            Algorithm::RS256 => {
                let key_pair = KeyPair::generate_for(&PKCS_RSA_SHA256)?;
                let encoding = EncodingKey::from_rsa_pem(key_pair.serialize_pem().as_bytes())?;
                (key_pair, encoding)
            }
            Algorithm::ES256 => {
                let key_pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
                let encoding = EncodingKey::from_ec_pem(key_pair.serialize_pem().as_bytes())?;
                (key_pair, encoding)
            }
            other => return Err(KeyError::UnsupportedAlgorithm(other)),
        };
        let kid = key_id(&key_pair.subject_public_key_info());
        let library_jwk = LibraryJwk::from_encoding_key(&encoding, alg)?;
        let decoding = DecodingKey::from_jwk(&library_jwk)?;
        let jwk = PublicJwk::from_library(&library_jwk, alg, kid.clone())?;
        Ok(Self {
            algorithm: alg,
            kid,
            encoding,
            decoding,
            jwk,
        })
    }

    /// The key id: base64url-nopad(SHA-256(DER SubjectPublicKeyInfo)), exactly as
    /// kube-apiserver's `keyIDFromPublicKey` derives it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// RS256 or ES256.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The public JWK as a JSON value (a map: keys come out sorted when serialised).
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::to_value(&self.jwk).expect("a JWK of strings always serialises")
    }

    /// The public JWK with go-jose's field order, for serving JWKS documents.
    pub fn public_jwk_ordered(&self) -> &PublicJwk {
        &self.jwk
    }

    /// Signs `claims` with the header `{"alg","kid"}`, preceded by `"typ"` when `typ` is given.
    ///
    /// # Errors
    /// `claims` is not a JSON object, or the signer fails.
    pub fn sign(&self, typ: Option<&str>, claims: &serde_json::Value) -> anyhow::Result<String> {
        Ok(self.sign_claims(typ, claims)?)
    }

    fn sign_claims(
        &self,
        typ: Option<&str>,
        claims: &serde_json::Value,
    ) -> Result<String, KeyError> {
        if !claims.is_object() {
            return Err(KeyError::ClaimsNotAnObject);
        }
        let mut header = Header::new(self.algorithm);
        header.typ = typ.map(str::to_owned);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// The public half, for verifying tokens this key signed.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// Signs arbitrary header and payload bytes as a compact JWS with `algorithm` (which must
    /// suit this key's family), whatever they contain: tests use it to build tokens no honest
    /// issuer would.
    pub fn sign_compact(
        &self,
        algorithm: Algorithm,
        header: &[u8],
        payload: &[u8],
    ) -> anyhow::Result<String> {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &self.encoding, algorithm)?;
        Ok(format!("{signing_input}.{signature}"))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl PublicJwk {
    fn from_library(jwk: &LibraryJwk, alg: Algorithm, kid: String) -> Result<Self, KeyError> {
        let mut out = Self {
            use_: "sig",
            kty: "RSA",
            kid,
            crv: None,
            alg: if alg == Algorithm::ES256 {
                "ES256"
            } else {
                "RS256"
            },
            x: None,
            y: None,
            n: None,
            e: None,
        };
        match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                out.n = Some(rsa.n.clone());
                out.e = Some(rsa.e.clone());
            }
            AlgorithmParameters::EllipticCurve(ec) => {
                out.kty = "EC";
                out.crv = Some("P-256");
                out.x = Some(ec.x.clone());
                out.y = Some(ec.y.clone());
            }
            _ => return Err(KeyError::UnsupportedAlgorithm(alg)),
        }
        Ok(out)
    }
}

/// A JWKS document `{"keys":[...]}` with each key in go-jose's field order.
pub fn jwk_set(keys: &[&SigningKey]) -> String {
    #[derive(Serialize)]
    struct JwkSet<'a> {
        keys: Vec<&'a PublicJwk>,
    }
    let set = JwkSet {
        keys: keys.iter().map(|key| key.public_jwk_ordered()).collect(),
    };
    serde_json::to_string(&set).expect("a JWK set of strings always serialises")
}

/// base64url-nopad(SHA-256(spki_der)): kube-apiserver's `keyIDFromPublicKey`.
pub fn key_id(spki_der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use jsonwebtoken::{Validation, decode, decode_header};
    use serde_json::json;

    #[test]
    fn kid_is_the_sha256_of_the_spki_as_aws_lc_encodes_it() {
        let key_pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let aws =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key_pair.serialized_der())
                .unwrap();
        let spki: PublicKeyX509Der<'static> = aws.public_key().as_der().unwrap();
        assert_eq!(
            key_id(spki.as_ref()),
            key_id(&key_pair.subject_public_key_info())
        );
    }

    #[test]
    fn rsa_kid_uses_the_spki_with_null_parameters_like_go() {
        let key_pair = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
        let aws = aws_lc_rs::rsa::KeyPair::from_pkcs8(key_pair.serialized_der()).unwrap();
        let spki: PublicKeyX509Der<'static> = aws.public_key().as_der().unwrap();
        assert_eq!(spki.as_ref(), key_pair.subject_public_key_info().as_slice());
    }

    #[test]
    fn kid_is_43_characters_of_unpadded_base64url() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        assert_eq!(key.kid().len(), 43);
        assert!(
            key.kid()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn rsa_jwk_has_the_kubernetes_fields_in_go_jose_order() {
        let key = SigningKey::generate(Algorithm::RS256).unwrap();
        let text = serde_json::to_string(key.public_jwk_ordered()).unwrap();
        let prefix = format!(
            r#"{{"use":"sig","kty":"RSA","kid":"{}","alg":"RS256","n":""#,
            key.kid()
        );
        assert!(text.starts_with(&prefix), "{text}");
        assert!(text.ends_with(r#","e":"AQAB"}"#), "{text}");
    }

    #[test]
    fn a_jwk_set_keeps_each_keys_field_order() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let set = jwk_set(&[&key]);
        assert!(
            set.starts_with(&format!(
                r#"{{"keys":[{{"use":"sig","kty":"EC","kid":"{}","crv":"P-256","alg":"ES256","x":"#,
                key.kid()
            )),
            "{set}"
        );
    }

    #[test]
    fn ec_jwk_names_the_p256_curve() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], key.kid());
        assert_eq!(jwk.as_object().unwrap().len(), 7);
    }

    #[test]
    fn other_algorithms_are_refused() {
        assert!(SigningKey::generate(Algorithm::HS256).is_err());
        assert!(SigningKey::generate(Algorithm::ES384).is_err());
    }

    #[test]
    fn signed_tokens_verify_with_the_published_jwk() {
        for alg in [Algorithm::RS256, Algorithm::ES256] {
            let key = SigningKey::generate(alg).unwrap();
            let token = key
                .sign(None, &json!({"sub": "x", "exp": 4_000_000_000u64}))
                .unwrap();
            let header = decode_header(&token).unwrap();
            assert_eq!(header.kid.as_deref(), Some(key.kid()));
            assert_eq!(header.typ, None);
            let jwk: LibraryJwk = serde_json::from_value(key.public_jwk()).unwrap();
            let mut validation = Validation::new(alg);
            validation.validate_aud = false;
            let data = decode::<serde_json::Value>(
                &token,
                &DecodingKey::from_jwk(&jwk).unwrap(),
                &validation,
            )
            .unwrap();
            assert_eq!(data.claims["sub"], "x");
        }
    }

    #[test]
    fn header_without_typ_matches_kubernetes_tokens_byte_for_byte() {
        let key = SigningKey::generate(Algorithm::RS256).unwrap();
        let token = key.sign(None, &json!({})).unwrap();
        let header = token.split('.').next().unwrap();
        let header = String::from_utf8(URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(
            header,
            format!(r#"{{"alg":"RS256","kid":"{}"}}"#, key.kid())
        );
    }

    #[test]
    fn typ_comes_first_when_requested() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let token = key.sign(Some("JWT"), &json!({})).unwrap();
        let header = URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        assert!(header.starts_with(br#"{"typ":"JWT","alg":"ES256","kid":"#));
    }

    #[test]
    fn claims_that_are_not_an_object_are_refused() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        assert!(key.sign(None, &json!(["a"])).is_err());
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains(key.kid()));
        assert!(!debug.contains("PRIVATE"));
        assert!(!debug.contains("encoding"));
    }
}
