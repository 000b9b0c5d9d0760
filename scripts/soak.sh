#!/usr/bin/env bash
# Soak test: one `zt serve --auth none` (fresh data directory) under an open-loop load
# (`zt bench --rate`) at a fraction of the peak it first measures, for MINUTES minutes. Prints
# one line a minute: decisions/s, latency percentiles (from when each request was due), the
# server's resident memory, and the server's own p99 and p99.9 that minute (handler to answer,
# from its /metrics histogram, interpolated within the bucket as Prometheus's
# histogram_quantile does) and its mean durable write (store stage); then a verdict
# (scripts/soak_verdict.py). Fails (exit 1) when RSS grew by more than 5 MiB after the first
# minute, on any error answer, or when p99 drifted, the generator's or the server's own: the
# second half's minutes rank above the first half's beyond chance (one-sided exact
# Mann-Whitney, p < 0.05) and their median is over 1.5 times the first half's.
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
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
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

# The closed-loop peak, the median of three 10 s runs (one run alone moved by up to 15% here,
# enough to put 80% of it at the open loop's own capacity); the first registers the actor and
# allows the action (--keep).
"$zt" bench --url "$url" --keep --json --connections "$connections" --duration 10 --warmup 2 \
  >"$work/peak-1.json"
for n in 2 3; do
  "$zt" bench --url "$url" --no-setup --json --connections "$connections" --duration 10 \
    --warmup 1 >"$work/peak-$n.json"
done
peak=$(python3 -c 'import json,statistics,sys; print(round(statistics.median(json.load(open(f))["decisions_per_s"] for f in sys.argv[1:])))' "$work"/peak-{1,2,3}.json)
if [ -z "$rate" ]; then
  rate=$(python3 -c "print(max(1, round($peak * $fraction)))")
fi
echo "peak (closed loop, $connections connections, median of 3): $peak decisions/s; soak: $rate offered/s for $minutes min"
echo "minute  decisions/s  p50_ms  p99_ms  p999_ms  max_ms  errors  rss_mib  server_p99  server_p999  store_ms"

curl -fs "$url/metrics" >"$work/metrics-0.txt" || true
for minute in $(seq "$minutes"); do
  "$zt" bench --url "$url" --no-setup --json --rate "$rate" --connections "$connections" \
    --duration 60 --warmup 0 >"$work/minute-$minute.json" || true
  echo "$(rss_kib)" >"$work/rss-$minute"
  curl -fs "$url/metrics" >"$work/metrics-$minute.txt" || true
  python3 - "$minute" "$work" <<'PY'
import json, re, sys
sys.path.insert(0, "scripts")
from soak_verdict import failed_answers
minute, work = int(sys.argv[1]), sys.argv[2]
r = json.load(open(f"{work}/minute-{minute}.json"))
l = r["latency_ms"]
errors = failed_answers(r)
rss_mib = int(open(f"{work}/rss-{minute}").read()) / 1024

def metrics(m):
    try:
        return open(f"{work}/metrics-{m}.txt").read()
    except OSError:
        return ""

def answered(text):
    """The server's own zt_decision_duration_seconds buckets."""
    return {float(le.replace("+Inf", "inf")): int(n) for le, n in
            re.findall(r'zt_decision_duration_seconds_bucket\{le="([^"]+)"\} (\d+)', text)}

def store(text):
    """Sum (s) and count of the store stage's histogram."""
    def field(k):
        m = re.search(rf'zt_audit_commit_stage_duration_seconds_{k}\{{stage="store"\}} (\S+)', text)
        return float(m.group(1)) if m else 0.0
    return field("sum"), field("count")

# This minute's share of the server's histogram, so the generator's and the sockets' part of
# the tail can be told apart from the handler's.
now_text, before_text = metrics(minute), metrics(minute - 1)
now, before = answered(now_text), answered(before_text)
counts = sorted((le, n - before.get(le, 0)) for le, n in now.items())
total = counts[-1][1] if counts else 0
def quantile(q):
    """Linear within the bucket holding rank q * total, as Prometheus's histogram_quantile;
    inf beyond the last bucket, None when the minute has no answers on record."""
    lower, below = 0.0, 0
    for le, n in counts:
        if total and n >= q * total:
            if le == float("inf"):
                return float("inf")
            inside = n - below
            return (lower + (le - lower) * (q * total - below) / inside) * 1000 if inside else le * 1000
        lower, below = le, n
    return None
shown = lambda v: "n/a" if v is None else ">max" if v == float("inf") else f"{v:.2f}"
server_p99 = quantile(0.99)
# The verdict reads "inf" as a minute beyond the histogram and leaves out a minute with none.
open(f"{work}/server-p99-{minute}", "w").write("" if server_p99 is None else str(server_p99))
(s1, c1), (s0, c0) = store(now_text), store(before_text)
store_ms = (s1 - s0) / (c1 - c0) * 1000 if c1 > c0 else float("nan")
print(f'{minute:>6}  {r["decisions_per_s"]:>11.0f}  {l["p50"]:>6.2f}  {l["p99"]:>6.2f}  {l["p999"]:>7.2f}  {l["max"]:>6.1f}  {errors:>6}  {rss_mib:>7.1f}  {shown(server_p99):>10}  {shown(quantile(0.999)):>11}  {store_ms:>8.3f}')
PY
done

python3 scripts/soak_verdict.py "$work" "$minutes"
