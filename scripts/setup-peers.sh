#!/usr/bin/env bash
# Installs the official MCP peers the gateway's end-to-end tests run against:
# the npm servers in tests/mcp-peers/ (from its package-lock.json) and the Python MCP SDK
# (the client) in .venv. Needs node/npm and python3 (3.10 or newer).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

(cd "$root/tests/mcp-peers" && npm ci --no-audit --no-fund)

if [ ! -x "$root/.venv/bin/python" ]; then
  python3 -m venv "$root/.venv"
fi
"$root/.venv/bin/pip" install --quiet --requirement "$root/tests/mcp-peers/requirements.txt"
