# syntax=docker/dockerfile:1

# Build: dependencies first (cached while only src/ changes), then the crate.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src src
COPY config config
COPY openapi.yaml ./
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# Run: no shell, no package manager, a non-root user.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="tokenvend" \
      org.opencontainers.image.description="Exchange OIDC ID tokens for short-lived Kubernetes service-account tokens" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/tokenvend /usr/local/bin/tokenvend
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/tokenvend"]
CMD ["serve", "--config", "/etc/tokenvend/config.yaml"]
