#!/bin/sh
# Starts one process of a popularity cluster. The Kubernetes StatefulSet and
# the Compose deployment both start their processes with this script, so the
# hostfile and the start command have one source.
#
#   REPLICAS  processes in the cluster (-n)
#   WORKERS   worker threads per process (-w)
#   PEER      one process's dataflow address with {i} for its ordinal, e.g.
#             popularity-{i}.popularity.NAMESPACE.svc.cluster.local:2101
#   JOB       the job file (default /etc/popularity/job.toml)
#   HOSTFILE  where the hostfile goes (default /cluster/hosts)
#
# The process index (-p) is the ordinal that ends the hostname (popularity-2
# is process 2), as a StatefulSet names its pods. Further arguments go to
# `popularity run`.
set -eu
config_error() { echo "configuration error: $*" >&2; exit 78; }
[ -n "${REPLICAS:-}" ] || config_error "REPLICAS is not set"
[ -n "${WORKERS:-}" ] || config_error "WORKERS is not set"
[ -n "${PEER:-}" ] || config_error "PEER is not set"
JOB="${JOB:-/etc/popularity/job.toml}"
HOSTFILE="${HOSTFILE:-/cluster/hosts}"
host="${HOSTNAME:-$(hostname)}"
ordinal="${host##*-}"
case "$ordinal" in
  '' | *[!0-9]*) config_error "the hostname $host does not end in -<ordinal>" ;;
esac
case "$REPLICAS" in
  '' | *[!0-9]*) config_error "REPLICAS=$REPLICAS is not a number" ;;
esac
[ "$ordinal" -lt "$REPLICAS" ] || config_error "ordinal $ordinal is not below REPLICAS=$REPLICAS"
case "$PEER" in
  *'{i}'*) ;;
  *) config_error "PEER=$PEER has no {i} for the ordinal" ;;
esac
# One line per process, in ordinal order: the hostfile -h reads. Written
# whole, then renamed, so a restart never reads half a file. A process
# listens at its own line; that line is every address of its host, not
# the one its name resolves to: a pod's name may not resolve yet when it
# starts, and a host that lost and regained its network may have a new
# address that a stale hosts entry does not have.
i=0
: > "$HOSTFILE.tmp"
while [ "$i" -lt "$REPLICAS" ]; do
  if [ "$i" -eq "$ordinal" ]; then
    echo "0.0.0.0:${PEER##*:}" >> "$HOSTFILE.tmp"
  else
    echo "$PEER" | sed "s/{i}/$i/g" >> "$HOSTFILE.tmp"
  fi
  i=$((i + 1))
done
mv "$HOSTFILE.tmp" "$HOSTFILE"
exec popularity run --job "$JOB" -w "$WORKERS" -n "$REPLICAS" -p "$ordinal" -h "$HOSTFILE" "$@"
