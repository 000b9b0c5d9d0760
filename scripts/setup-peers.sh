#!/usr/bin/env bash
# Installs the official protocol peers the gateway end-to-end tests run against:
# - the npm MCP servers in tests/mcp-peers/ (from its package-lock.json);
# - in .venv at the repository root: the Python MCP SDK (the MCP client) and the official
#   a2a-sdk with its server (the A2A agent and client), pinned.
# Needs node/npm and python3 (3.10 or newer). Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python=${PYTHON:-python3}

(cd "$root/tests/mcp-peers" && npm ci --no-audit --no-fund --loglevel=error)

[ -x "$root/.venv/bin/python" ] || "$python" -m venv "$root/.venv"
"$root/.venv/bin/pip" install --quiet --disable-pip-version-check \
  --requirement "$root/tests/mcp-peers/requirements.txt" \
  --requirement "$root/crates/zt-a2a/tests/peers/requirements.txt" \
  --constraint "$root/crates/zt-a2a/tests/peers/constraints.txt"
"$root/.venv/bin/python" -c 'import mcp, a2a.server, a2a.client, uvicorn; print("mcp and a2a peers ready")'
