# syntax=docker/dockerfile:1
# One image for the operator, the agent, the CLI and the userspace WireGuard
# daemon the chart runs beside the agent:
#   docker build -t meshguard:dev .                  (the `runtime` target)
#   docker build --target e2e -t meshguard:e2e .    (plus mesh-probe, for e2e/kind)
# Not built on the development machines (no Docker engine); the GitHub
# Actions workflow .github/workflows/kind.yaml builds and runs it.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

# The userspace WireGuard daemon, in its own stage so that a source change
# does not rebuild it; the version scripts/deps.sh installs.
FROM rust:${RUST_VERSION}-${DEBIAN} AS boringtun
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo install --locked --root /boringtun boringtun-cli@0.7.1

FROM rust:${RUST_VERSION}-${DEBIAN} AS build
# clang and libbpf's headers: node-agent/build.rs compiles the eBPF programs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang libbpf-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p meshguard-operator -p meshguard-cli -p meshguard-agent -p meshguard-e2e --bins \
    && mkdir -p /out \
    && cp target/release/meshguard-operator target/release/meshguard \
          target/release/meshguard-agent target/release/mesh-probe /out/

FROM debian:${DEBIAN}-slim AS runtime
# iptables (nft backend on bookworm, as kube-proxy uses on current kind and
# most distributions), ipset, ip, wg and conntrack (cutting connections a new
# revision denies): what the agent drives.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        iptables ipset iproute2 wireguard-tools conntrack ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/meshguard-operator /out/meshguard /out/meshguard-agent /usr/local/bin/
COPY --from=boringtun /boringtun/bin/boringtun-cli /usr/local/bin/
LABEL org.opencontainers.image.source="https://github.com/meshguard/meshguard" \
      org.opencontainers.image.description="meshguard: WireGuard mesh network policy for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
# The operator runs as 65532 (the chart sets it); the agent needs root with
# NET_ADMIN in the host's network namespace.
CMD ["meshguard-operator", "--help"]

# The e2e image: the runtime plus the probe the connectivity checks run on
# each node (e2e/kind). Never the one to deploy.
FROM runtime AS e2e
RUN apt-get update \
    && apt-get install -y --no-install-recommends iputils-ping \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/mesh-probe /usr/local/bin/
