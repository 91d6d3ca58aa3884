#!/usr/bin/env bash
# A local S3 store (Garage, single node) for development and tests.
#
#   scripts/garage.sh install                          build and install Garage if missing (slow: ~10 min)
#   scripts/garage.sh start [--port P] [--dir D]       start it; prints the S3 endpoint
#   scripts/garage.sh run [--port P] [--dir D]         start it and wait for it (a container's command)
#   scripts/garage.sh stop [--dir D]                   stop it
#   scripts/garage.sh env [--port P]                   print the AWS_* settings of the test key
#   scripts/garage.sh bucket NAME [--dir D]            create a bucket the test key can use
#
# The store uses a fixed test key, region "garage" and path-style addressing.
# GARAGE_BIND (default 127.0.0.1) is the address the S3 API listens on.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# Tools are installed once per machine (shared by every clone); runs stay in the clone.
TOOLS="${POPULARITY_TOOLS:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/popularity-tools}"
GARAGE="$TOOLS/bin/garage"
GARAGE_VERSION="2.5.0"
KEY_ID="GK0123456789abcdef01234567"
KEY_SECRET="0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

cmd="${1:-}"; shift || true
PORT=3900
DIR="$ROOT/.tools/run/garage"
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

install() {
  if [ -x "$GARAGE" ]; then return 0; fi
  if command -v garage >/dev/null 2>&1; then
    mkdir -p "$TOOLS/bin"; ln -sf "$(command -v garage)" "$GARAGE"; return 0
  fi
  echo "building Garage $GARAGE_VERSION (about 10 minutes on 2 cores)…" >&2
  cargo install --locked --quiet "garage@$GARAGE_VERSION" --root "$TOOLS" >&2
}

g() { "$GARAGE" -c "$DIR/garage.toml" "$@"; }
up() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

start() {
  install
  mkdir -p "$DIR"
  if [ -f "$DIR/garage.pid" ] && kill -0 "$(cat "$DIR/garage.pid")" 2>/dev/null; then
    PORT="$(cat "$DIR/port")"; echo "http://127.0.0.1:$PORT"; return 0
  fi
  local rpc=$((PORT + 1)) admin=$((PORT + 2))
  cat > "$DIR/garage.toml" <<TOML
metadata_dir = "$DIR/meta"
data_dir = "$DIR/data"
db_engine = "sqlite"
# An acknowledged write survives a crash of the store: the tests stop and
# kill it mid-run and compare what was written with what the job was told.
metadata_fsync = true
data_fsync = true
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(printf '%064d' 7)"

[s3_api]
s3_region = "garage"
api_bind_addr = "${GARAGE_BIND:-127.0.0.1}:$PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
TOML
  echo "$PORT" > "$DIR/port"
  nohup "$GARAGE" -c "$DIR/garage.toml" server >>"$DIR/garage.log" 2>&1 &
  echo $! > "$DIR/garage.pid"
  for _ in $(seq 1 100); do up && break; sleep 0.1; done
  up || { echo "Garage did not come up; log:" >&2; tail -20 "$DIR/garage.log" >&2; return 1; }
  if [ ! -f "$DIR/configured" ]; then
    local node=""
    for _ in $(seq 1 50); do
      node="$(g node id -q 2>/dev/null | cut -d@ -f1)" && [ -n "$node" ] && break
      sleep 0.2
    done
    g layout assign -z dc1 -c 1G "$node" >/dev/null
    g layout apply --version 1 >/dev/null
    g key import --yes -n test "$KEY_ID" "$KEY_SECRET" >/dev/null
    touch "$DIR/configured"
  fi
  echo "http://127.0.0.1:$PORT"
}

stop() {
  if [ -f "$DIR/garage.pid" ]; then
    local pid; pid="$(cat "$DIR/garage.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$DIR/garage.pid"
  fi
}

case "$cmd" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  run)
    start
    pid="$(cat "$DIR/garage.pid")"
    trap 'kill "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
    wait "$pid" ;;
  env)
    echo "AWS_ACCESS_KEY_ID=$KEY_ID"
    echo "AWS_SECRET_ACCESS_KEY=$KEY_SECRET"
    echo "AWS_REGION=garage"
    echo "AWS_ENDPOINT_URL=http://127.0.0.1:$PORT" ;;
  bucket)
    name="${ARGS[0]:?bucket name}"
    g bucket create "$name" >/dev/null 2>&1 || true
    g bucket allow --read --write --owner "$name" --key test >/dev/null ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
