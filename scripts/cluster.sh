#!/usr/bin/env bash
# A local cluster: N processes x W workers on this host, one hostfile.
#
#   scripts/cluster.sh start --job FILE [--processes N] [--workers W] [--dir D] [--port P] [--metrics-port M]
#   scripts/cluster.sh status [--dir D]     which processes run, and their health endpoints
#   scripts/cluster.sh stop [--dir D]       SIGTERM (final checkpoint), then wait
#   scripts/cluster.sh wait [--dir D]       wait for every process to exit; non-zero if any failed
#
# Process i listens on P+i for the dataflow and M+i for metrics, logs to
# D/process-i.log. POPULARITY_BIN picks the binary (default target/release/popularity).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${POPULARITY_BIN:-$ROOT/target/release/popularity}"
cmd="${1:-}"; shift || true
JOB=""; N=2; W=2; DIR="$ROOT/.tools/run/cluster"; PORT=2101; MPORT=9464
while [ $# -gt 0 ]; do
  case "$1" in
    --job) JOB="$2"; shift 2 ;;
    --processes) N="$2"; shift 2 ;;
    --workers) W="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --metrics-port) MPORT="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

start() {
  [ -n "$JOB" ] || { echo "--job is required" >&2; exit 2; }
  [ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release)" >&2; exit 1; }
  mkdir -p "$DIR"
  : > "$DIR/hosts"
  for i in $(seq 0 $((N - 1))); do echo "127.0.0.1:$((PORT + i))" >> "$DIR/hosts"; done
  : > "$DIR/pids"
  for i in $(seq 0 $((N - 1))); do
    POPULARITY__METRICS__LISTEN="127.0.0.1:$MPORT" nohup "$BIN" run --job "$JOB" \
      -w "$W" -n "$N" -p "$i" -h "$DIR/hosts" >"$DIR/process-$i.log" 2>&1 &
    echo "$! $i $((MPORT + i))" >> "$DIR/pids"
  done
  echo "started $N processes x $W workers; logs in $DIR"
}

status() {
  [ -f "$DIR/pids" ] || { echo "no cluster in $DIR"; exit 1; }
  local down=0
  while read -r pid i mport; do
    if kill -0 "$pid" 2>/dev/null; then
      if (exec 3<>"/dev/tcp/127.0.0.1/$mport") 2>/dev/null; then h="metrics on :$mport"; else h="metrics not up yet"; fi
      echo "process $i (pid $pid): running, $h"
    else
      echo "process $i (pid $pid): exited"; down=1
    fi
  done < "$DIR/pids"
  return $down
}

wait_all() {
  local failed=0
  while read -r pid i _; do
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    if grep -q "^error:" "$DIR/process-$i.log" 2>/dev/null; then echo "process $i failed:" >&2; tail -5 "$DIR/process-$i.log" >&2; failed=1; fi
  done < "$DIR/pids"
  return $failed
}

stop() {
  [ -f "$DIR/pids" ] || return 0
  while read -r pid _ _; do kill -TERM "$pid" 2>/dev/null || true; done < "$DIR/pids"
  wait_all || true
}

case "$cmd" in
  start) start ;;
  status) status ;;
  stop) stop ;;
  wait) wait_all ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
