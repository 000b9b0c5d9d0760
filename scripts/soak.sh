#!/usr/bin/env bash
# Soak test: one `zt serve --auth none` (fresh data directory) under an open-loop load
# (`zt bench --rate`) at a fraction of the peak it first measures, for MINUTES minutes. Prints
# one line a minute: decisions/s, latency percentiles (from when each request was due), the
# server's resident memory, and the server's own p99 and p99.9 that minute (handler to answer,
# from its /metrics histogram: the upper bound of the bucket holding them); then a verdict. Fails (exit 1) when RSS grew by more than 5 MiB
# after the first minute, when p99 drifted (the second half's median p99 over 1.5 times the
# first half's), or on any error answer.
#
# Usage: scripts/soak.sh [--minutes N] [--fraction F | --rate R] [--connections C] [--zt PATH]
#   defaults: 10 minutes, 0.8 of the peak, 32 connections, target/release/zt
# Needs a release build (`cargo build --release -p zt-cli`) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10
fraction=0.8
rate=
connections=32
zt=target/release/zt
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --fraction) fraction=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --zt) zt=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -x "$zt" ] || { echo "no zt binary at $zt (build with: cargo build --release -p zt-cli)" >&2; exit 2; }

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
ZT_LOG=warn "$zt" serve --auth none --listen "127.0.0.1:$port" --data-dir "$work/data" \
  2>"$work/serve.log" &
server=$!
for _ in $(seq 100); do curl -fs "$url/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$url/health" >/dev/null || { echo "the server did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$server/status"; }

# Registers the actor and allows the action once (--keep), measuring the closed-loop peak.
"$zt" bench --url "$url" --keep --json --connections "$connections" --duration 10 --warmup 2 \
  >"$work/peak.json"
peak=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["decisions_per_s"]))' "$work/peak.json")
if [ -z "$rate" ]; then
  rate=$(python3 -c "print(max(1, round($peak * $fraction)))")
fi
echo "peak (closed loop, $connections connections): $peak decisions/s; soak: $rate offered/s for $minutes min"
echo "minute  decisions/s  p50_ms  p99_ms  p999_ms  max_ms  errors  rss_mib  server_p99  server_p999"

curl -fs "$url/metrics" >"$work/metrics-0.txt" || true
for minute in $(seq "$minutes"); do
  "$zt" bench --url "$url" --no-setup --json --rate "$rate" --connections "$connections" \
    --duration 60 --warmup 0 >"$work/minute-$minute.json" || true
  echo "$(rss_kib)" >"$work/rss-$minute"
  curl -fs "$url/metrics" >"$work/metrics-$minute.txt" || true
  python3 - "$minute" "$work" <<'PY'
import json, re, sys
minute, work = int(sys.argv[1]), sys.argv[2]
r = json.load(open(f"{work}/minute-{minute}.json"))
l = r["latency_ms"]
errors = r["errors"] + r["other_status"] + r["rate_limited"] + r["unauthenticated"]
rss_mib = int(open(f"{work}/rss-{minute}").read()) / 1024

def answered(m):
    """The server's own zt_decision_duration_seconds buckets after minute m."""
    try:
        text = open(f"{work}/metrics-{m}.txt").read()
    except OSError:
        return {}
    return {float(le.replace("+Inf", "inf")): int(n) for le, n in
            re.findall(r'zt_decision_duration_seconds_bucket\{le="([^"]+)"\} (\d+)', text)}

# This minute's share of the server's histogram: the bucket holding its p99 and p99.9, as
# an upper bound, so the generator's and the sockets' part of the tail can be told apart.
now, before = answered(minute), answered(minute - 1)
counts = sorted((le, n - before.get(le, 0)) for le, n in now.items())
total = counts[-1][1] if counts else 0
def bound(q):
    for le, n in counts:
        if total and n >= q * total:
            return f"{le * 1000:.1f}" if le != float("inf") else "inf"
    return "?"
print(f'{minute:>6}  {r["decisions_per_s"]:>11.0f}  {l["p50"]:>6.2f}  {l["p99"]:>6.2f}  {l["p999"]:>7.2f}  {l["max"]:>6.1f}  {errors:>6}  {rss_mib:>7.1f}  {"<=" + bound(0.99):>11}  {"<=" + bound(0.999):>12}')
PY
done

python3 - "$minutes" "$work" <<'PY'
import json, statistics, sys
minutes, work = int(sys.argv[1]), sys.argv[2]
runs = [json.load(open(f"{work}/minute-{m}.json")) for m in range(1, minutes + 1)]
rss = [int(open(f"{work}/rss-{m}").read()) / 1024 for m in range(1, minutes + 1)]
p99 = [r["latency_ms"]["p99"] for r in runs]
errors = sum(r["errors"] + r["other_status"] + r["rate_limited"] + r["unauthenticated"] for r in runs)
growth = max(rss) - rss[0]
half = max(1, minutes // 2)
first, second = statistics.median(p99[:half]), statistics.median(p99[half:] or p99[-1:])
drift = second / first if first > 0 else float("inf")
ok = growth <= 5.0 and drift <= 1.5 and errors == 0
print(f"rss after minute 1: {rss[0]:.1f} MiB, largest growth since: {growth:+.1f} MiB (limit +5.0)")
print(f"p99 median, first half {first:.2f} ms, second half {second:.2f} ms: ratio {drift:.2f} (limit 1.50)")
print(f"errors: {errors}")
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
