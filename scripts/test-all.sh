#!/usr/bin/env bash
# Every test, services included: starts PostgreSQL (127.0.0.1:5432, database `test`) and NATS
# with JetStream (127.0.0.1:4222) where they are installed, then runs the whole suite with
# ZT_REQUIRE_SERVICES=1, so a test that needs a missing service fails instead of skipping.
# `cargo test --workspace` alone runs everything else on a machine with only Rust.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  else
    echo "PostgreSQL is not running on 127.0.0.1:5432 and pg_ctlcluster is not installed" >&2
  fi
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  nats=$(command -v nats-server || true)
  [ -z "$nats" ] && [ -x /usr/sbin/nats-server ] && nats=/usr/sbin/nats-server
  if [ -n "$nats" ]; then
    echo "starting NATS with JetStream"
    store=$(mktemp -d)
    "$nats" -a 127.0.0.1 -p 4222 -js -sd "$store" >"$store/nats.log" 2>&1 &
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break; sleep 0.1; done
  else
    echo "NATS is not running on 127.0.0.1:4222 and nats-server is not installed" >&2
  fi
fi

ZT_REQUIRE_SERVICES=1 cargo test --workspace --locked "$@"
