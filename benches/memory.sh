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
# The repositories are opened with a machine secret (`key add --secret-file`),
# as a nightly job opens them: a passphrase costs Argon2id's 64 MiB first,
# a spike that would hide everything measured here. One row shows that cost.
#
# Usage: benches/memory.sh            (SMALL=100M, BIG=4G: about 1-2 minutes)
#        BIG=10G benches/memory.sh    (the full 10 GB target)
# Sizes are `head -c` sizes (M = MiB, G = GiB). Needs BIG bytes of free disk
# below TMPDIR (random data does not compress). Linux only.
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

json_field() { grep -o "\"$1\": *[0-9]*" "$WORK/out" | grep -o '[0-9]*$'; }

for r in empty small big; do
    sv "$r" init >/dev/null
done
echo "measuring: open only, with the passphrase" >&2
rss_passphrase=$(sv empty snapshots)
for r in empty small big; do
    sv "$r" key add --secret-file "$WORK/secret-$r" >/dev/null
done

# svs NAME ARGS...: like sv, opening repository NAME with its machine secret.
svs() {
    SOPVAULT_PASSWORD_FILE=$WORK/secret-$1 sv "$@"
}

# A small file that stays unchanged (1.2 MB of text).
mkdir -p "$WORK/input"
seq 1 200000 >"$WORK/input/small.txt"

echo "measuring: open only" >&2
rss_open=$(svs empty snapshots)

echo "measuring: stream of $SMALL" >&2
small=$(svs small snapshot --source m --stream "big=head -c $SMALL /dev/urandom")

echo "measuring: stream of $BIG" >&2
start=$(date +%s)
big=$(svs big snapshot --source m --json --stream "big=head -c $BIG /dev/urandom")
big_secs=$(($(date +%s) - start))
chunks=$(json_field chunks_added)
bytes=$(json_field bytes_total)

echo "measuring: unchanged small file" >&2
svs empty snapshot --source f "$WORK/input" >/dev/null
unch_empty=$(svs empty snapshot --source f "$WORK/input")
# The first run against the big repository merges its index files into the cache.
merge_big=$(svs big snapshot --source f "$WORK/input")
unch_big=$(svs big snapshot --source f "$WORK/input")

mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
diff_mib() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f MiB", (a - b) / 1024 }'; }
per_chunk() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.0f B", (a - b) * 1024 / n }'; }

cat <<EOF

| Peak RSS of \`sopvault snapshot\`, opened with a machine secret | |
|---|---:|
| open only (\`snapshots\`, empty repository) | $(mib "$rss_open") |
| open only, with the passphrase (Argon2id, 64 MiB) | $(mib "$rss_passphrase") |
| stream of $SMALL random bytes | $(mib "$small") |
| stream of $BIG random bytes ($chunks chunks, $big_secs s) | $(mib "$big") |
| **difference $BIG − $SMALL** | **$(diff_mib "$big" "$small")** |
| unchanged 1.2 MB file, empty repository | $(mib "$unch_empty") |
| same, repository of $chunks chunks, first run (builds the index cache) | $(mib "$merge_big") |
| same, repository of $chunks chunks, cache current | $(mib "$unch_big") |
| **RAM per stored chunk** (cache current) | **$(per_chunk "$unch_big" "$unch_empty" "$chunks")** |
| RAM per stored chunk, first run (cache build) | $(per_chunk "$merge_big" "$unch_empty" "$chunks") |

$BIG = $bytes bytes.
EOF
