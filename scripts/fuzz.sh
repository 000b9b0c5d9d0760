#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for SECONDS each (default 60), seeded from
# the corpus in the repo (fuzz/corpus/TARGET). New inputs go to a scratch directory, so the
# checked-in corpus only changes by hand; a crash stops the run and leaves its input in
# fuzz/artifacts/TARGET/ (turn it into a regression test, then add it to the corpus).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs nightly Rust (rustup toolchain install nightly) and cargo-fuzz
# (cargo install cargo-fuzz). Not part of the main test command.
set -euo pipefail

seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "error: cargo-fuzz on nightly Rust is needed: rustup toolchain install nightly && cargo install cargo-fuzz" >&2
    exit 2
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    echo "== $target: ${seconds}s"
    mkdir -p "$scratch/$target"
    # -rss_limit_mb and -timeout bound each input like the server bounds a request.
    cargo +nightly fuzz run -O "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
done
echo "no crash in ${#targets[@]} targets"
