#!/usr/bin/env bash
# A local cluster: N processes x W workers on this host, one hostfile.
#
#   scripts/cluster.sh start --job FILE [--processes N] [--workers W] [--dir D] [--port P] [--metrics-port M]
#   scripts/cluster.sh status [--dir D]     which processes run, and their health endpoints
#   scripts/cluster.sh stop [--dir D]       SIGTERM (final checkpoint), then wait
#   scripts/cluster.sh wait [--dir D] [--timeout S]
#                                           wait for every process to exit; non-zero if any
#                                           failed (the others are then stopped) or S passed
#
# Process i listens on P+i for the dataflow and M+i for metrics, logs to
# D/process-i.log. POPULARITY_BIN picks the binary (default target/release/popularity).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${POPULARITY_BIN:-$ROOT/target/release/popularity}"
cmd="${1:-}"; shift || true
JOB=""; N=2; W=2; DIR="$ROOT/.tools/run/cluster"; PORT=2101; MPORT=9464; TIMEOUT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --job) JOB="$2"; shift 2 ;;
    --processes) N="$2"; shift 2 ;;
    --workers) W="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --metrics-port) MPORT="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
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
    rm -f "$DIR/process-$i.rc"
    # The process runs in the background; its exit status lands in process-i.rc.
    (
      trap '' HUP
      POPULARITY__METRICS__LISTEN="127.0.0.1:$MPORT" "$BIN" run --job "$JOB" \
        -w "$W" -n "$N" -p "$i" -h "$DIR/hosts" >"$DIR/process-$i.log" 2>&1 &
      echo "$! $i $((MPORT + i))" >> "$DIR/pids"
      wait $! && rc=0 || rc=$?
      echo "$rc" > "$DIR/process-$i.rc"
    ) </dev/null >/dev/null 2>&1 &
  done
  # Every pid is written before start returns.
  for _ in $(seq 1 50); do [ "$(wc -l < "$DIR/pids")" -ge "$N" ] && break; sleep 0.1; done
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

# Polls every process: a failure stops the others (they would wait for the
# failed peer forever), and so does the timeout.
wait_all() {
  [ -f "$DIR/pids" ] || { echo "no cluster in $DIR" >&2; return 1; }
  local failed=0 began=$SECONDS running pid i rc
  while :; do
    running=0
    while read -r pid i _; do
      if kill -0 "$pid" 2>/dev/null; then running=1; continue; fi
      rc="$(cat "$DIR/process-$i.rc" 2>/dev/null || echo 0)"
      if [ "$rc" != 0 ] && [ ! -f "$DIR/process-$i.reported" ]; then
        echo "process $i exited with status $rc:" >&2; tail -5 "$DIR/process-$i.log" >&2
        : > "$DIR/process-$i.reported"; failed=1
      fi
    done < "$DIR/pids"
    [ "$running" = 0 ] && break
    if [ "$failed" = 1 ] || { [ "$TIMEOUT" != 0 ] && [ $((SECONDS - began)) -ge "$TIMEOUT" ]; }; then
      [ "$failed" = 1 ] || { echo "timed out after ${TIMEOUT}s; stopping the cluster" >&2; failed=1; }
      while read -r pid i _; do
        if kill -0 "$pid" 2>/dev/null; then
          echo "process $i still running; its log ends:" >&2; tail -5 "$DIR/process-$i.log" >&2
          kill -KILL "$pid" 2>/dev/null || true
        fi
      done < "$DIR/pids"
    fi
    sleep 0.2
  done
  rm -f "$DIR"/process-*.reported
  return $failed
}

stop() {
  [ -f "$DIR/pids" ] || return 0
  while read -r pid _ _; do kill -TERM "$pid" 2>/dev/null || true; done < "$DIR/pids"
  wait_all
}

case "$cmd" in
  start) start ;;
  status) status ;;
  stop) stop ;;
  wait) wait_all ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
