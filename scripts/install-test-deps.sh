#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, skipping what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }

if ! have cargo; then
  echo "cargo is required (install Rust with rustup)" >&2
  exit 1
fi
for component in clippy rustfmt; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

# Real kustomize (inside kubectl) renders k8s/ for the manifest checks.
if ! have kubectl; then
  echo "kubectl is required: scripts/k8s_check.py renders k8s/ with kubectl kustomize" >&2
  exit 1
fi

# librdkafka is built with TLS against the system's OpenSSL.
if ! pkg-config --exists openssl 2>/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config >/dev/null
fi

# The Kafka-protocol broker and the S3 store the integration tests start.
bash scripts/kafka.sh install
# A TLS terminator in front of the broker, for the Kafka TLS test.
bash scripts/tls-proxy.sh install
bash scripts/garage.sh install

# DuckDB reads the Parquet snapshots independently of our own reader.
if ! python3 -c "import duckdb" >/dev/null 2>&1; then
  python3 -m pip install --quiet duckdb
fi

# A Kafka client this project did not write, for the connector tests.
if ! python3 -c "import confluent_kafka" >/dev/null 2>&1; then
  python3 -m pip install --quiet confluent-kafka
fi

# Prometheus (and promtool) for the metrics tests.
bash scripts/prometheus.sh install

# Offline validation of the Kubernetes manifests.
if ! python3 -c "import kubernetes_validate, yaml" >/dev/null 2>&1; then
  python3 -m pip install --quiet kubernetes-validate pyyaml
fi

# The container tests: a Docker engine with Compose, and the base image
# (made once per machine with debootstrap; no registry is needed).
if ! have docker || ! have docker-compose; then
  echo "docker and docker-compose are required for the container tests" >&2
  exit 1
fi
bash scripts/image.sh base

# Headless Chromium for the trending page test.
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
