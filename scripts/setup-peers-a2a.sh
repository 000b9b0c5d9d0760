#!/usr/bin/env bash
# Creates or updates the Python venv (`.venv` at the repository root) with the pinned official
# a2a-sdk, the peer of the A2A proxy tests (crates/zt-cli/tests/e2e_a2a.rs). Idempotent.
# Usage: scripts/setup-peers-a2a.sh   (needs python3 >= 3.10 with venv)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet -r crates/zt-a2a/tests/peers/requirements.txt \
  -c crates/zt-a2a/tests/peers/constraints.txt
.venv/bin/python -c 'import a2a.server, a2a.client, uvicorn; print("a2a peers ready")'
