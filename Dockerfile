# syntax=docker/dockerfile:1
# tokenvend: `docker build -t tokenvend .` from the repository root.

ARG RUST_VERSION=1.95

# Build: dependencies first (a layer that stays cached while only the sources in src/ and
# crates/*/src change), then the workspace's own crates and the product.
FROM rust:${RUST_VERSION}-bookworm AS build
ENV CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_STRIP=symbols
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# The manifest names the criterion benches, so their files must exist; they are not built here.
COPY benches benches
# Every workspace member's manifest (Cargo.toml's `members = ["crates/*"]`); `tokenvend dev`
# links the stand-in and the local issuer, and test-support must exist for the workspace to load.
COPY crates/serving/Cargo.toml crates/serving/
COPY crates/dev-pki/Cargo.toml crates/dev-pki/
COPY crates/local-issuer/Cargo.toml crates/local-issuer/
COPY crates/kube-standin/Cargo.toml crates/kube-standin/
COPY crates/test-support/Cargo.toml crates/test-support/
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && for crate in crates/*/; do mkdir "${crate}src" && touch "${crate}src/lib.rs"; done \
    && cargo build --release --locked \
    && rm -rf src crates/*/src
# openapi.yaml and config/dev.yaml are embedded in the binary at compile time.
COPY openapi.yaml ./
COPY config config
COPY crates crates
COPY src src
# The copies may be older than the placeholder build: make cargo see them as changed.
RUN touch src/main.rs src/lib.rs crates/*/src/lib.rs \
    && cargo build --release --locked \
    && ./target/release/tokenvend --version

# Run: glibc and libgcc only (distroless cc): no shell, no package manager, non-root.
# Health checks are Kubernetes probes on /healthz and /readyz (deploy/base/deployment.yaml).
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="tokenvend" \
      org.opencontainers.image.description="Exchange OIDC ID tokens for short-lived Kubernetes service-account tokens" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="docs/migrating.md, deploy/README.md" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /src/target/release/tokenvend /usr/local/bin/tokenvend
# distroless's `nonroot` user, numerically, so that runAsNonRoot can verify it.
USER 65532:65532
# 8080: token exchange and health; 9090: metrics (admin).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/tokenvend"]
CMD ["serve", "--config", "/etc/tokenvend/config.yaml"]
