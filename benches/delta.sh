#!/usr/bin/env bash
# delta.sh — what delta compression buys on the corpus dump series, in one run:
# sopvault with deltas, the same build with --no-delta, and restic, each backing
# up the pg_dump of every day (piped on standard input) into its own repository;
# then a restore of the last day, verified byte for byte, and check --read-data.
#
# Usage:  benches/delta.sh [--days N]        (default 30)
# Env:    CORPUS (default ../corpus next to the repository; built by compare.sh or
#         ../shared/corpus/make-corpus.sh), WORK (default /tmp/sopvault-delta; wiped)
# Output: a Markdown table on stdout and in WORK/results.md. Figures are ratios to
#         the same build without deltas and to restic, measured in this run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DAYS=30
while [ $# -gt 0 ]; do
  case $1 in
    --days) DAYS=$2; shift ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "delta.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
CORPUS=${CORPUS:-$(dirname "$ROOT")/corpus}
WORK=${WORK:-/tmp/sopvault-delta}
[ -f "$CORPUS/pgdump/day-01.sql" ] || { echo "delta.sh: no corpus at $CORPUS (run benches/compare.sh once, or ../shared/corpus/make-corpus.sh)" >&2; exit 1; }
command -v restic >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq restic >/dev/null; }
[ -x /usr/bin/time ] || { [ "$(id -u)" = 0 ] && apt-get install -y -qq time >/dev/null; }

(cd "$ROOT" && cargo build --release --quiet)
SV=$ROOT/target/release/sopvault
rm -rf "$WORK"; mkdir -p "$WORK"
echo pw >"$WORK/pw"
export SOPVAULT_PASSWORD_FILE=$WORK/pw RESTIC_PASSWORD_FILE=$WORK/pw SOPVAULT_CACHE_DIR=$WORK/cache
export RESTIC_CACHE_DIR=$WORK/restic-cache
"$SV" --repo "$WORK/delta" init -q
"$SV" --repo "$WORK/nodelta" init -q
restic -q -r "$WORK/restic" init >/dev/null

# t TOOL CMD...: runs CMD under /usr/bin/time, adds wall seconds to TOOL's total.
declare -A WALL RSS
t() {
  local tool=$1; shift
  /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >>"$WORK/$tool.log" 2>&1
  read -r w m <"$WORK/time"
  WALL[$tool]=$(python3 -c "print(${WALL[$tool]:-0} + $w)")
  [ "${RSS[$tool]:-0}" -ge "$m" ] || RSS[$tool]=$m
}
size() { du -sb "$1" | cut -f1; }
declare -A FIRST
for d in $(seq 1 "$DAYS"); do
  f=$(printf '%s/pgdump/day-%02d.sql' "$CORPUS" "$d")
  cat "$f" >/dev/null
  when=$(date -d "2026-10-01 + $((d - 1)) days" +%Y-%m-%dT02:00:00+07:00)
  t delta "$SV" --repo "$WORK/delta" snapshot -q --source db --time "$when" --stdin pg.sql <"$f"
  t nodelta "$SV" --repo "$WORK/nodelta" snapshot -q --no-delta --source db --time "$when" --stdin pg.sql <"$f"
  t restic restic -q -r "$WORK/restic" backup --stdin --stdin-filename pg.sql --force <"$f"
  if [ "$d" = 1 ]; then
    for tool in delta nodelta restic; do FIRST[$tool]=$(size "$WORK/$tool"); WALL[$tool]=0; done
  fi
  echo "day $d: delta $(size "$WORK/delta")  nodelta $(size "$WORK/nodelta")  restic $(size "$WORK/restic")" >&2
done
last=$(printf '%s/pgdump/day-%02d.sql' "$CORPUS" "$DAYS")
bytes_later=0
for d in $(seq 2 "$DAYS"); do bytes_later=$((bytes_later + $(stat -c %s "$(printf '%s/pgdump/day-%02d.sql' "$CORPUS" "$d")"))); done
declare -A GROW SNAP REST
for tool in delta nodelta restic; do
  GROW[$tool]=$(( ($(size "$WORK/$tool") - FIRST[$tool]) / (DAYS > 1 ? DAYS - 1 : 1) ))
  SNAP[$tool]=${WALL[$tool]}
  rm -rf "$WORK/out"; WALL[$tool]=0
  case $tool in
    restic) t restic restic -q -r "$WORK/restic" restore latest --target "$WORK/out" ;;
    *) t "$tool" "$SV" --repo "$WORK/$tool" restore -q latest --target "$WORK/out" ;;
  esac
  cmp "$WORK/out/pg.sql" "$last" || { echo "delta.sh: $tool restored a different day $DAYS" >&2; exit 1; }
  REST[$tool]=${WALL[$tool]}
done
"$SV" --repo "$WORK/delta" check -q --read-data >&2

python3 - "$DAYS" "$bytes_later" "$(stat -c %s "$last")" \
  "${GROW[delta]}" "${GROW[nodelta]}" "${GROW[restic]}" \
  "${SNAP[delta]}" "${SNAP[nodelta]}" "${SNAP[restic]}" \
  "${REST[delta]}" "${REST[nodelta]}" "${REST[restic]}" <<'EOF' | tee "$WORK/results.md"
import sys
days, later, last = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
g = dict(zip(["delta", "nodelta", "restic"], map(int, sys.argv[4:7])))
s = dict(zip(["delta", "nodelta", "restic"], map(float, sys.argv[7:10])))
r = dict(zip(["delta", "nodelta", "restic"], map(float, sys.argv[10:13])))
mb = 1e6
print(f"Dump series, days 2..{days}: repository growth per day, snapshot and restore throughput")
print()
print("| figure | with deltas | --no-delta | restic | deltas / no-delta | deltas / restic |")
print("|---|---:|---:|---:|---:|---:|")
print(f"| growth per day (MB) | {g['delta']/mb:.2f} | {g['nodelta']/mb:.2f} | {g['restic']/mb:.2f} | "
      f"{g['delta']/g['nodelta']:.2f} | {g['delta']/g['restic']:.2f} |")
thr = {k: later / mb / max(v, 1e-3) for k, v in s.items()}
print(f"| daily snapshot (MB/s) | {thr['delta']:.0f} | {thr['nodelta']:.0f} | {thr['restic']:.0f} | "
      f"{thr['delta']/thr['nodelta']:.2f} | {thr['delta']/thr['restic']:.2f} |")
rt = {k: last / mb / max(v, 1e-3) for k, v in r.items()}
print(f"| restore of day {days} (MB/s) | {rt['delta']:.0f} | {rt['nodelta']:.0f} | {rt['restic']:.0f} | "
      f"{rt['delta']/rt['nodelta']:.2f} | {rt['delta']/rt['restic']:.2f} |")
EOF
