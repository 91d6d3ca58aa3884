#!/usr/bin/env bash
# A TLS terminator (stunnel) in front of a plain TCP service, and a test PKI.
#
#   scripts/tls-proxy.sh install                          install stunnel if missing
#   scripts/tls-proxy.sh pki DIR                          a CA (ca.pem), a server certificate for
#                                                         127.0.0.1/localhost signed by it
#                                                         (server.pem, server.key), and an
#                                                         unrelated CA (other-ca.pem)
#   scripts/tls-proxy.sh start --accept P --connect P --dir DIR
#                                                         TLS on 127.0.0.1:accept → 127.0.0.1:connect,
#                                                         with DIR's server certificate
#   scripts/tls-proxy.sh stop --dir DIR
set -euo pipefail

cmd="${1:-}"; shift || true
ACCEPT=""; CONNECT=""; DIR=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --accept) ACCEPT="$2"; shift 2 ;;
    --connect) CONNECT="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

install() {
  if command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1; then return 0; fi
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get install -y --no-install-recommends stunnel4 >&2
}

stunnel_bin() { command -v stunnel4 || command -v stunnel; }

pki() {
  local d="${ARGS[0]:?directory}"
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=popularity-test-ca \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$d/server.ext"
  openssl x509 -req -days 2 -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
    -CAcreateserial -extfile "$d/server.ext" -out "$d/server.pem" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=some-other-ca \
    -keyout "$d/other-ca.key" -out "$d/other-ca.pem" 2>/dev/null
}

up() { (exec 3<>"/dev/tcp/127.0.0.1/$ACCEPT") 2>/dev/null; }

start() {
  install
  : "${ACCEPT:?--accept}" "${CONNECT:?--connect}" "${DIR:?--dir}"
  cat > "$DIR/stunnel.conf" <<EOF
foreground = no
pid = $DIR/stunnel.pid
output = $DIR/stunnel.log
[service]
accept = 127.0.0.1:$ACCEPT
connect = 127.0.0.1:$CONNECT
cert = $DIR/server.pem
key = $DIR/server.key
EOF
  "$(stunnel_bin)" "$DIR/stunnel.conf"
  for _ in $(seq 1 50); do
    if up; then echo "127.0.0.1:$ACCEPT"; return 0; fi
    sleep 0.1
  done
  echo "TLS proxy did not come up; log:" >&2
  tail -20 "$DIR/stunnel.log" >&2 || true
  return 1
}

stop() {
  : "${DIR:?--dir}"
  if [ -f "$DIR/stunnel.pid" ]; then
    kill "$(cat "$DIR/stunnel.pid")" 2>/dev/null || true
    rm -f "$DIR/stunnel.pid"
  fi
}

case "$cmd" in
  install) install ;;
  pki) pki ;;
  start) start ;;
  stop) stop ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac
