#!/usr/bin/env bash
# A local Prometheus for development and tests.
#
#   scripts/prometheus.sh install                                   install it if missing (Debian package)
#   scripts/prometheus.sh start --port P --dir D --target HOST:PORT [--rules FILE]
#   scripts/prometheus.sh stop --dir D
#   scripts/prometheus.sh check-rules FILE                          validate alert/recording rules
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cmd="${1:-}"; shift || true
PORT=9090
DIR="$ROOT/.tools/run/prometheus"
TARGET="127.0.0.1:9464"
RULES=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    --target) TARGET="$2"; shift 2 ;;
    --rules) RULES="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

install() {
  if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then return 0; fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >&2
  # The package starts a system service; this script runs its own instances.
  (systemctl stop prometheus prometheus-node-exporter || service prometheus stop || true) >/dev/null 2>&1
}

# True once Prometheus answers 200 on /-/ready (it listens before its storage is ready).
ready() {
  exec 3<>"/dev/tcp/127.0.0.1/$PORT" 2>/dev/null || return 1
  printf 'GET /-/ready HTTP/1.0\r\n\r\n' >&3
  local status; read -r _ status _ <&3 || true
  exec 3<&-
  [ "$status" = "200" ]
}

start() {
  install
  mkdir -p "$DIR"
  {
    echo "global:"
    echo "  scrape_interval: 1s"
    echo "  evaluation_interval: 1s"
    if [ -n "$RULES" ]; then echo "rule_files: [\"$RULES\"]"; fi
    echo "scrape_configs:"
    echo "  - job_name: popularity"
    echo "    static_configs:"
    echo "      - targets: [\"$TARGET\"]"
  } > "$DIR/prometheus.yml"
  nohup prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
    --web.listen-address="127.0.0.1:$PORT" >>"$DIR/prometheus.log" 2>&1 &
  echo $! > "$DIR/prometheus.pid"
  for _ in $(seq 1 100); do
    if ready; then echo "http://127.0.0.1:$PORT"; return 0; fi
    sleep 0.1
  done
  echo "Prometheus did not come up; log:" >&2; tail -20 "$DIR/prometheus.log" >&2; return 1
}

stop() {
  if [ -f "$DIR/prometheus.pid" ]; then
    kill "$(cat "$DIR/prometheus.pid")" 2>/dev/null || true
    rm -f "$DIR/prometheus.pid"
  fi
}

case "$cmd" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  check-rules) install; promtool check rules "${ARGS[@]}" ;;
  *) sed -n '2,8p' "$0"; exit 2 ;;
esac
