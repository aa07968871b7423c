# syntax=docker/dockerfile:1
#
# Customer Knowledge Service image: a release build of the one binary on a
# distroless base (glibc, CA certificates, tzdata; no shell, no package
# manager), running as the numeric non-root user 65532.
#
#   docker build -t customer-knowledge:0.1.0 .
#   docker run --rm -p 50051:50051 -e DATABASE_URL=... customer-knowledge:0.1.0
#
# Runtime configuration is environment only (CK__SECTION__KEY, DATABASE_URL,
# OTEL_*); see DESIGN.md §7 and helm/customer-knowledge/values.yaml.

FROM rust:1-bookworm AS build
WORKDIR /src
# Only what the build reads: manifests, build script, contract (and the
# vendored Google API definitions it imports), migrations
# (embedded by sqlx::migrate!) and the sources.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY third_party ./third_party
COPY migrations ./migrations
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin customer-knowledge \
 && install -D -m 0755 target/release/customer-knowledge /out/customer-knowledge

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/customer-knowledge /customer-knowledge
USER 65532:65532
# 50051: gRPC (customer API, grpc.health.v1, reflection)
#  9464: admin HTTP (/metrics, /livez, /readyz)
EXPOSE 50051 9464
ENTRYPOINT ["/customer-knowledge"]
CMD ["serve"]
