#!/usr/bin/env bash
# Throughput of reading a large stream through `sopvault mount` against
# `sopvault cat` of the same snapshot (issue 6: the mount must reach at least
# half of it; restic's mount is reported ~8x slower than its restore).
#
#  1. one snapshot of a SIZE stream named big.sql: a pg_dump-like SQL script
#     (scripts/fake-dump.sh, compressible like real dumps) or, with
#     DATA=random, incompressible random bytes;
#  2. `sopvault cat x:latest big.sql > /dev/null`, timed;
#  3. a fresh mount, then `cat MOUNT/sources/x/latest/big.sql > /dev/null`,
#     timed, and `cmp` of both outputs' SHA-256.
# Both read with the repository in the page cache (it was just written); with
# COLD=1 (root only) each starts from a cold cache (`echo 3 > drop_caches`,
# which disturbs whatever else runs on the machine).
#
# Usage: benches/mount_read.sh               (SIZE=1G: under a minute)
#        SIZE=4G DATA=random COLD=1 benches/mount_read.sh
# Needs /dev/fuse, fusermount3 (Debian's fuse3) and about SIZE of free disk below TMPDIR.
set -euo pipefail

SIZE=${SIZE:-1G}
DATA=${DATA:-sql}

cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/sopvault
command -v fusermount3 >/dev/null || { echo "needs fusermount3 (apt-get install fuse3)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sopvault-mount-bench.XXXXXX")
MNT=$WORK/mnt
MOUNT_PID=
cleanup() {
  if [ -n "$MOUNT_PID" ]; then
    fusermount3 -u -z "$MNT" 2>/dev/null || true
    kill "$MOUNT_PID" 2>/dev/null || true
    wait "$MOUNT_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
printf 'mount benchmark\n' >"$WORK/password"
export SOPVAULT_PASSWORD_FILE=$WORK/password SOPVAULT_REPO=$WORK/repo SOPVAULT_CACHE_DIR=$WORK/cache
unset SOPVAULT_PASSWORD_COMMAND

bytes=$(numfmt --from=iec "$SIZE")
make_data() {
  if [ "$DATA" = random ]; then
    head -c "$bytes" /dev/urandom
  else
    # ~64 bytes per row; repeat the script until SIZE.
    rows=$(( bytes / 64 + 1 ))
    sh scripts/fake-dump.sh "$rows" | head -c "$bytes"
  fi
}

drop_caches() {
  [ "${COLD:-0}" = 1 ] || return 0
  sync
  if [ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/drop_caches ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}

# now_ns: a monotonic-enough clock in nanoseconds.
now_ns() { date +%s%N; }

"$BIN" init -q
make_data | "$BIN" snapshot -q --source x --stdin big.sql
echo "stream: $SIZE of $DATA data, $(du -sh "$WORK/repo" | cut -f1) in the repository"

drop_caches
t0=$(now_ns)
cat_sum=$("$BIN" cat x:latest big.sql | sha256sum | cut -d' ' -f1)
t1=$(now_ns)
cat_ns=$(( t1 - t0 ))

mkdir "$MNT"
"$BIN" mount -q "$MNT" &
MOUNT_PID=$!
for _ in $(seq 600); do [ -d "$MNT/sources" ] && break; sleep 0.05; done
[ -d "$MNT/sources" ] || { echo "the mount did not come up" >&2; exit 1; }
drop_caches
t0=$(now_ns)
mount_sum=$(cat "$MNT/sources/x/latest/big.sql" | sha256sum | cut -d' ' -f1)
t1=$(now_ns)
mount_ns=$(( t1 - t0 ))
fusermount3 -u "$MNT"
wait "$MOUNT_PID"
MOUNT_PID=

[ "$cat_sum" = "$mount_sum" ] || { echo "the mount returned different bytes than cat" >&2; exit 1; }
# Throughputs include sha256sum on both sides (the same work); cat's time also
# includes opening the repository (Argon2id, ~0.1-0.3 s), the mount's does not.
awk -v b="$bytes" -v c="$cat_ns" -v m="$mount_ns" 'BEGIN {
  printf "sopvault cat:   %8.1f MiB/s (%.2f s)\n", b / 1048576 / (c / 1e9), c / 1e9
  printf "through mount:  %8.1f MiB/s (%.2f s)\n", b / 1048576 / (m / 1e9), m / 1e9
  printf "mount / cat:    %8.2f  (target >= 0.5)\n", c / m
}'
