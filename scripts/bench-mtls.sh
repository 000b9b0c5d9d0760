#!/usr/bin/env bash
# Server CPU per mTLS handshake: starts `zt serve --auth credentials` over HTTPS with a
# development CA (`zt dev-certs`), makes full TLS handshakes with a client certificate for
# 10 s with `openssl s_time -new`, and prints the handshakes made and the server's CPU time
# (user + system, from /proc) per handshake. Needs a release build and openssl.
#
# Usage: scripts/bench-mtls.sh [ZT_BIN] [SECONDS]
set -euo pipefail
zt=$(realpath "${1:-target/release/zt}")
seconds=${2:-10}
work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
"$zt" dev-certs --out-dir "$work/certs" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
c=$work/certs
ZT_LOG=warn "$zt" serve --auth credentials --listen "127.0.0.1:$port" --data-dir "$work/data" \
  --tls-cert "$c/server.pem" --tls-key "$c/server.key" --client-ca "$c/ca.pem" 2>/dev/null &
server=$!
for _ in $(seq 100); do curl -fs --cacert "$c/ca.pem" "https://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
ticks=$(getconf CLK_TCK)
before=$(cpu)
made=$(openssl s_time -connect "127.0.0.1:$port" -cert "$c/agent-dev.pem" -key "$c/agent-dev.key" \
  -CAfile "$c/ca.pem" -new -time "$seconds" 2>/dev/null | awk '/connections in/ {print $1; exit}')
after=$(cpu)
python3 -c "import json,sys; n,t,hz=int(sys.argv[1]),int(sys.argv[2]),int(sys.argv[3]); print(json.dumps({'handshakes': n, 'seconds': $seconds, 'server_cpu_us_per_handshake': round(t*1e6/hz/n)}))" \
  "$made" "$((after - before))" "$ticks"
