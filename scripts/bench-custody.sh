#!/usr/bin/env bash
# Decisions/s and p99 at 32 connections with each audit signer (docs/SIGNING.md): the local
# key, AWS KMS per-record and session keys (a local KMS: moto, patched for DIGEST, on
# loopback), PKCS#11 per-record and session keys (a SoftHSM2 token made here).
# Needs: a release `zt`, the .venv with moto (.ci/run), softhsm2 and opensc (pkcs11-tool).
# Usage: [ZT_BENCH_ONLY='NAME ...'] [ZT_KMS_SIGN_RATE=R] scripts/bench-custody.sh [DURATION_SECONDS] [ROUNDS]
#   ZT_KMS_SIGN_RATE=R: the local KMS throttles `Sign` calls past R a second, as AWS KMS past an
#   account's request quota does.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
rounds=${2:-3}
zt=${ZT_BIN:-target/release/zt}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# A local KMS with one key.
.venv/bin/python crates/zt-test-support/python/moto_kms.py --sign-rate "${ZT_KMS_SIGN_RATE:-0}" \
  >"$work/moto.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/moto.out" ] && break; sleep 0.2; done
read -r _ moto_port arn <"$work/moto.out"
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true

# A SoftHSM2 token with one P-256 key.
module=/usr/lib/softhsm/libsofthsm2.so
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\n' "$work/tokens" >"$work/softhsm2.conf"
export SOFTHSM2_CONF="$work/softhsm2.conf" ZT_PKCS11_PIN=5678
softhsm2-util --init-token --free --label zt-bench --so-pin 1234 --pin 5678 >/dev/null
pkcs11-tool --module "$module" --token-label zt-bench --login --pin 5678 \
  --keypairgen --key-type EC:prime256v1 --label audit >/dev/null
pkcs11="pkcs11:module=$module;token=zt-bench;key=audit"

run() { # NAME SIGNER [EXTRA...]
  local name=$1 signer=$2; shift 2
  # ZT_BENCH_ONLY="local pkcs11-session" runs only those configurations.
  if [ -n "${ZT_BENCH_ONLY:-}" ] && [[ " $ZT_BENCH_ONLY " != *" $name "* ]]; then return; fi
  local dir="$work/data-$name" port
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$zt" serve --single-admin --rate-limit 1000000/s --listen "127.0.0.1:$port" \
    --data-dir "$dir" --signer "$signer" "$@" 2>"$work/serve-$name.log" &
  local server=$!
  for _ in $(seq 200); do curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
  for round in $(seq "$rounds"); do
    "$zt" bench --url "http://127.0.0.1:$port" --admin-token-file "$dir/admin-token" \
      --connections 32 --duration "$duration" --json |
      .venv/bin/python -c 'import json,sys; r=json.load(sys.stdin); print(sys.argv[1], sys.argv[2], json.dumps(r))' "$name" "$round"
  done
  "$zt" audit verify --url "http://127.0.0.1:$port" --admin-token-file "$dir/admin-token" >/dev/null && echo "$name audit verify: ok"
  kill "$server"; wait "$server" || true
}

run local local
run kms-per-record "aws-kms:$arn"
run kms-session "aws-kms:$arn" --session-key-ttl 1h
run pkcs11-per-record "$pkcs11"
run pkcs11-session "$pkcs11" --session-key-ttl 1h
