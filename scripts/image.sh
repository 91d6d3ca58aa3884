#!/usr/bin/env bash
# Container images, made on this machine: no registry is needed.
#
#   scripts/image.sh base              make the Debian base image (debootstrap) if missing
#   scripts/image.sh build [BINARY]    the runtime image around a binary built on the host
#                                      (default target/release/popularity); tags
#                                      popularity:<version> and popularity:latest
#   scripts/image.sh infra             the broker and the S3 store as one image on the same base
#   scripts/image.sh size              the runtime image's size in bytes
#
# The base is a minimal Debian made from Debian's packages and imported under
# the name the Dockerfile's runtime stage uses, so the multi-stage Dockerfile
# and the host-binary image (deploy/host.Dockerfile) start from the same base.
# Docker keeps images per machine: every clone here reuses them.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BASE="debian:bookworm-slim"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
TOOLS="${POPULARITY_TOOLS:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/popularity-tools}"

cmd="${1:-}"; shift || true

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

version() { sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1; }

base() {
  if have_image "$BASE"; then return 0; fi
  if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  local root; root="$(mktemp -d)"
  echo "making $BASE with debootstrap (a few minutes)…" >&2
  # The runtime's packages (CA certificates for TLS to brokers and stores,
  # OpenSSL for librdkafka) come with the base: the image build needs no network.
  debootstrap --variant=minbase --include=ca-certificates,libssl3 bookworm "$root" "$MIRROR" >/dev/null
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
  tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$BASE" >/dev/null
  rm -rf "$root"
  echo "made $BASE: $(docker image inspect -f '{{.Size}}' "$BASE") bytes" >&2
}

build() {
  base
  local bin="${1:-$ROOT/target/release/popularity}" ctx v
  [ -x "$bin" ] || { echo "no binary at $bin: build it with cargo build --release" >&2; exit 1; }
  v="$(version)"
  ctx="$(mktemp -d)"
  # Without the debug info (the release profile keeps it for profiling):
  # the symbols stay, so a panic's backtrace still names functions.
  strip --strip-debug -o "$ctx/popularity" "$bin"
  cp "$ROOT/deploy/start.sh" "$ctx/start.sh"
  local old; old="$(docker image inspect -f '{{.Id}}' popularity:latest 2>/dev/null || true)"
  docker build -q -f "$ROOT/deploy/host.Dockerfile" -t "popularity:$v" -t popularity:latest "$ctx" >/dev/null
  rm -rf "$ctx"
  # The image this one replaced, unless a tag or a container still uses it.
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' popularity:latest)" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
  echo "popularity:$v $(docker image inspect -f '{{.Size}}' popularity:latest) bytes" >&2
}

infra() {
  base
  bash "$ROOT/scripts/kafka.sh" install
  bash "$ROOT/scripts/garage.sh" install
  local ctx; ctx="$(mktemp -d)"
  cp -L "$TOOLS/bin/tansu" "$TOOLS/bin/garage" "$ROOT/scripts/garage.sh" "$ctx/"
  docker build -q -f "$ROOT/deploy/infra.Dockerfile" -t popularity-infra:latest "$ctx" >/dev/null
  rm -rf "$ctx"
}

case "$cmd" in
  base) base ;;
  build) build "$@" ;;
  infra) infra ;;
  size) docker image inspect -f '{{.Size}}' popularity:latest ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
