#!/usr/bin/env bash
# Throughput of 1, 2 and 3 `zt serve` replicas sharing one PostgreSQL audit chain, with the
# same total load (CONNECTIONS, split evenly) driven by one `zt bench` per replica, all on
# this machine. Prints one line per replica count: decisions/s summed over the replicas.
# Usage: scripts/bench-replicas.sh [DURATION_S] [CONNECTIONS]   (needs a release build)
#   ZT_BENCH_REQUEST_IDS=true: every request carries a request_id of its own (zt bench
#   --request-ids), so each batch also spends its ids in the shared store.
#   ZT_BENCH_SERVE=PATH: serve with that zt binary (an A/B comparison of builds), load with
#   target/release/zt.
set -euo pipefail
cd "$(dirname "$0")/.."
zt=target/release/zt
serve=${ZT_BENCH_SERVE:-$zt}
duration=${1:-10}
connections=${2:-32}
pg=${ZT_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
work=$(mktemp -d)
pids=()
cleanup() { kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

for replicas in 1 2 3; do
  schema="zt_bench_$$_$replicas"
  store="$pg?schema=$schema"
  urls=()
  for i in $(seq "$replicas"); do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    ZT_LOG=warn "$serve" serve --auth none --listen "127.0.0.1:$port" \
      --data-dir "$work/$replicas-$i" --store "$store" 2>"$work/serve-$replicas-$i.log" &
    pids+=($!)
    urls+=("http://127.0.0.1:$port")
    for _ in $(seq 100); do curl -fs "${urls[-1]}/health" >/dev/null 2>&1 && break; sleep 0.1; done
  done
  outs=()
  benches=()
  # One setup for all (the replicas share one registry and policy; two setups at once would
  # register the agent twice): a short run that keeps what it created, then no setup.
  "$zt" bench --json --keep --url "${urls[0]}" --duration 1 --connections 1 >/dev/null
  for i in $(seq "$replicas"); do
    out="$work/bench-$replicas-$i.json"
    outs+=("$out")
    "$zt" bench --json --no-setup --url "${urls[$((i - 1))]}" --duration "$duration" \
      --connections $((connections / replicas)) >"$out" &
    benches+=($!)
  done
  wait "${benches[@]}"
  python3 - "$replicas" "${outs[@]}" <<'PY'
import json, sys
n, files = sys.argv[1], sys.argv[2:]
runs = [json.load(open(f)) for f in files]
total = sum(r["decisions_per_s"] for r in runs)
errors = sum(r["errors"] + r["other_status"] for r in runs)
p99 = max(r["latency_ms"]["p99"] for r in runs)
print(f"replicas={n} decisions_per_s={total:.0f} worst_p99_ms={p99:.2f} errors={errors} per_replica={[round(r['decisions_per_s']) for r in runs]}")
PY
  kill -TERM "${pids[@]}"
  wait "${pids[@]}" || true
  pids=()
  PGOPTIONS='-c client_min_messages=warning' psql -q "$pg" -c "DROP SCHEMA $schema CASCADE"
done
