#!/usr/bin/env bash
# The Python SDK's tests (sdk/python): creates .venv if missing, installs the pinned test
# packages and the SDK, checks format and lints (ruff) and types (mypy --strict), runs pytest against the real `zt` binary, then builds the wheel and
# sdist. Builds nothing Rust: the binary comes from ZT_BIN, else target/release/zt, else
# target/debug/zt. With ZT_REQUIRE_SERVICES=1 a missing binary fails instead of skipping.
# Extra arguments go to pytest (e.g. `scripts/test-python.sh -k langgraph`).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
venv="$repo/.venv"
pip_quiet=(--quiet --disable-pip-version-check)

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install "${pip_quiet[@]}" -r sdk/python/requirements-test.txt
"$venv/bin/pip" install "${pip_quiet[@]}" --no-deps -e sdk/python

(cd sdk/python && "$venv/bin/ruff" format --check src tests && "$venv/bin/ruff" check src tests \
  && "$venv/bin/python" -m mypy --strict src/zt_infra)

status=0
(cd sdk/python && "$venv/bin/python" -m pytest -rs "$@") || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
[ "$status" -eq 0 ] || exit "$status"

dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
"$venv/bin/python" -m build --outdir "$dist" sdk/python >"$dist/build.log" 2>&1 || { cat "$dist/build.log" >&2; exit 1; }
wheel=$(ls "$dist"/zt_infra-*.whl)
ls "$dist"/zt_infra-*.tar.gz >/dev/null
listing=$("$venv/bin/python" -m zipfile -l "$wheel")
grep -q 'zt_infra/py.typed' <<<"$listing" || { echo "wheel lacks py.typed" >&2; exit 1; }
echo "built $(basename "$wheel") and its sdist"
