#!/usr/bin/env bash
# Latency under an independent load generator: starts `zt serve` on a fresh data directory,
# registers `bench-agent` and allows `bench.read`, then drives `POST /actions` with `wrk`
# (scripts/wrk-actions.lua) or `zt bench`, and prints one JSON line per run
# (requests/s, p50/p90/p99/p99.9/max in ms, errors). Needs a release build, wrk and python3.
#
# Usage: scripts/bench-tail.sh [--zt PATH] [--generator wrk|zt|zt-rate=R] [--connections C]
#          [--duration S] [--runs N] [--auth none|credentials] [--policies N]
#          [-- EXTRA zt serve ARGS]
#   --policies N: the server loads a Cedar file of N policies (N-1 unrelated ones and the
#   rule that allows bench.read) with --policy instead of an API-made policy.
set -euo pipefail
cd "$(dirname "$0")/.."

zt=target/release/zt
generator=wrk
connections=32
duration=10
runs=1
auth=none
policies=
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --zt) zt=$2; shift 2 ;;
    --generator) generator=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --auth) auth=$2; shift 2 ;;
    --policies) policies=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -x "$zt" ] || { echo "no zt binary at $zt" >&2; exit 2; }
zt=$(realpath "$zt")
lua=$(realpath scripts/wrk-actions.lua)

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

for run in $(seq "$runs"); do
  data="$work/data-$run"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  url="http://127.0.0.1:$port"
  args=(serve --listen "127.0.0.1:$port" --data-dir "$data" --auth "$auth")
  if [ "$auth" = credentials ]; then args+=(--single-admin --rate-limit none); fi
  if [ -n "$policies" ]; then
    python3 - "$policies" "$work/policy.cedar" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(n - 1):
        f.write(f'@id("svc{i}") @reason("svc{i} in staging")\n'
                f'permit(principal, action in Action::"svc{i}.*", resource)\n'
                f'when {{ context has environment && context.environment == "staging" }};\n')
    f.write('@id("bench") @reason("allowed for benchmarking")\n'
            'permit(principal, action == Action::"bench.read", resource);\n')
PY
    args+=(--policy "$work/policy.cedar")
  fi
  ZT_LOG=warn "$zt" "${args[@]}" "${extra[@]}" 2>"$work/serve-$run.log" &
  server=$!
  for _ in $(seq 100); do curl -fs "$url/health" >/dev/null 2>&1 && break; sleep 0.1; done
  admin=()
  if [ "$auth" = credentials ]; then admin=(-H "Authorization: Bearer $(awk '{print $NF; exit}' "$data/admin-token")"); fi
  # Register the agent (its token under credentials); allow the action unless a file owns it.
  token=$(curl -fs "${admin[@]}" -H 'Content-Type: application/json' -d '{"actor":"bench-agent"}' \
    "$url/agents" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("token") or "")')
  if [ -z "$policies" ]; then
    curl -fs "${admin[@]}" -H 'Content-Type: application/json' \
      -d '{"action":"bench.read","reason":"allowed for benchmarking"}' "$url/policies/allow" >/dev/null
  fi
  case "$generator" in
    wrk)
      # A short warm-up, as zt bench does by default, then the measured run.
      ZT_AGENT_TOKEN=$token wrk -t1 -c"$connections" -d2s -s "$lua" "$url" >/dev/null
      ZT_AGENT_TOKEN=$token wrk -t1 -c"$connections" -d"${duration}s" -s "$lua" "$url" | tail -1 ;;
    zt|zt-rate=*)
      rate=()
      case "$generator" in zt-rate=*) rate=(--rate "${generator#zt-rate=}") ;; esac
      "$zt" bench --url "$url" --no-setup --agent-token "$token" --json --connections "$connections" \
        --duration "$duration" "${rate[@]}" | python3 -c '
import json,sys
r=json.load(sys.stdin); l=r["latency_ms"]
out={"requests": r["decisions"], "per_s": r["decisions_per_s"], "errors": r["errors"] + r["other_status"] + r["rate_limited"] + r["unauthenticated"], "latency_ms": l}
if r.get("uncorrected_latency_ms"): out["uncorrected_latency_ms"]=r["uncorrected_latency_ms"]
print(json.dumps(out))' ;;
    *) echo "unknown generator: $generator" >&2; exit 2 ;;
  esac
  kill -TERM "$server"; wait "$server" 2>/dev/null || true; server=
done
