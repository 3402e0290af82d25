//! Verification of one ID token with warm keys: the whole `Verifier::verify` (pre-parse,
//! issuer routing, key lookup, signature, claim checks) next to the bare signature check
//! through jsonwebtoken, and the floor: aws-lc verifying with a key parsed once.

mod support;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use dev_pki::keys::SigningKey;
use jsonwebtoken::Algorithm;

use support::{Keys, unix_now};

fn verification(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let keys = runtime.block_on(Keys::warm());
    let mut group = c.benchmark_group("verify");
    for (name, algorithm) in [("rs256", Algorithm::RS256), ("es256", Algorithm::ES256)] {
        let token = keys.token(algorithm);
        let now = unix_now();
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime
                    .block_on(keys.verifier.verify(&token, now))
                    .expect("token verifies")
            });
        });
        let signing_key = match algorithm {
            Algorithm::RS256 => &keys.rsa,
            _ => &keys.ec,
        };
        let (message, signature) = token.rsplit_once('.').expect("three segments");
        group.bench_function(format!("{name}_signature_only"), |b| {
            b.iter(|| {
                jsonwebtoken::crypto::verify(
                    signature,
                    message.as_bytes(),
                    signing_key.decoding_key(),
                    algorithm,
                )
                .expect("signature verifies")
            });
        });
        let parsed = parsed_key(signing_key);
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        group.bench_function(format!("{name}_signature_parsed_key"), |b| {
            b.iter(|| {
                parsed
                    .verify_sig(message.as_bytes(), &signature)
                    .expect("signature verifies");
            });
        });
    }
    group.finish();
}

/// The public half of `key`, parsed by aws-lc once.
fn parsed_key(key: &SigningKey) -> ParsedPublicKey {
    let jwk = key.public_jwk();
    let part = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[name].as_str().expect("JWK member"))
            .expect("base64url")
    };
    match key.algorithm() {
        Algorithm::RS256 => RsaPublicKeyComponents {
            n: part("n"),
            e: part("e"),
        }
        .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
        .expect("RSA key"),
        _ => {
            let mut point = vec![4];
            point.extend(part("x"));
            point.extend(part("y"));
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).expect("EC key")
        }
    }
}

criterion_group!(benches, verification);
criterion_main!(benches);
