#!/usr/bin/env bash
# prune.sh — `sopvault prune` against `restic forget --prune` on a year of daily database dumps (issue 4).
#
# Workload: a fresh sopvault repository and a fresh restic repository (format version 2, compression auto)
# each receive DAYS daily snapshots of the corpus's pg_dump series: day i (0 .. DAYS-1) is
# pgdump/day-((i % 30) + 1).sql piped on standard input, recorded at 2025-01-01 02:00 +07:00 plus i days.
# Then, on each, the same policy:
#     sopvault prune --keep-daily D --keep-monthly M
#     restic forget --prune --keep-daily D --keep-monthly M
# under /usr/bin/time -f '%e %U %S %M' (wall, user, sys, peak RSS KiB), repeated REPEAT times (default 3) from
# copies of the repositories taken before the first one (the table gives medians), with the repository size (du -sb)
# and the snapshot count before and after, then `sopvault check` and `restic check`, and every kept snapshot is
# read back (`sopvault cat`, `restic dump`) and compared with its corpus file (check alone reads no data).
# For scale, the floor of both runs is timed too: opening the repository and nothing else.
# The import is not the figure being measured; its time is printed anyway.
# Note on the data: the series repeats every 30 days, so with --keep-daily >= 30 the kept snapshots still
# reference every distinct dump, and the prune frees only what is per snapshot (manifests, trees, their packs
# and index entries): it measures forgetting and index rewriting, not repacking of dump data (--quick does).
#
# Time zones: restic reads `backup --time "YYYY-MM-DD hh:mm:ss"` in the local zone of the process, and sorts
# snapshots into days and months in the zone recorded with each snapshot. Every restic command therefore runs
# with TZ=Asia/Jakarta (+07:00, no DST), so both tools record 02:00 +07:00 on the same calendar day and the
# day and month buckets line up. The kept dates of both tools are compared with each other and with the
# expected set computed here; any difference is reported (and makes the exit status 1).
# restic 0.14 does not yet keep the oldest snapshot when a rule's count is not used up (restic 0.16 does,
# and sopvault follows 0.16); the default policies use every count up, so the rule does not come into play.
#
# Both prunes run with their defaults otherwise: 5% unused space tolerated (--max-unused), warm caches,
# every input already in the page cache. sopvault's figures include opening the repository (Argon2id,
# 64 MiB), restic's its scrypt key derivation. This machine may be shared: the load average at the start
# of each timed run is printed next to it.
#
# Usage:   benches/prune.sh [--quick] [--days N] [--keep-daily N] [--keep-monthly N]
#          default: 365 days, --keep-daily 31 --keep-monthly 12 (keeps 31 + 11 = 42: Dec 31 is both);
#          --quick: 60 days, --keep-daily 14 --keep-monthly 3 (keeps 15: Feb 16 .. Mar 1 and Jan 31; with
#          31 + 2 on 60 days the monthly picks would all fall inside the daily window and test nothing).
# Env:     CORPUS (default /work/corpus; built with /work/shared/corpus/make-corpus.sh if its MANIFEST.txt is
#          missing, which needs root), WORK (default /tmp/sopvault-prune-bench; wiped at start),
#          DAYS, KEEP_DAILY, KEEP_MONTHLY (the options win), REPEAT (timed rounds of each prune, default 3).
# Output:  the Markdown table on stdout and in WORK/prune-results.md; every tool's output in WORK/logs/;
#          progress on stderr. Exit status 1 if a step fails, a check or read-back fails, or the kept snapshots
#          differ from each other or from the expected set.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
T_START=$(date +%s)

log() { printf '[%s +%5ss] %s\n' "$(date +%H:%M:%S)" "$(($(date +%s) - T_START))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

# ---------- arguments ----------
QUICK=0
OPT_DAYS="" OPT_DAILY="" OPT_MONTHLY=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --days) [ $# -ge 2 ] || die "--days needs a number"; OPT_DAYS=$2; shift ;;
    --days=*) OPT_DAYS=${1#--days=} ;;
    --keep-daily) [ $# -ge 2 ] || die "--keep-daily needs a number"; OPT_DAILY=$2; shift ;;
    --keep-daily=*) OPT_DAILY=${1#--keep-daily=} ;;
    --keep-monthly) [ $# -ge 2 ] || die "--keep-monthly needs a number"; OPT_MONTHLY=$2; shift ;;
    --keep-monthly=*) OPT_MONTHLY=${1#--keep-monthly=} ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
if [ $QUICK = 1 ]; then
  D_DAYS=60 D_DAILY=14 D_MONTHLY=3
else
  D_DAYS=365 D_DAILY=31 D_MONTHLY=12
fi
DAYS=${OPT_DAYS:-${DAYS:-$D_DAYS}}
KEEP_DAILY=${OPT_DAILY:-${KEEP_DAILY:-$D_DAILY}}
KEEP_MONTHLY=${OPT_MONTHLY:-${KEEP_MONTHLY:-$D_MONTHLY}}
[[ $DAYS =~ ^[1-9][0-9]*$ ]] || die "DAYS must be a positive integer, got '$DAYS'"
[[ $KEEP_DAILY =~ ^[0-9]+$ ]] || die "KEEP_DAILY must be a non-negative integer, got '$KEEP_DAILY'"
REPEAT=${REPEAT:-3}
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer, got '$REPEAT'"
[[ $KEEP_MONTHLY =~ ^[0-9]+$ ]] || die "KEEP_MONTHLY must be a non-negative integer, got '$KEEP_MONTHLY'"
[ $((KEEP_DAILY + KEEP_MONTHLY)) -gt 0 ] || die "KEEP_DAILY and KEEP_MONTHLY are both 0: that would remove every snapshot"

CORPUS=$(realpath -m -- "${CORPUS:-/work/corpus}")
WORK=$(realpath -m -- "${WORK:-/tmp/sopvault-prune-bench}")
MAKE_CORPUS=/work/shared/corpus/make-corpus.sh
RESTIC_TZ=Asia/Jakarta
inside() { case "$1/" in "$2"/*) return 0 ;; *) return 1 ;; esac; }
case "$WORK" in /|/tmp|/work|/root|/home|"$HOME") die "refusing WORK=$WORK" ;; esac
inside "$ROOT" "$WORK" && die "WORK=$WORK contains the repository $ROOT"
inside "$WORK" "$ROOT" && die "WORK=$WORK is inside the repository $ROOT"
inside "$CORPUS" "$WORK" && die "WORK=$WORK contains the corpus $CORPUS"
inside "$WORK" "$CORPUS" && die "WORK=$WORK is inside the corpus $CORPUS"

# ---------- prerequisites ----------
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"
command -v restic >/dev/null 2>&1 || die "restic is not installed (apt-get install restic)"
command -v jq >/dev/null 2>&1 || die "jq is not installed (apt-get install jq)"
command -v cargo >/dev/null 2>&1 || die "cargo is not installed"
[ -f "/usr/share/zoneinfo/$RESTIC_TZ" ] || die "no /usr/share/zoneinfo/$RESTIC_TZ (apt-get install tzdata): restic needs it to read --time in +07:00"

# ---------- corpus ----------
if [ ! -f "$CORPUS/MANIFEST.txt" ]; then
  [ -f "$MAKE_CORPUS" ] || die "corpus: no $CORPUS/MANIFEST.txt and no $MAKE_CORPUS to build it"
  [ "$(id -u)" = 0 ] || die "corpus: no $CORPUS/MANIFEST.txt; building it needs root: bash $MAKE_CORPUS $CORPUS"
  log "corpus: building $CORPUS (about 3 minutes)"
  bash "$MAKE_CORPUS" "$CORPUS" >&2 || die "corpus: $MAKE_CORPUS failed"
  [ -f "$CORPUS/MANIFEST.txt" ] || die "corpus: $MAKE_CORPUS left no $CORPUS/MANIFEST.txt"
fi
NFILES=$((DAYS < 30 ? DAYS : 30))
dump_file() { printf '%s/pgdump/day-%02d.sql' "$CORPUS" $(($1 % 30 + 1)); }
for ((i = 0; i < NFILES; i++)); do
  [ -f "$(dump_file $i)" ] || die "corpus: $(dump_file $i) is missing"
done

# ---------- work dir ----------
MARKER=.sopvault-prune-bench-workdir
if [ -e "$WORK" ]; then
  [ -d "$WORK" ] || die "WORK=$WORK exists and is not a directory"
  if [ -n "$(ls -A "$WORK")" ] && [ ! -f "$WORK/$MARKER" ]; then
    die "WORK=$WORK is not empty and was not made by prune.sh; refusing to wipe it"
  fi
  log "wiping $WORK"
  rm -rf --one-file-system -- "$WORK"
fi
mkdir -p "$WORK"/{logs,secrets,cache,bin}
touch "$WORK/$MARKER"
chmod 700 "$WORK/secrets"

# ---------- sopvault build (a private copy: a rebuild during the run must not switch binaries) ----------
log "sopvault: cargo build --release"
(cd "$ROOT" && cargo build --release >"$WORK/logs/cargo-build.log" 2>&1) \
  || { tail -n 30 "$WORK/logs/cargo-build.log" >&2; die "sopvault: cargo build --release failed (log: $WORK/logs/cargo-build.log)"; }
cp "$ROOT/target/release/sopvault" "$WORK/bin/sopvault"
SV=$WORK/bin/sopvault

# ---------- environment: repositories, passwords and caches inside WORK ----------
unset SOPVAULT_PASSWORD_COMMAND SOPVAULT_NEW_PASSWORD_FILE RESTIC_PASSWORD RESTIC_PASSWORD_COMMAND \
  RESTIC_REPOSITORY_FILE RESTIC_COMPRESSION RESTIC_PACK_SIZE || true
(umask 077; for t in sopvault restic; do head -c 32 /dev/urandom | base64 >"$WORK/secrets/$t.password"; done)
export SOPVAULT_REPO=$WORK/repo-sopvault SOPVAULT_PASSWORD_FILE=$WORK/secrets/sopvault.password \
  SOPVAULT_CACHE_DIR=$WORK/cache/sopvault
export RESTIC_REPOSITORY=$WORK/repo-restic RESTIC_PASSWORD_FILE=$WORK/secrets/restic.password \
  RESTIC_CACHE_DIR=$WORK/cache/restic
rs() { TZ=$RESTIC_TZ restic "$@"; }

# run TOOL STEP CMD... : output to WORK/logs/TOOL.log; on failure, stop naming the tool and the step.
run() {
  local tool=$1 what=$2 rc=0
  shift 2
  printf '\n### %s: %s\n' "$what" "$*" >>"$WORK/logs/$tool.log"
  "$@" >>"$WORK/logs/$tool.log" 2>&1 || rc=$?
  if [ $rc != 0 ]; then
    tail -n 20 "$WORK/logs/$tool.log" >&2
    die "$tool: $what failed with exit status $rc (log: $WORK/logs/$tool.log)"
  fi
}

SV_VERSION=$("$SV" --version 2>/dev/null || echo "sopvault (version unknown)")
SV_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || SV_COMMIT="$SV_COMMIT+uncommitted changes"
RESTIC_VERSION=$(restic version | head -n 1)
log "$SV_VERSION ($SV_COMMIT); $RESTIC_VERSION"
log "policy: --keep-daily $KEEP_DAILY --keep-monthly $KEEP_MONTHLY on $DAYS daily snapshots"

run sopvault init "$SV" init -q
run restic init rs init --repository-version 2

# ---------- the dates; the expected kept set ----------
DATES=()
for ((i = 0; i < DAYS; i++)); do DATES[i]=$(date -u -d "2025-01-01 00:00:00 UTC + $i days" +%F); done
# expected_kept WITH_OLDEST: the dates kept by restic's rules (newest first; per rule, the newest snapshot of
# each of the last N buckets); WITH_OLDEST=1 adds restic >= 0.16's (and sopvault's) "oldest" rule.
expected_kept() {
  local with_oldest=$1 i n=0 m=0 lastm="" mo keep
  for ((i = DAYS - 1; i >= 0; i--)); do
    keep=0
    if [ $n -lt "$KEEP_DAILY" ]; then keep=1; n=$((n + 1)); fi # every day has exactly one snapshot
    mo=${DATES[i]:0:7}
    if [ $m -lt "$KEEP_MONTHLY" ] && [ "$mo" != "$lastm" ]; then keep=1; m=$((m + 1)); lastm=$mo; fi
    if [ "$with_oldest" = 1 ] && [ $i = 0 ] && { [ $n -lt "$KEEP_DAILY" ] || [ $m -lt "$KEEP_MONTHLY" ]; }; then
      keep=1
    fi
    [ $keep = 0 ] || printf '%s\n' "${DATES[i]}"
  done | sort
}
expected_kept 1 >"$WORK/expected-kept-sopvault.txt"
expected_kept 0 >"$WORK/expected-kept-restic.txt"
log "expected to keep: sopvault $(wc -l <"$WORK/expected-kept-sopvault.txt"), restic 0.14 $(wc -l <"$WORK/expected-kept-restic.txt") of $DAYS"

# ---------- import ----------
log "importing $DAYS daily snapshots into each repository (not the measured figure)"
SV_IMPORT=0 RS_IMPORT=0 # nanoseconds
now_ns() { date +%s%N; }
for ((i = 0; i < DAYS; i++)); do
  f=$(dump_file $i)
  d=${DATES[i]}
  cat "$f" >/dev/null # into the page cache, untimed, so both tools read it from memory
  t0=$(now_ns)
  # shellcheck disable=SC2016 # the inner shell expands $1 $2 $3
  run sopvault "snapshot of day $i ($d, $(basename "$f"))" \
    bash -o pipefail -c 'cat "$1" | "$2" snapshot -q --source db --stdin db.sql --time "$3"' _ \
    "$f" "$SV" "${d}T02:00:00+07:00"
  t1=$(now_ns)
  # shellcheck disable=SC2016
  run restic "backup of day $i ($d, $(basename "$f"))" \
    bash -o pipefail -c 'cat "$1" | TZ="$2" restic backup -q --stdin --stdin-filename db.sql --host bench --time "$3"' _ \
    "$f" "$RESTIC_TZ" "$d 02:00:00"
  t2=$(now_ns)
  SV_IMPORT=$((SV_IMPORT + t1 - t0))
  RS_IMPORT=$((RS_IMPORT + t2 - t1))
  if [ $(((i + 1) % 30)) = 0 ] || [ $((i + 1)) = "$DAYS" ]; then
    log "imported $((i + 1))/$DAYS days (up to $d): sopvault $((SV_IMPORT / 1000000000)) s, restic $((RS_IMPORT / 1000000000)) s so far"
  fi
done
SV_IMPORT_S=$(awk -v n=$SV_IMPORT 'BEGIN { printf "%.0f", n / 1e9 }')
RS_IMPORT_S=$(awk -v n=$RS_IMPORT 'BEGIN { printf "%.0f", n / 1e9 }')

# ---------- state before ----------
sv_dates() { "$SV" snapshots --json | jq -r '.[].time[0:10]' | sort; }
rs_dates() { rs snapshots --json | jq -r '.[].time[0:10]' | sort; }
repo_bytes() { du -sb "$1" | cut -f1; }
sv_dates >"$WORK/sopvault-before.txt" || die "sopvault: snapshots --json failed"
rs_dates >"$WORK/restic-before.txt" || die "restic: snapshots --json failed"
SV_N0=$(wc -l <"$WORK/sopvault-before.txt")
RS_N0=$(wc -l <"$WORK/restic-before.txt")
[ "$SV_N0" = "$DAYS" ] || die "sopvault: expected $DAYS snapshots after the import, found $SV_N0"
[ "$RS_N0" = "$DAYS" ] || die "restic: expected $DAYS snapshots after the import, found $RS_N0"
[ "$(uniq <"$WORK/restic-before.txt" | wc -l)" = "$DAYS" ] \
  || die "restic: snapshots do not fall on $DAYS distinct days (time zone?): see $WORK/restic-before.txt"
cmp -s "$WORK/sopvault-before.txt" "$WORK/restic-before.txt" \
  || die "the two repositories' snapshot dates differ before the prune: diff $WORK/sopvault-before.txt $WORK/restic-before.txt"
SV_B0=$(repo_bytes "$SOPVAULT_REPO")
RS_B0=$(repo_bytes "$RESTIC_REPOSITORY")

# ---------- the measured runs ----------
# A prune changes the repository, so each is repeated REPEAT times from copies of the repository and its
# cache taken here; the table gives the median of each figure, every run is listed below it. The tools take
# turns, the order alternating between rounds, so background load on a shared machine spreads evenly.
mkdir -p "$WORK/saved" "$WORK/times"
log "saving copies of both repositories and caches for $REPEAT timed rounds"
for t in sopvault restic; do
  cp -a "$WORK/repo-$t" "$WORK/saved/repo-$t" || die "$t: copying the repository for the repeated runs failed"
  cp -a "$WORK/cache/$t" "$WORK/saved/cache-$t" || die "$t: copying the cache for the repeated runs failed"
done
restore_copy() { # TOOL: put back the repository and cache as they were before the first prune
  rm -rf --one-file-system -- "$WORK/repo-$1" "$WORK/cache/$1"
  cp -a "$WORK/saved/repo-$1" "$WORK/repo-$1" || die "$1: restoring the saved repository for another timed round failed"
  cp -a "$WORK/saved/cache-$1" "$WORK/cache/$1" || die "$1: restoring the saved cache for another timed round failed"
}
# timed TOOL ROUND CMD... : one run under /usr/bin/time; "wall user sys maxrss_kib" into WORK/times/TOOL.prune.ROUND.
timed() {
  local tool=$1 round=$2 rc=0 load
  shift 2
  sync
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  printf '%s\n' "$load" >>"$WORK/times/$tool.load"
  log "$tool: timed prune, round $round of $REPEAT (load average $load): $*"
  printf '\n### timed prune, round %s: %s\n' "$round" "$*" >>"$WORK/logs/$tool.log"
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/times/$tool.prune.$round" "$@" >"$WORK/logs/$tool-prune.out" 2>>"$WORK/logs/$tool.log" || rc=$?
  cat "$WORK/logs/$tool-prune.out" >>"$WORK/logs/$tool.log"
  if [ $rc != 0 ]; then
    tail -n 20 "$WORK/logs/$tool.log" >&2
    die "$tool: prune (--keep-daily $KEEP_DAILY --keep-monthly $KEEP_MONTHLY) failed with exit status $rc in round $round (log: $WORK/logs/$tool.log)"
  fi
  log "$tool: wall/user/sys s, peak RSS KiB: $(tail -n 1 "$WORK/times/$tool.prune.$round")"
}
# The floor both runs pay: opening the repository (the password's KDF) and nothing else.
floor() {
  local tool=$1 round=$2
  shift 2
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/times/$tool.floor.$round" "$@" >>"$WORK/logs/$tool.log" 2>&1 \
    || die "$tool: opening the repository ($*) failed (log: $WORK/logs/$tool.log)"
}
SV_PRUNE=("$SV" prune --keep-daily "$KEEP_DAILY" --keep-monthly "$KEEP_MONTHLY" --json)
RS_PRUNE=(env "TZ=$RESTIC_TZ" restic forget --prune --keep-daily "$KEEP_DAILY" --keep-monthly "$KEEP_MONTHLY")
for ((r = 1; r <= REPEAT; r++)); do
  if [ "$r" -gt 1 ]; then restore_copy sopvault; restore_copy restic; fi
  floor sopvault "$r" "$SV" key list
  floor restic "$r" env TZ=$RESTIC_TZ restic cat config
  if [ $((r % 2)) = 1 ]; then
    timed sopvault "$r" "${SV_PRUNE[@]}"
    timed restic "$r" "${RS_PRUNE[@]}"
  else
    timed restic "$r" "${RS_PRUNE[@]}"
    timed sopvault "$r" "${SV_PRUNE[@]}"
  fi
done
rm -rf --one-file-system -- "$WORK/saved"

# ---------- state after ----------
sv_dates >"$WORK/sopvault-after.txt" || die "sopvault: snapshots --json failed after the prune"
rs_dates >"$WORK/restic-after.txt" || die "restic: snapshots --json failed after the prune"
SV_N1=$(wc -l <"$WORK/sopvault-after.txt")
RS_N1=$(wc -l <"$WORK/restic-after.txt")
SV_B1=$(repo_bytes "$SOPVAULT_REPO")
RS_B1=$(repo_bytes "$RESTIC_REPOSITORY")

CHECK_SV=ok CHECK_RS=ok
log "sopvault: check"
"$SV" check >>"$WORK/logs/sopvault.log" 2>&1 || { CHECK_SV="FAILED ($?)"; log "sopvault: check after the prune FAILED (log: $WORK/logs/sopvault.log)"; }
log "restic: check"
rs check >>"$WORK/logs/restic.log" 2>&1 || { CHECK_RS="FAILED ($?)"; log "restic: check after the prune FAILED (log: $WORK/logs/restic.log)"; }

# Every kept snapshot must still give back its dump byte for byte (check alone reads no data).
day_index() { echo $((($(date -u -d "$1 00:00:00 UTC" +%s) - $(date -u -d "2025-01-01 00:00:00 UTC" +%s)) / 86400)); }
verify_kept() { # TOOL IDS_FILE: lines "ID DATE"
  local tool=$1 n=0 bad=0 id d f
  while read -r id d <&3; do
    f=$(dump_file "$(day_index "$d")")
    if [ "$tool" = sopvault ]; then
      "$SV" cat "$id" db.sql 2>>"$WORK/logs/$tool.log" | cmp -s - "$f" || { bad=$((bad + 1)); log "$tool: snapshot $id ($d) does not give back $f"; }
    else
      rs dump "$id" /db.sql 2>>"$WORK/logs/$tool.log" | cmp -s - "$f" || { bad=$((bad + 1)); log "$tool: snapshot $id ($d) does not give back $f"; }
    fi
    n=$((n + 1))
  done 3<"$2"
  if [ $bad = 0 ]; then printf 'ok' ; else printf '%d of %d FAILED' "$bad" "$n"; fi
}
log "sopvault, restic: reading back every kept snapshot (cat / dump, compared with the corpus)"
"$SV" snapshots --json | jq -r '.[] | "\(.id) \(.time[0:10])"' >"$WORK/sopvault-kept-ids.txt" || die "sopvault: snapshots --json failed"
rs snapshots --json | jq -r '.[] | "\(.id) \(.time[0:10])"' >"$WORK/restic-kept-ids.txt" || die "restic: snapshots --json failed"
READ_SV=$(verify_kept sopvault "$WORK/sopvault-kept-ids.txt")
READ_RS=$(verify_kept restic "$WORK/restic-kept-ids.txt")

# ---------- kept snapshots: each other, and the expected sets ----------
NOTES=()
if ! cmp -s "$WORK/sopvault-after.txt" "$WORK/restic-after.txt"; then
  NOTES+=("**The kept snapshots differ** (sopvault $SV_N1, restic $RS_N1): only sopvault: $(comm -23 "$WORK/sopvault-after.txt" "$WORK/restic-after.txt" | paste -sd' ' -); only restic: $(comm -13 "$WORK/sopvault-after.txt" "$WORK/restic-after.txt" | paste -sd' ' -).")
fi
cmp -s "$WORK/sopvault-after.txt" "$WORK/expected-kept-sopvault.txt" \
  || NOTES+=("**sopvault kept other dates than expected**: $(diff "$WORK/expected-kept-sopvault.txt" "$WORK/sopvault-after.txt" | grep '^[<>]' | paste -sd' ' -) (< expected only, > sopvault only).")
cmp -s "$WORK/restic-after.txt" "$WORK/expected-kept-restic.txt" \
  || NOTES+=("**restic kept other dates than expected**: $(diff "$WORK/expected-kept-restic.txt" "$WORK/restic-after.txt" | grep '^[<>]' | paste -sd' ' -) (< expected only, > restic only).")
if ! cmp -s "$WORK/expected-kept-sopvault.txt" "$WORK/expected-kept-restic.txt"; then
  NOTES+=("This policy does not use up every count, so sopvault (like restic >= 0.16) also keeps the oldest snapshot, which restic 0.14 does not: the sets are expected to differ by that one snapshot.")
fi
[ "$CHECK_SV" = ok ] || NOTES+=("**sopvault check failed after the prune** (see $WORK/logs/sopvault.log).")
[ "$CHECK_RS" = ok ] || NOTES+=("**restic check failed after the prune** (see $WORK/logs/restic.log).")
[ "$READ_SV" = ok ] || NOTES+=("**sopvault: kept snapshots no longer give back their dumps: $READ_SV** (see the log lines above).")
[ "$READ_RS" = ok ] || NOTES+=("**restic: kept snapshots no longer give back their dumps: $READ_RS** (see the log lines above).")

# ---------- the table ----------
# med TOOL KIND FIELD: the median over the rounds (FIELD 1 wall, 2 user, 3 sys, 4 peak RSS KiB, cpu = 2 + 3)
med() {
  local r
  for ((r = 1; r <= REPEAT; r++)); do
    tail -n 1 "$WORK/times/$1.$2.$r" | awk -v f="$3" '{ print (f == "cpu") ? $2 + $3 : $f }'
  done | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# runs TOOL KIND: every round, "wall/cpu s, RSS MiB" joined by "; "
runs() {
  local r
  for ((r = 1; r <= REPEAT; r++)); do
    tail -n 1 "$WORK/times/$1.$2.$r" | awk '{ printf "%.2f/%.2f s %.1f MiB\n", $1, $2 + $3, $4 / 1024 }'
  done | paste -sd';' - | sed 's/;/; /g'
}
SV_WALL=$(med sopvault prune 1) SV_CPU=$(med sopvault prune cpu) SV_RSS=$(med sopvault prune 4)
RS_WALL=$(med restic prune 1) RS_CPU=$(med restic prune cpu) RS_RSS=$(med restic prune 4)
SV_PACKS=$(jq -r '.packs | "packs: \(.total) in all, \(.delete) deleted, \(.repack) repacked (\(.repack_live_bytes) live bytes copied), \(.keep) kept; \(.freed_bytes) bytes freed"' "$WORK/logs/sopvault-prune.out" 2>/dev/null || echo "packs: (no JSON)")
RS_PACKS=$(grep -E '^(to repack|this removes|this frees|to delete|total prune|remaining|unused size after)' "$WORK/logs/restic-prune.out" | sed 's/  */ /g' | paste -sd';' - || true)
f1() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }
f2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
mib() { awk -v x="$1" 'BEGIN { printf "%.1f", x / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
MD=$WORK/prune-results.md
{
  printf '## Prune: %d daily snapshots down to --keep-daily %d --keep-monthly %d\n\n' "$DAYS" "$KEEP_DAILY" "$KEEP_MONTHLY"
  printf '%s\n' "$SV_VERSION ($SV_COMMIT) vs $RESTIC_VERSION (repository version 2, compression auto);" \
    "$(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ); data: $CORPUS/pgdump, day i = day-((i % 30) + 1).sql, piped on stdin," \
    "at 2025-01-01 02:00 +07:00 + i days (restic run with TZ=$RESTIC_TZ)." ""
  printf '| tool | snapshots before | snapshots after | prune wall s | CPU s (user+sys) | peak RSS MiB | repo size before MiB | repo size after MiB | check after | kept snapshots read back |\n'
  printf '|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n'
  printf '| sopvault | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$SV_N0" "$SV_N1" "$(f2 "$SV_WALL")" "$(f2 "$SV_CPU")" \
    "$(f1 "$(awk -v k="$SV_RSS" 'BEGIN { print k / 1024 }')")" "$(mib "$SV_B0")" "$(mib "$SV_B1")" "$CHECK_SV" "$READ_SV"
  printf '| restic | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$RS_N0" "$RS_N1" "$(f2 "$RS_WALL")" "$(f2 "$RS_CPU")" \
    "$(f1 "$(awk -v k="$RS_RSS" 'BEGIN { print k / 1024 }')")" "$(mib "$RS_B0")" "$(mib "$RS_B1")" "$CHECK_RS" "$READ_RS"
  printf '| sopvault/restic | %s | %s | %s | %s | %s | %s | %s | | |\n' "$(ratio "$SV_N0" "$RS_N0")" "$(ratio "$SV_N1" "$RS_N1")" \
    "$(ratio "$SV_WALL" "$RS_WALL")" "$(ratio "$SV_CPU" "$RS_CPU")" "$(ratio "$SV_RSS" "$RS_RSS")" \
    "$(ratio "$SV_B0" "$RS_B0")" "$(ratio "$SV_B1" "$RS_B1")"
  printf '\n'
  printf -- '- Kept: sopvault %s, restic %s (expected %s: the newest %s days and the newest snapshot of each of the last %s months).\n' \
    "$SV_N1" "$RS_N1" "$(wc -l <"$WORK/expected-kept-sopvault.txt")" "$KEEP_DAILY" "$KEEP_MONTHLY"
  printf -- '- Repository sizes (du -sb): sopvault %s -> %s bytes, restic %s -> %s bytes.\n' "$SV_B0" "$SV_B1" "$RS_B0" "$RS_B1"
  printf -- '- sopvault %s.\n' "$SV_PACKS"
  printf -- '- restic: %s.\n' "${RS_PACKS:-(no summary lines found)}"
  printf -- '- Every timed round (wall/CPU s, peak RSS), medians in the table: sopvault %s; restic %s.\n' \
    "$(runs sopvault prune)" "$(runs restic prune)"
  printf -- '- Floor, opening the repository and nothing else (sopvault key list; restic cat config), median of %s: sopvault %s s, %s MiB; restic %s s, %s MiB. The key derivation (Argon2id 64 MiB; scrypt) sets most of both peaks.\n' \
    "$REPEAT" "$(f2 "$(med sopvault floor 1)")" "$(f1 "$(awk -v k="$(med sopvault floor 4)" 'BEGIN { print k / 1024 }')")" \
    "$(f2 "$(med restic floor 1)")" "$(f1 "$(awk -v k="$(med restic floor 4)" 'BEGIN { print k / 1024 }')")"
  printf -- '- Load average at the start of the timed runs: sopvault %s; restic %s.\n' \
    "$(paste -sd'|' "$WORK/times/sopvault.load" | sed 's/|/; /g')" "$(paste -sd'|' "$WORK/times/restic.load" | sed 's/|/; /g')"
  printf -- '- Import (not measured above): sopvault %s s, restic %s s for %s snapshots each (%s bytes of dumps per tool).\n' \
    "$SV_IMPORT_S" "$RS_IMPORT_S" "$DAYS" \
    "$(for ((i = 0; i < DAYS; i++)); do stat -c %s "$(dump_file $i)"; done | awk '{ s += $1 } END { printf "%.0f", s }')"
  for n in "${NOTES[@]+"${NOTES[@]}"}"; do printf -- '- %s\n' "$n"; done
} >"$MD"
cat "$MD"
log "done in $(($(date +%s) - T_START)) s; table in $MD, logs in $WORK/logs"
for n in "${NOTES[@]+"${NOTES[@]}"}"; do case $n in '**'*) exit 1 ;; esac; done
