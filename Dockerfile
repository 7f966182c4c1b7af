# Multi-stage build: compile the release binary, then ship it on a slim runtime image.
# The runtime connects to an external PostgreSQL with pgvector through DATABASE_URL (see
# docker-compose.yml); the embedded cluster is for local development.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY sql ./sql
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 onebase
COPY --from=build /src/target/release/onebase /usr/local/bin/onebase
USER onebase
ENV ONEBASE_BIND=0.0.0.0:8080 \
    ONEBASE_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/onebase"]
CMD ["serve"]
