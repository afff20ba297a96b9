#!/usr/bin/env bash
# Mirror throughput, measured in one run next to the standard tools:
#   to a local directory:  sopvault mirror --init  vs  cp -a  and  rsync -a
#   to a local S3 server:  sopvault mirror --init s3://…  vs  rclone copy (Debian's rclone)
#   and a second sopvault run (nothing to copy) vs a second rsync -a / rclone copy.
# The repository: a SIZE_MB dump stream of random data plus a 2,000-file tree,
# so most bytes are in 16 MiB packs, as in real repositories.
#
#   ./benches/mirror.sh            # SIZE_MB=512 ROUNDS=3
# Prints a Markdown table with medians and sopvault ÷ tool ratios (< 1: sopvault is faster).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MB=${SIZE_MB:-512}
ROUNDS=${ROUNDS:-3}

if ! command -v rclone >/dev/null 2>&1; then
  echo "== installing Debian's rclone" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rclone >/dev/null
fi
command -v rsync >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync >/dev/null; }

cargo build --release --quiet
W=$(mktemp -d /var/tmp/sopvault-mirror-bench.XXXXXX)
trap 'scripts/s3-server.sh stop || true; rm -rf "$W"' EXIT
# A copy, so a rebuild during the run cannot change what is measured.
cp target/release/sopvault "$W/sopvault"
BIN=$W/sopvault
s3_env=$(scripts/s3-server.sh start)
eval "$s3_env"

export SOPVAULT_REPO=$W/repo SOPVAULT_CACHE_DIR=$W/cache SOPVAULT_PASSWORD_FILE=$W/pw HOME=$W/home
mkdir -p "$W/home" "$W/tree"
echo "bench password" >"$W/pw"
for i in $(seq 1 2000); do head -c $((RANDOM * 2)) /dev/urandom >"$W/tree/f$i"; done
"$BIN" -q init
"$BIN" -q snapshot --source bench --stream dump.sql="head -c ${SIZE_MB}M /dev/urandom" "$W/tree"
BYTES=$(du -sb "$W/repo" | cut -f1)
FILES=$(find "$W/repo" -type f | wc -l)
echo "== repository: $FILES files, $((BYTES / 1048576)) MiB" >&2

RC=(--s3-provider=Other --s3-endpoint="$AWS_ENDPOINT_URL" --s3-access-key-id="$AWS_ACCESS_KEY_ID"
    --s3-secret-access-key="$AWS_SECRET_ACCESS_KEY" --s3-region="$AWS_REGION")
export RCLONE_CONFIG=/dev/null
# Debian's rclone 1.60 cannot use a custom CA bundle with its transport; the server is plain HTTP.
unset AWS_CA_BUNDLE

# Seconds one command takes; a failing command stops the whole bench (no silent zeros).
secs() {
  local s e; s=$(date +%s.%N)
  if ! "$@" >/dev/null 2>"$W/err"; then echo "FAILED: $*" >&2; cat "$W/err" >&2; kill "$$"; exit 1; fi
  e=$(date +%s.%N); echo "$e - $s" | bc -l
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A T
add() { T[$1]="${T[$1]:-} $2"; }
cat "$W"/repo/packs/*/* >/dev/null   # every tool reads from the page cache
for r in $(seq 1 "$ROUNDS"); do
  rm -rf "$W"/d-*
  add sv_local  "$(secs "$BIN" mirror --init "$W/d-sv")"
  add sv_local2 "$(secs "$BIN" mirror "$W/d-sv")"
  # cp -a also copies the 4 MiB space reserve, which mirror, rsync and rclone leave out.
  add cp        "$(secs cp -a "$W/repo" "$W/d-cp")"
  add cp_sync   "$(secs sh -c "cp -a '$W/repo' '$W/d-cps' && sync -f '$W/d-cps'")"
  add rsync     "$(secs rsync -a --exclude=/reserve "$W/repo/" "$W/d-rs/")"
  add rsync2    "$(secs rsync -a --exclude=/reserve "$W/repo/" "$W/d-rs/")"
  diff -r -x reserve "$W/repo" "$W/d-sv" >/dev/null   # the space reserve is not mirrored
  P=bench-$r-$RANDOM
  add sv_s3     "$(secs "$BIN" mirror --init "s3://$SOPVAULT_TEST_BUCKET/$P-sv")"
  add sv_s32    "$(secs "$BIN" mirror "s3://$SOPVAULT_TEST_BUCKET/$P-sv")"
  add rclone    "$(secs rclone copy "${RC[@]}" --exclude 'locks/**' --exclude 'tmp/**' --exclude '/reserve' "$W/repo" ":s3:$SOPVAULT_TEST_BUCKET/$P-rc")"
  add rclone2   "$(secs rclone copy "${RC[@]}" --exclude 'locks/**' --exclude 'tmp/**' --exclude '/reserve' "$W/repo" ":s3:$SOPVAULT_TEST_BUCKET/$P-rc")"
  "$BIN" -q mirror --verify "s3://$SOPVAULT_TEST_BUCKET/$P-sv" >/dev/null
done

m() { median ${T[$1]}; }
mbs() { echo "scale=1; $BYTES / 1048576 / $1" | bc -l; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }
echo
echo "Repository: $FILES files, $((BYTES / 1048576)) MiB; medians of $ROUNDS rounds; $(rclone version | head -1); $(rsync --version | head -1 | awk '{print $1, $3}')"
echo
echo "| copy | seconds | MiB/s | sopvault ÷ this |"
echo "|---|---:|---:|---:|"
row() { printf '| %s | %.2f | %s | %s |\n' "$1" "$2" "$(mbs "$2")" "$3"; }
row "sopvault mirror → directory (fsync per file)" "$(m sv_local)" "1.00"
row "cp -a (no fsync)" "$(m cp)" "$(ratio "$(m sv_local)" "$(m cp)")"
row "cp -a + sync" "$(m cp_sync)" "$(ratio "$(m sv_local)" "$(m cp_sync)")"
row "rsync -a" "$(m rsync)" "$(ratio "$(m sv_local)" "$(m rsync)")"
row "sopvault mirror → local S3 (SeaweedFS)" "$(m sv_s3)" "1.00"
row "rclone copy → local S3" "$(m rclone)" "$(ratio "$(m sv_s3)" "$(m rclone)")"
echo
echo "| second run, nothing to copy | seconds | sopvault ÷ this |"
echo "|---|---:|---:|"
printf '| sopvault mirror → directory | %.2f | 1.00 |\n' "$(m sv_local2)"
printf '| rsync -a | %.2f | %s |\n' "$(m rsync2)" "$(ratio "$(m sv_local2)" "$(m rsync2)")"
printf '| sopvault mirror → local S3 | %.2f | 1.00 |\n' "$(m sv_s32)"
printf '| rclone copy | %.2f | %s |\n' "$(m rclone2)" "$(ratio "$(m sv_s32)" "$(m rclone2)")"
