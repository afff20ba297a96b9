#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) and fails if any finds a crash.
#
# Usage: fuzz/run-all.sh [SECONDS] [TARGET...]
#
# Each target starts from fuzz/corpus/<target> (seeded from real structures by
# examples/seed_corpus.rs when missing) plus fuzz/regressions/<target>, the
# reproducers of past crashes, so a bug that comes back fails at once.
# Crashes land in fuzz/artifacts/<target>/. cargo fuzz needs nightly features;
# RUSTC_BOOTSTRAP=1 lets a stable toolchain build the sanitized targets.
set -euo pipefail

seconds=${1:-30}
shift || true
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

missing=0
for t in "${targets[@]}"; do
    [[ -d fuzz/corpus/$t ]] || missing=1
done
if [[ $missing == 1 ]]; then
    cargo run --quiet --manifest-path fuzz/Cargo.toml --example seed_corpus
fi

cargo fuzz build

failed=()
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t"
    echo "=== $t: ${seconds}s"
    if cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$logs/$t" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t" | grep -o '[0-9]*$' || true)
        echo "    ok, ${runs:-?} executions"
    else
        echo "    FAILED; the end of its log:"
        tail -n 40 "$logs/$t" | sed 's/^/    /'
        failed+=("$t")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "all ${#targets[@]} targets ran ${seconds}s without a crash"
