//! Verification of one ID token with warm keys: the whole `Verifier::verify` (pre-parse,
//! issuer routing, key lookup, signature, claim checks) next to the bare signature check,
//! which is the floor.

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
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
    }
    group.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);
