#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit, format-vector
# and end-to-end tests against the real binary. Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --release --all-targets --quiet -- -D warnings
echo "== cargo test --release"
cargo test --release --all-targets
echo "== benches compile"
cargo bench --no-run --quiet
echo "all tests passed"
