# Multi-stage build: compile with the Rust toolchain, run on a slim image as a non-root user.
# deploy/host.Dockerfile is the same runtime around a binary built on the host.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY jobs ./jobs
RUN cargo build --release --locked --bin popularity

FROM debian:bookworm-slim
RUN dpkg -s ca-certificates libssl3 >/dev/null 2>&1 || (apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/*)
RUN useradd --system --uid 10001 --no-create-home popularity && mkdir /cluster && chown 10001 /cluster
COPY deploy/start.sh /usr/local/bin/popularity-start
COPY --from=build /src/target/release/popularity /usr/local/bin/popularity
USER 10001
EXPOSE 2101 9464
ENTRYPOINT ["popularity"]
CMD ["run"]
