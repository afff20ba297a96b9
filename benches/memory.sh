#!/usr/bin/env bash
# Peak memory (maximum RSS, from /usr/bin/time -f %M) of `sopvault snapshot`:
#
#  1. a stream of SMALL and of BIG random bytes, each into a fresh repository:
#     memory must not grow with the size of the stream;
#  2. a snapshot of a small unchanged file against an empty repository and
#     against the repository that holds BIG (≈ BIG / 64 KiB chunks): the
#     difference divided by the number of chunks is the RAM each stored chunk
#     costs a snapshot (the merged index is memory-mapped, so it should be ~0).
#
# Every command also pays for opening the repository: Argon2id with the
# default 64 MiB, which `init` offers no way to lower. That spike comes first
# and hides anything smaller, so each run is reported twice: "whole run" is
# %M as is; "after unlock" is %M after the high-water mark was reset
# (`echo 5 > /proc/PID/clear_refs`) as soon as the RSS fell back from the
# Argon2 spike, i.e. the peak of the snapshot itself. "-" means the run ended
# before the reset could happen.
#
# Usage: benches/memory.sh            (SMALL=100M, BIG=4G: about 1-2 minutes)
#        BIG=10G benches/memory.sh    (the full 10 GB target)
# Sizes are `head -c` sizes (M = MiB, G = GiB). Needs BIG bytes of free disk
# below TMPDIR (random data does not compress). Linux only (/proc).
set -euo pipefail

SMALL=${SMALL:-100M}
BIG=${BIG:-4G}

cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/sopvault

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sopvault-memory.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
printf 'memory benchmark\n' >"$WORK/password"
export SOPVAULT_PASSWORD_FILE=$WORK/password
unset SOPVAULT_PASSWORD_COMMAND SOPVAULT_NEW_PASSWORD_FILE SOPVAULT_REPO SOPVAULT_CACHE_DIR

# sv NAME ARGS...: runs sopvault on repository $WORK/NAME (its own cache dir),
# stdout to $WORK/out; prints the peak RSS in KiB.
sv() {
    local name=$1
    shift
    /usr/bin/time -f %M -o "$WORK/rss" \
        "$BIN" --repo "$WORK/$name" --cache-dir "$WORK/cache-$name" -q "$@" >"$WORK/out"
    tail -n 1 "$WORK/rss"
}

# measure NAME ARGS...: like sv, but prints "WHOLE AFTER": the peak RSS of the
# whole run and the peak after the Argon2 spike (KiB; "-" if not caught).
measure() {
    local name=$1
    shift
    /usr/bin/time -f %M -o "$WORK/rss" \
        "$BIN" --repo "$WORK/$name" --cache-dir "$WORK/cache-$name" -q "$@" >"$WORK/out" &
    local tpid=$! pid="" hwm=0 rss=0 spike=0 k v _
    while [ -z "$pid" ] && kill -0 "$tpid" 2>/dev/null; do
        pid=$(pgrep -P "$tpid" || true)
    done
    # Poll (without forking) until the RSS falls 32 MiB below a high-water
    # mark of at least 48 MiB: the Argon2 buffer is gone. Then reset the mark.
    while [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; do
        while read -r k v _; do
            case $k in
            VmHWM:) hwm=$v ;;
            VmRSS:) rss=$v ;;
            esac
        done <"/proc/$pid/status" 2>/dev/null || break
        if [ "$hwm" -ge 49152 ] && [ "$rss" -le $((hwm - 32768)) ]; then
            spike=$hwm
            echo 5 2>/dev/null >"/proc/$pid/clear_refs" || spike=0
            break
        fi
    done
    wait "$tpid"
    local peak
    peak=$(tail -n 1 "$WORK/rss")
    if [ "$spike" -gt 0 ]; then
        echo "$((spike > peak ? spike : peak)) $peak"
    else
        echo "$peak -"
    fi
}

json_field() { grep -o "\"$1\": *[0-9]*" "$WORK/out" | grep -o '[0-9]*$'; }

for r in empty small big; do
    sv "$r" init >/dev/null
done

# A small file that stays unchanged (1.2 MB of text).
mkdir -p "$WORK/input"
seq 1 200000 >"$WORK/input/small.txt"

echo "measuring: open only" >&2
rss_open=$(sv empty snapshots)

echo "measuring: stream of $SMALL" >&2
read -r small small_after < <(measure small snapshot --source m --json \
    --stream "big=head -c $SMALL /dev/urandom")

echo "measuring: stream of $BIG" >&2
start=$(date +%s)
read -r big big_after < <(measure big snapshot --source m --json \
    --stream "big=head -c $BIG /dev/urandom")
big_secs=$(($(date +%s) - start))
chunks=$(json_field chunks_added)
bytes=$(json_field bytes_total)

echo "measuring: unchanged small file" >&2
sv empty snapshot --source f "$WORK/input" >/dev/null
read -r unch_empty unch_empty_after < <(measure empty snapshot --source f "$WORK/input")
# The first run against the big repository merges its index files into the cache.
read -r merge_big merge_big_after < <(measure big snapshot --source f "$WORK/input")
read -r unch_big unch_big_after < <(measure big snapshot --source f "$WORK/input")

mib() {
    case $1 in
    -) echo - ;;
    *) awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }' ;;
    esac
}
diff_mib() {
    case "$1 $2" in
    *-*) echo - ;;
    *) awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f MiB", (a - b) / 1024 }' ;;
    esac
}
per_chunk() {
    case "$1 $2" in
    *-*) echo - ;;
    *) awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.0f B", (a - b) * 1024 / n }' ;;
    esac
}

cat <<EOF

| Peak RSS of \`sopvault snapshot\` | whole run | after unlock |
|---|---:|---:|
| open only (\`snapshots\`, empty repository) | $(mib "$rss_open") | |
| stream of $SMALL random bytes | $(mib "$small") | $(mib "$small_after") |
| stream of $BIG random bytes ($chunks chunks, $big_secs s) | $(mib "$big") | $(mib "$big_after") |
| **difference $BIG − $SMALL** | **$(diff_mib "$big" "$small")** | **$(diff_mib "$big_after" "$small_after")** |
| unchanged 1.2 MB file, empty repository | $(mib "$unch_empty") | $(mib "$unch_empty_after") |
| same, repository of $chunks chunks, first run (builds the index cache) | $(mib "$merge_big") | $(mib "$merge_big_after") |
| same, repository of $chunks chunks, cache current | $(mib "$unch_big") | $(mib "$unch_big_after") |
| **RAM per stored chunk** (cache current) | $(per_chunk "$unch_big" "$unch_empty" "$chunks") | **$(per_chunk "$unch_big_after" "$unch_empty_after" "$chunks")** |
| RAM per stored chunk, first run (cache build) | $(per_chunk "$merge_big" "$unch_empty" "$chunks") | $(per_chunk "$merge_big_after" "$unch_empty_after" "$chunks") |

$BIG = $bytes bytes. "whole run" includes the Argon2id spike (64 MiB) of opening
the repository; "after unlock" is the snapshot's own peak.
EOF
