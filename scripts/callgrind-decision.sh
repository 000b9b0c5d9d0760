#!/usr/bin/env bash
# Instructions per decision, by thread: runs `zt serve --auth none` under callgrind
# (--separate-threads), registers bench-agent and allows bench.read, warms up with 500
# decisions, zeroes the counters, drives COUNT decisions with wrk (-c32,
# scripts/wrk-actions-count.lua), dumps, and prints each thread's instructions per decision
# (the decisions counted from the chain's seq before and after). Instruction counts do not
# depend on the machine's load, so two binaries compare on a busy machine.
#
# Usage: scripts/callgrind-decision.sh [ZT_BINARY] [OUT_DIR] [COUNT]
#   (defaults: target/release/zt, a temporary directory, 10000). Needs valgrind and wrk.
#   Per-function costs: callgrind_annotate --inclusive=yes OUT_DIR/cg.out.1-NN
set -euo pipefail
cd "$(dirname "$0")/.."
zt=$(realpath "${1:-target/release/zt}")
out=${2:-$(mktemp -d)}
count=${3:-10000}
lua=$(realpath scripts/wrk-actions-count.lua)
mkdir -p "$out"
rm -f "$out"/cg.out*
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$data"
}
trap cleanup EXIT
ZT_LOG=warn valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/cg.out" \
  "$zt" serve --listen "127.0.0.1:$port" --data-dir "$data/d" --auth none 2>"$out/serve.log" &
pid=$!
for _ in $(seq 600); do curl -fs "$url/health" >/dev/null 2>&1 && break; sleep 0.2; done
json=(-H 'Content-Type: application/json')
curl -fs "${json[@]}" -d '{"actor":"bench-agent"}' "$url/agents" >/dev/null
curl -fs "${json[@]}" -d '{"action":"bench.read","reason":"allowed for benchmarking"}' \
  "$url/policies/allow" >/dev/null
seq_now() {
  curl -fs "${json[@]}" -d '{"actor":"bench-agent","action":"bench.read","resource":"probe"}' \
    "$url/actions" | python3 -c 'import json,sys; print(json.load(sys.stdin)["evidence"]["seq"])'
}
drive() {
  rm -f "$out/done"
  ZT_BENCH_DONE="$out/done" ZT_BENCH_COUNT=$1 wrk -t1 -c32 -d3600s -s "$lua" "$url" >"$out/wrk.log" &
  local w=$!
  while [ ! -e "$out/done" ]; do sleep 0.2; done
  kill -INT "$w"; wait "$w" || true
}
drive 500
sleep 2
before=$(seq_now)
callgrind_control -z "$pid" >/dev/null
drive "$count"
sleep 2
callgrind_control -d "$pid" >/dev/null
after=$(seq_now)
decisions=$((after - before - 1))
echo "decisions $decisions" >"$out/count"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
echo "decisions: $decisions (callgrind files in $out)"
for f in "$out"/cg.out.1-*; do
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
  calls=$(callgrind_annotate --inclusive=yes --auto=no --threshold=100 "$f" 2>/dev/null || true)
  case "$calls" in
    *"hyper::proto::h1::dispatch"*) role="tokio worker" ;;
    *"AuditStore>::append"*) role="writer" ;;
    *seal_batch*) role="sealer" ;;
    *checkpoints::*) role="checkpoints" ;;
    *) role="other" ;;
  esac
  printf '%-14s %-10s %9d instructions/decision\n' "$role" "$(basename "$f")" $((total / decisions))
done
