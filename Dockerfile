# Switchboard in a container: a multi-stage build, a non-root user, the data
# in a volume, a health check on /healthz. (Not built in this project's CI:
# no Docker engine runs there.)
#
#   docker build -t switchboard .
#   docker run -p 8080:8080 -p 7400:7400 -v switchboard-data:/data switchboard
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin switchboard

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin switchboard \
 && install -d -o switchboard -g switchboard -m 0700 /data
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
USER switchboard
VOLUME ["/data"]
ENV SWITCHBOARD_DATA__DIR=/data \
    SWITCHBOARD_HTTP__LISTEN=0.0.0.0:8080 \
    SWITCHBOARD_MIAP__LISTEN=0.0.0.0:7400 \
    SWITCHBOARD_LOG__FORMAT=json
EXPOSE 8080 7400
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["serve"]
