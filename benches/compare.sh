#!/usr/bin/env bash
# compare.sh — sopvault against its peers (restic, borg, bupstash; rustic if installed) on the same data,
# in one run, with one table at the end.
#
# Workload, per tool, each in its own fresh repository under WORK:
#   1. the pg_dump series piped on standard input: day 1, then every later day up to DAYS;
#   2. the WordPress tree of each day, staged at one stable path (rsync -a --delete, not timed) and backed up;
#   3. restore of the last dump and the last tree, verified byte for byte against the corpus (cmp, diff -r),
#      in RESTORE_ROUNDS rounds (default: one per tool) in a balanced order (a Williams design: each tool
#      restores first once and, for an even number of tools, right after each other tool once); the table
#      takes the medians;
#   4. a full data check (bupstash has none: n/a);
#   plus FIRST_EXTRA (default 2) more first snapshots of day 1 into scratch repositories, for a median;
#   plus the passphrase KDF: a listing command on an empty twin of the repository, 3 times at the start and
#   once a day in the rotation; the median is the KDF row.
# Keys: restic, borg and rustic open their repositories with a passphrase (their KDF is in every step);
# bupstash with a key file, and sopvault, like it, with a machine secret (key add --secret-file) added after
# init (so neither pays a KDF in the timed steps); sopvault's KDF row times its passphrase.
# Within a day the tools take turns, the order rotating by day, so background load and cache effects spread
# evenly; each input is read once (untimed) before the tools see it, so every tool reads it from the page cache.
# Every step runs under /usr/bin/time -f '%e %U %S %M' (wall, user, sys, peak RSS KiB).
#
# Usage:   benches/compare.sh [--quick] [--days N] [--tools sopvault,restic,borg,bupstash,rustic]
# Env:     CORPUS (default: ../corpus next to the repository; built with ../shared/corpus/make-corpus.sh if its
#          MANIFEST.txt is missing, which needs root), PEERS (default ../peers: bupstash is cargo-installed there),
#          WORK (default /tmp/sopvault-compare; wiped at start), DAYS (default 30; --quick = 5),
#          RESTORE_ROUNDS (default: the number of tools).
# Output:  the Markdown table on stdout and in WORK/results.md; raw numbers in WORK/results.json; every tool's
#          output in WORK/logs/TOOL.log; progress on stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PARENT=$(dirname "$ROOT")
CMDLINE=$(printf '%q ' "$0" "$@")
CMDLINE=${CMDLINE% }
T_START=$(date +%s)

log() { printf '[%s +%5ss] %s\n' "$(date +%H:%M:%S)" "$(($(date +%s) - T_START))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

# ---------- arguments ----------
ALL_TOOLS=(sopvault restic borg bupstash rustic)
TOOLS_ARG=""
DAYS=${DAYS:-30}
while [ $# -gt 0 ]; do
  case $1 in
    --quick) DAYS=5 ;;
    --days) [ $# -ge 2 ] || die "--days needs a number"; DAYS=$2; shift ;;
    --days=*) DAYS=${1#--days=} ;;
    --tools) [ $# -ge 2 ] || die "--tools needs a list"; TOOLS_ARG=$2; shift ;;
    --tools=*) TOOLS_ARG=${1#--tools=} ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
[[ $DAYS =~ ^[1-9][0-9]*$ ]] || die "DAYS must be a positive integer, got '$DAYS'"

CORPUS=${CORPUS:-$PARENT/corpus}
PEERS=${PEERS:-$PARENT/peers}
WORK=${WORK:-/tmp/sopvault-compare}
MAKE_CORPUS=$PARENT/shared/corpus/make-corpus.sh

TOOLS=()
if [ -n "$TOOLS_ARG" ]; then
  IFS=, read -r -a req <<<"$TOOLS_ARG"
  for t in "${req[@]}"; do
    [ -n "$t" ] || continue
    case " ${ALL_TOOLS[*]} " in *" $t "*) ;; *) die "unknown tool '$t' (known: ${ALL_TOOLS[*]})" ;; esac
    case " ${TOOLS[*]-} " in *" $t "*) ;; *) TOOLS+=("$t") ;; esac
  done
  [ ${#TOOLS[@]} -gt 0 ] || die "--tools selects no tool"
else
  TOOLS=(sopvault restic borg bupstash)
  command -v rustic >/dev/null 2>&1 && TOOLS+=(rustic)
fi
has_tool() { case " ${TOOLS[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
RESTORE_ROUNDS=${RESTORE_ROUNDS:-${#TOOLS[@]}}
[[ $RESTORE_ROUNDS =~ ^[1-9][0-9]*$ ]] || die "RESTORE_ROUNDS must be a positive integer, got '$RESTORE_ROUNDS'"

# ---------- paths must not collide ----------
abspath() { realpath -m -- "$1"; }
CORPUS=$(abspath "$CORPUS"); PEERS=$(abspath "$PEERS"); WORK=$(abspath "$WORK")
inside() { case "$1/" in "$2"/*) return 0 ;; *) return 1 ;; esac; }
inside "$CORPUS" "$ROOT" && die "CORPUS=$CORPUS is inside the repository $ROOT; keep it outside"
inside "$PEERS" "$ROOT" && die "PEERS=$PEERS is inside the repository $ROOT; keep it outside"
case "$WORK" in /|/tmp|/work|/root|/home|"$HOME") die "refusing WORK=$WORK" ;; esac
[[ $WORK =~ [[:space:]] ]] && die "WORK must not contain white space (borg's BORG_PASSCOMMAND is split on it)"
inside "$ROOT" "$WORK" && die "WORK=$WORK contains the repository $ROOT"
inside "$WORK" "$ROOT" && die "WORK=$WORK is inside the repository $ROOT"
inside "$CORPUS" "$WORK" && die "WORK=$WORK contains the corpus $CORPUS"
inside "$WORK" "$CORPUS" && die "WORK=$WORK is inside the corpus $CORPUS"

# ---------- prerequisites ----------
APT_UPDATED=0
apt_install() {
  [ "$(id -u)" = 0 ] || die "need root to apt-get install $*"
  if [ $APT_UPDATED = 0 ]; then apt-get update -qq >&2 || die "apt-get update failed"; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}
[ -x /usr/bin/time ] || { log "installing time"; apt_install time; }
command -v rsync >/dev/null 2>&1 || { log "installing rsync"; apt_install rsync; }
command -v python3 >/dev/null 2>&1 || { log "installing python3"; apt_install python3; }
if has_tool restic && ! command -v restic >/dev/null 2>&1; then log "installing restic"; apt_install restic; fi
if has_tool borg && ! command -v borg >/dev/null 2>&1; then log "installing borgbackup"; apt_install borgbackup; fi
BUPSTASH=$PEERS/bin/bupstash
if has_tool bupstash && [ ! -x "$BUPSTASH" ]; then
  log "building bupstash into $PEERS (cargo install, a few minutes)"
  apt_install libsodium-dev pkg-config
  mkdir -p "$PEERS"
  cargo install bupstash --locked --root "$PEERS" >&2 || die "bupstash: cargo install failed"
fi
if has_tool rustic && ! command -v rustic >/dev/null 2>&1; then
  die "rustic is not installed (it is optional; leave it out of --tools)"
fi

# ---------- corpus ----------
if [ ! -f "$CORPUS/MANIFEST.txt" ]; then
  [ -f "$MAKE_CORPUS" ] || die "no corpus at $CORPUS and no $MAKE_CORPUS to build one"
  [ "$(id -u)" = 0 ] || die "no corpus at $CORPUS; building it needs root: bash $MAKE_CORPUS $CORPUS"
  log "building the corpus at $CORPUS (about 3-4 minutes)"
  bash "$MAKE_CORPUS" "$CORPUS" >&2 || die "corpus build failed"
  [ -f "$CORPUS/MANIFEST.txt" ] || die "corpus build left no $CORPUS/MANIFEST.txt"
fi
two() { printf '%02d' "$1"; }
dump_file() {
  local f
  for f in "$CORPUS/pgdump/day-$(two "$1").sql" "$CORPUS/pgdump/day-$(two "$1").dump"; do
    [ -f "$f" ] && { printf '%s' "$f"; return 0; }
  done
  return 1
}
for ((d = 1; d <= DAYS; d++)); do
  dump_file "$d" >/dev/null || die "corpus has no pgdump/day-$(two "$d").sql (DAYS=$DAYS too large?)"
  [ -d "$CORPUS/web/day-$(two "$d")" ] || die "corpus has no web/day-$(two "$d")/ (DAYS=$DAYS too large?)"
done

# ---------- work dir ----------
MARKER=.sopvault-compare-workdir
if [ -e "$WORK" ]; then
  [ -d "$WORK" ] || die "WORK=$WORK exists and is not a directory"
  if [ -n "$(ls -A "$WORK")" ] && [ ! -f "$WORK/$MARKER" ]; then
    die "WORK=$WORK is not empty and was not made by compare.sh; refusing to wipe it"
  fi
  log "wiping $WORK"
  rm -rf --one-file-system -- "$WORK"
  WIPED_AT=$(date +%s)
fi
mkdir -p "$WORK"/{logs,secrets,cache,restore,bin,www}
touch "$WORK/$MARKER"
chmod 700 "$WORK/secrets"
STEPS=$WORK/steps.tsv
META=$WORK/meta.tsv
: >"$STEPS"
: >"$META"
meta() { local IFS=$'\t'; printf '%s\n' "$*" >>"$META"; }

# ---------- sopvault build ----------
log "building sopvault (cargo build --release)"
built=0
for attempt in 1 2 3; do
  if (cd "$ROOT" && cargo build --release >&2); then built=1; break; fi
  # src/ may be caught mid-edit by the engineer working on it; give it a moment.
  log "sopvault: cargo build --release failed (attempt $attempt of 3)"
  [ $attempt = 3 ] || sleep 30
done
[ $built = 1 ] || die "sopvault: cargo build --release failed"
# A private copy: a rebuild during the run must not switch binaries between days.
cp "$ROOT/target/release/sopvault" "$WORK/bin/sopvault"
SV=$WORK/bin/sopvault

# ---------- environment: every repository, key, password and cache inside WORK ----------
unset SOPVAULT_PASSWORD_COMMAND SOPVAULT_NEW_PASSWORD_FILE RESTIC_PASSWORD RESTIC_PASSWORD_COMMAND \
  RESTIC_REPOSITORY_FILE BORG_PASSPHRASE BORG_PASSPHRASE_FD BORG_NEW_PASSPHRASE BORG_KEY_FILE \
  BUPSTASH_KEY_COMMAND BUPSTASH_REPOSITORY_COMMAND RUSTIC_PASSWORD RUSTIC_PASSWORD_COMMAND RUSTIC_NO_CACHE || true
(umask 077; for t in sopvault restic borg rustic; do head -c 32 /dev/urandom | base64 >"$WORK/secrets/$t.password"; done)
export SOPVAULT_REPO=$WORK/repo-sopvault SOPVAULT_PASSWORD_FILE=$WORK/secrets/sopvault.secret \
  SOPVAULT_CACHE_DIR=$WORK/cache/sopvault
export RESTIC_REPOSITORY=$WORK/repo-restic RESTIC_PASSWORD_FILE=$WORK/secrets/restic.password \
  RESTIC_CACHE_DIR=$WORK/cache/restic
export BORG_REPO=$WORK/repo-borg BORG_PASSCOMMAND="cat $WORK/secrets/borg.password" \
  BORG_BASE_DIR=$WORK/cache/borg BORG_DISPLAY_PASSPHRASE=no BORG_RELOCATED_REPO_ACCESS_IS_OK=no
export BUPSTASH_REPOSITORY=$WORK/repo-bupstash BUPSTASH_KEY=$WORK/secrets/bupstash.key \
  BUPSTASH_QUERY_CACHE=$WORK/cache/bupstash-query.sqlite3 BUPSTASH_SEND_LOG=$WORK/cache/bupstash-default.sendlog
export RUSTIC_REPOSITORY=$WORK/repo-rustic RUSTIC_PASSWORD_FILE=$WORK/secrets/rustic.password \
  RUSTIC_CACHE_DIR=$WORK/cache/rustic
BORG_COMPRESSION=zstd,3
repo_dir() { printf '%s/repo-%s' "$WORK" "$1"; }

# ---------- the timed step ----------
# step TOOL PHASE DAY BYTES STDIN STDOUT -- CMD...   (STDOUT '-' = the tool's log)
# Appends one line to steps.tsv; a failing command stops the whole run, naming tool and step.
LAST_WALL=0
step() {
  local tool=$1 phase=$2 day=$3 bytes=$4 in=$5 out=$6
  shift 7
  local logf=$WORK/logs/$tool.log tf=$WORK/logs/.time rc=0
  printf '\n### %s day %s: %s\n' "$phase" "$day" "$*" >>"$logf"
  sync
  if [ "$out" = - ]; then
    /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" <"$in" >>"$logf" 2>&1 || rc=$?
  else
    /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" <"$in" >"$out" 2>>"$logf" || rc=$?
  fi
  if [ $rc != 0 ]; then
    log "FAILED: $tool: $phase (day $day) exited with status $rc: $*"
    log "last lines of $logf:"
    tail -n 15 "$logf" | sed 's/^/    /' >&2
    die "$tool: $phase (day $day) failed"
  fi
  local wall user sys rss
  read -r wall user sys rss < <(tail -n 1 "$tf")
  [[ $wall =~ ^[0-9.]+$ && $rss =~ ^[0-9]+$ ]] || die "$tool: $phase: cannot parse /usr/bin/time output: $(tail -n 1 "$tf")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$phase" "$day" "$wall" "$user" "$sys" "$rss" "$bytes" >>"$STEPS"
  LAST_WALL=$wall
}
mbps() { awk -v b="$1" -v w="$2" 'BEGIN { if (w > 0) printf "%.1f MB/s", b / 1e6 / w; else printf "inf MB/s" }'; }

# ---------- per-tool commands ----------
tool_version() {
  case $1 in
    sopvault)
      local rev dirty
      rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
      dirty=$(GIT_OPTIONAL_LOCKS=0 git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | wc -l)
      printf '%s (git %s%s, binary sha256 %s)' "$("$SV" --version)" "$rev" \
        "$([ "$dirty" -gt 0 ] && echo " + $dirty uncommitted changed files")" "$(sha256sum "$SV" | cut -c1-12)" ;;
    restic) restic version ;;
    borg) borg --version ;;
    bupstash) "$BUPSTASH" version ;;
    rustic) rustic --version ;;
  esac
}

# sopvault opens its repositories with a machine secret (key add --secret-file) after init: see tool_init.
SV_PASSWORD=$WORK/secrets/sopvault.password
SV_SECRET=$WORK/secrets/sopvault.secret
sopvault_secret() {  # FILE: add a machine secret to $SOPVAULT_REPO (opened with the passphrase), write it to FILE
  SOPVAULT_PASSWORD_FILE=$SV_PASSWORD "$SV" key add --secret-file "$1" --label compare.sh \
    >>"$WORK/logs/sopvault.log" 2>&1 || die "sopvault: key add --secret-file failed"
}

tool_init() {
  local t=$1
  case $t in
    sopvault)
      # Created under its passphrase (timed, as the peers' init), then given a machine secret, the key
      # arrangement bupstash has: every later step opens the repository with the secret and pays no KDF.
      # The KDF row still times the passphrase (tool_kdf).
      step "$t" init 0 0 /dev/null - -- env SOPVAULT_PASSWORD_FILE="$SV_PASSWORD" "$SV" init
      sopvault_secret "$SV_SECRET" ;;
    restic) step "$t" init 0 0 /dev/null - -- restic init ;;
    borg) step "$t" init 0 0 /dev/null - -- borg init --encryption repokey-blake2 ;;
    bupstash)
      (umask 077; "$BUPSTASH" new-key -o "$BUPSTASH_KEY" >>"$WORK/logs/$t.log" 2>&1) || die "bupstash: new-key failed"
      step "$t" init 0 0 /dev/null - -- "$BUPSTASH" init ;;
    rustic) step "$t" init 0 0 /dev/null - -- rustic init ;;
  esac
}

# The KDF is measured by a listing command on an empty twin of each repository, once per day in the tools'
# rotation (plus 3 times at the start), so that it sees the same load as the daily runs; the figure is the
# median. restic calibrates its scrypt cost when it creates a key, so its twin (like sopvault's) is a copy of the
# freshly created, still empty repository, with the same key; borg's twin is a repository of its own (a copy
# would share the repository id, which borg's cache and security checks refuse; its PBKDF2 cost is fixed).
kdf_twin_prepare() {
  local t=$1 twin=$WORK/kdf-$1
  case $t in
    sopvault|restic|rustic) cp -a -- "$(repo_dir "$t")" "$twin" ;;
    borg) BORG_REPO=$twin borg init --encryption repokey-blake2 >>"$WORK/logs/$t.log" 2>&1 ||
      die "borg: init of the KDF twin repository failed" ;;
    bupstash) return 1 ;;  # key file, no passphrase
  esac
}
tool_kdf() {  # TOOL DAY: a listing command on the empty twin repository
  local t=$1 day=$2 twin=$WORK/kdf-$1 cache=$WORK/cache/kdf-$1
  case $t in
    sopvault) step "$t" kdf "$day" 0 /dev/null - -- env SOPVAULT_REPO="$twin" SOPVAULT_CACHE_DIR="$cache" \
      SOPVAULT_PASSWORD_FILE="$SV_PASSWORD" "$SV" snapshots ;;
    restic) step "$t" kdf "$day" 0 /dev/null - -- env RESTIC_REPOSITORY="$twin" RESTIC_CACHE_DIR="$cache" restic snapshots ;;
    borg) step "$t" kdf "$day" 0 /dev/null - -- env BORG_REPO="$twin" borg list ;;
    rustic) step "$t" kdf "$day" 0 /dev/null - -- env RUSTIC_REPOSITORY="$twin" RUSTIC_CACHE_DIR="$cache" rustic snapshots ;;
    bupstash) return 1 ;;  # key file, no passphrase
  esac
}

BUP_DB_ID=""
BUP_WEB_ID=""
tool_dump() {  # TOOL DAY PHASE FILE BYTES
  local t=$1 day=$2 phase=$3 f=$4 bytes=$5 nn
  nn=$(two "$day")
  case $t in
    sopvault) step "$t" "$phase" "$day" "$bytes" "$f" - -- "$SV" snapshot --source db --stdin db.sql ;;
    restic) step "$t" "$phase" "$day" "$bytes" "$f" - -- restic backup --tag db --stdin --stdin-filename db.sql ;;
    borg) step "$t" "$phase" "$day" "$bytes" "$f" - -- \
      borg create --compression "$BORG_COMPRESSION" --stdin-name db.sql "::db-$nn" - ;;
    bupstash)
      step "$t" "$phase" "$day" "$bytes" "$f" "$WORK/logs/bupstash.id" -- \
        "$BUPSTASH" put -q --send-log "${BUP_SENDLOG_DIR:-$WORK/cache}/bupstash-db.sendlog" name=db.sql -
      BUP_DB_ID=$(tr -d '[:space:]' <"$WORK/logs/bupstash.id")
      [ -n "$BUP_DB_ID" ] || die "bupstash: put (dump day $day) printed no id" ;;
    # rustic reuses the parent of a stdin backup unless --force (it would store nothing new).
    rustic) step "$t" "$phase" "$day" "$bytes" "$f" - -- rustic backup --force --tag db --stdin-filename db.sql - ;;
  esac
}

tool_web() {  # TOOL DAY PHASE BYTES
  local t=$1 day=$2 phase=$3 bytes=$4 nn www=$WORK/www
  nn=$(two "$day")
  case $t in
    sopvault) step "$t" "$phase" "$day" "$bytes" /dev/null - -- "$SV" snapshot --source web "$www" ;;
    restic) step "$t" "$phase" "$day" "$bytes" /dev/null - -- restic backup --tag web "$www" ;;
    borg) step "$t" "$phase" "$day" "$bytes" /dev/null - -- borg create --compression "$BORG_COMPRESSION" "::web-$nn" "$www" ;;
    bupstash)
      step "$t" "$phase" "$day" "$bytes" /dev/null "$WORK/logs/bupstash.id" -- \
        "$BUPSTASH" put -q --send-log "$WORK/bupstash.sendlog" name=web "$www"
      BUP_WEB_ID=$(tr -d '[:space:]' <"$WORK/logs/bupstash.id")
      [ -n "$BUP_WEB_ID" ] || die "bupstash: put (web day $day) printed no id" ;;
    rustic) step "$t" "$phase" "$day" "$bytes" /dev/null - -- rustic backup --tag web "$www" ;;
  esac
}

tool_restore_dump() {  # TOOL DAY OUTFILE BYTES
  local t=$1 day=$2 out=$3 bytes=$4
  case $t in
    sopvault) step "$t" restore_dump "$day" "$bytes" /dev/null "$out" -- "$SV" cat db:latest db.sql ;;
    restic) step "$t" restore_dump "$day" "$bytes" /dev/null "$out" -- restic dump --tag db latest /db.sql ;;
    borg) step "$t" restore_dump "$day" "$bytes" /dev/null "$out" -- borg extract --stdout "::db-$(two "$day")" ;;
    bupstash) step "$t" restore_dump "$day" "$bytes" /dev/null "$out" -- "$BUPSTASH" get -q "id=$BUP_DB_ID" ;;
    rustic) step "$t" restore_dump "$day" "$bytes" /dev/null "$out" -- rustic dump --filter-tags db latest:db.sql ;;
  esac
}

tool_restore_tree() {  # TOOL DAY DIR BYTES; prints where the tree landed
  local t=$1 day=$2 dir=$3 bytes=$4
  mkdir -p "$dir"
  case $t in
    sopvault) step "$t" restore_tree "$day" "$bytes" /dev/null - -- "$SV" restore web:latest --target "$dir"
      RESTORED=$dir$WORK/www ;;
    restic) step "$t" restore_tree "$day" "$bytes" /dev/null - -- restic restore --tag web latest --target "$dir"
      RESTORED=$dir$WORK/www ;;
    borg) step "$t" restore_tree "$day" "$bytes" /dev/null - -- env -C "$dir" borg extract "::web-$(two "$day")"
      RESTORED=$dir$WORK/www ;;
    bupstash) step "$t" restore_tree "$day" "$bytes" /dev/null - -- \
      "$BUPSTASH" restore -q --ownership --into "$dir" "id=$BUP_WEB_ID"
      RESTORED=$dir ;;
    rustic) step "$t" restore_tree "$day" "$bytes" /dev/null - -- rustic restore --filter-tags web "latest:$WORK/www" "$dir"
      RESTORED=$dir ;;
  esac
}

tool_check() {
  local t=$1
  case $t in
    sopvault) step "$t" check 0 0 /dev/null - -- "$SV" check --read-data ;;
    restic) step "$t" check 0 0 /dev/null - -- restic check --read-data ;;
    borg) step "$t" check 0 0 /dev/null - -- borg check --verify-data ;;
    rustic) step "$t" check 0 0 /dev/null - -- rustic check --read-data ;;
    bupstash) return 1 ;;  # no full data check
  esac
}

# ---------- header facts ----------
tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }'; }
meta date "$(date -Iseconds)"
meta uname "$(uname -a)"
meta nproc "$(nproc)"
meta load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
meta mem "$(free -m | awk '/^Mem:/ { printf "%d MiB RAM", $2 }')"
meta cmdline "$CMDLINE"
meta days "$DAYS"
meta corpus "$CORPUS"
meta corpus_params "$(grep -m1 '^params:' "$CORPUS/MANIFEST.txt" 2>/dev/null | sed 's/^params: //' || true)"
meta work "$WORK"
meta work_fs "$(df -PT "$WORK" | awk 'NR == 2 { print $1 " (" $2 ")" }')"
meta tools "$(IFS=,; echo "${TOOLS[*]}")"
for t in "${TOOLS[@]}"; do meta version "$t" "$(tool_version "$t" | head -n 1)"; done
has_tool restic && meta note "restic: defaults (repository format 2, compression auto = zstd fast)"
has_tool borg && meta note "borg: init --encryption repokey-blake2, create --compression $BORG_COMPRESSION (a fair modern setting; borg's default is lz4), default chunker"
has_tool bupstash && meta note "bupstash: key file without passphrase (so no KDF), default compression zstd:3, one send log per job (db, web); restore --ownership"
has_tool rustic && meta note "rustic: defaults; stdin backups with --force (otherwise it silently reuses the parent)"
meta note "stdin: each tool reads the dump file directly on its standard input (no cat in the pipe)"

log "tools: ${TOOLS[*]}; days: $DAYS; corpus: $CORPUS; work: $WORK"
for t in "${TOOLS[@]}"; do log "  $t: $(tool_version "$t" | head -n 1)"; done

# ---------- init + KDF ----------
for t in "${TOOLS[@]}"; do
  tool_init "$t"
  if kdf_twin_prepare "$t"; then
    tool_kdf "$t" 0; k1=$LAST_WALL; tool_kdf "$t" 0; k2=$LAST_WALL; tool_kdf "$t" 0; k3=$LAST_WALL
    log "$t: init done; listing the empty repository (KDF): $k1 / $k2 / $k3 s"
  else
    log "$t: init done; no passphrase KDF"
  fi
done

if has_tool sopvault; then  # read the parameters from the binary: src/ changes while this script does not
  zlevel=$("$SV" init --help | grep -A3 -e '--compression' | grep -o '\[default: -\{0,1\}[0-9]*\]' | head -n 1 | tr -dc '0-9-' || true)
  kdf=$("$SV" key list --json 2>/dev/null | python3 -c '
import json, sys
a = [k for k in json.load(sys.stdin) if k["kind"] == "password"][0]["argon2id"]
print("Argon2id m=%s KiB t=%s p=%s" % (a["m_kib"], a["t"], a["p"]))' 2>/dev/null) || kdf="Argon2id parameters unknown"
  meta note "sopvault: the binary's defaults (init without options: zstd level ${zlevel:-?}; passphrase $kdf), built at the start of the run and copied to WORK/bin"
  meta note "sopvault: after init, a machine secret (key add --secret-file) opens the repository in every timed step, as bupstash's key file does (so no KDF); the KDF row times the passphrase on its own"
fi

# ---------- first dump: extra samples ----------
# A first snapshot is one noisy sample on a shared machine, so each tool also snapshots day 1 into FIRST_EXTRA
# scratch repositories of its own (created untimed, deleted after; tools taking turns); the first-dump row is
# the median over these samples and the day-1 snapshot of the series (phase dump1x; not in the totals).
FIRST_EXTRA=${FIRST_EXTRA:-2}
first_dump_sample() {  # TOOL
  local t=$1 scratch=$WORK/scratch-$1 f bytes
  f=$(dump_file 1)
  bytes=$(stat -c %s "$f")
  rm -rf -- "$scratch" "$scratch.cache"
  mkdir -p -- "$scratch.cache"
  (
    export SOPVAULT_REPO=$scratch RESTIC_REPOSITORY=$scratch BORG_REPO=$scratch BUPSTASH_REPOSITORY=$scratch \
      RUSTIC_REPOSITORY=$scratch BUPSTASH_QUERY_CACHE=$scratch.cache/query.sqlite3 BUP_SENDLOG_DIR=$scratch.cache
    case $t in
      sopvault) SOPVAULT_PASSWORD_FILE=$SV_PASSWORD "$SV" init && sopvault_secret "$scratch.cache/secret" &&
        export SOPVAULT_PASSWORD_FILE=$scratch.cache/secret ;;
      restic) restic init ;;
      borg) borg init --encryption repokey-blake2 ;;
      bupstash) "$BUPSTASH" init ;;
      rustic) rustic init ;;
    esac >>"$WORK/logs/$t.log" 2>&1 || die "$t: init of a scratch repository failed"
    cat "$f" >/dev/null
    tool_dump "$t" 1 dump1x "$f" "$bytes"
    log "first dump, extra sample: $(printf '%-9s' "$t") $(printf '%7.2f' "$LAST_WALL") s  $(mbps "$bytes" "$LAST_WALL")"
  )
  rm -rf -- "$scratch" "$scratch.cache"
}
NT=${#TOOLS[@]}
for ((r = 0; r < FIRST_EXTRA; r++)); do
  for ((i = 0; i < NT; i++)); do first_dump_sample "${TOOLS[$(((r + i) % NT))]}"; done
done

# ---------- the days ----------
DUMP_TOTAL=0
WEB_TOTAL=0
for ((d = 1; d <= DAYS; d++)); do
  nn=$(two "$d")
  order=()
  for ((i = 0; i < NT; i++)); do order+=("${TOOLS[$(((d - 1 + i) % NT))]}"); done

  f=$(dump_file "$d")
  bytes=$(stat -c %s "$f")
  DUMP_TOTAL=$((DUMP_TOTAL + bytes))
  cat "$f" >/dev/null  # warm the page cache: no tool pays for the first read
  phase=dumpN; [ "$d" = 1 ] && phase=dump1
  for t in "${order[@]}"; do
    tool_dump "$t" "$d" "$phase" "$f" "$bytes"
    log "day $nn/$(two "$DAYS") dump  $(printf '%-9s' "$t") $(printf '%7.2f' "$LAST_WALL") s  $(mbps "$bytes" "$LAST_WALL")"
  done

  rsync -a --delete "$CORPUS/web/day-$nn/" "$WORK/www/" || die "rsync staging of web/day-$nn failed"
  wbytes=$(tree_bytes "$WORK/www")
  WEB_TOTAL=$((WEB_TOTAL + wbytes))
  phase=webN; [ "$d" = 1 ] && phase=web1
  for t in "${order[@]}"; do
    tool_web "$t" "$d" "$phase" "$wbytes"
    log "day $nn/$(two "$DAYS") web   $(printf '%-9s' "$t") $(printf '%7.2f' "$LAST_WALL") s"
    if tool_kdf "$t" "$d"; then
      log "day $nn/$(two "$DAYS") KDF   $(printf '%-9s' "$t") $(printf '%7.2f' "$LAST_WALL") s (listing the empty twin repository)"
    fi
  done
done
meta input_summary "$DAYS dumps, $(awk -v b=$DUMP_TOTAL 'BEGIN { printf "%.1f MB", b / 1e6 }') in total; $DAYS web trees, $(awk -v b=$WEB_TOTAL 'BEGIN { printf "%.1f MB", b / 1e6 }') of file data in total (logical)"

for t in "${TOOLS[@]}"; do
  sz=$(du -sb "$(repo_dir "$t")" | cut -f1)
  meta size "$t" "$sz"
  log "$t: repository size after $DAYS days: $(awk -v b="$sz" 'BEGIN { printf "%.1f MB", b / 1e6 }')"
done

# ---------- restore of the last day, verified ----------
# ext4 without a journal (as on this VM) passes over inodes freed in the last 5 minutes when it allocates new
# ones, re-reading inode tables as it goes: a restore of a tree right after many files were deleted took 2-3x
# as long. So no restored tree is deleted before every tool has restored (they go at the end), and the
# restores wait until the wipe of the last run's WORK is 5 minutes old; otherwise whichever tool restores
# right after a deletion pays for it.
if [ -n "${WIPED_AT:-}" ]; then
  wait_s=$((WIPED_AT + 300 - $(date +%s)))
  if [ "$wait_s" -gt 0 ]; then
    log "waiting $wait_s s before the restores, until the wipe of the old WORK is 5 minutes old"
    sleep "$wait_s"
  fi
fi
last_dump=$(dump_file "$DAYS")
last_dump_bytes=$(stat -c %s "$last_dump")
last_tree=$CORPUS/web/day-$(two "$DAYS")
last_tree_bytes=$(tree_bytes "$last_tree")
# RESTORE_ROUNDS rounds; the table takes each tool's median. A restore runs right after the previous tool's
# (and its verification), and on this VM what one tool leaves behind can cost the next: a tool that peaked
# at 200 MiB returns that memory to the host, and the next one faults fresh pages back in (system time).
# A plain rotation always puts the same tool before each one, so the order is a Williams design instead:
# row r of a Latin square whose first row is 0, 1, n-1, 2, n-2, ... (each row that one plus r-1, mod n).
# Over n rounds each tool goes first once and, for an even n, follows every other tool exactly once.
williams_order() {  # N ROUND: prints the tool indices of ROUND (1-based)
  local n=$1 r=$2 j x
  for ((j = 0; j < n; j++)); do
    if ((j == 0)); then x=0
    elif ((j % 2)); then x=$(((j + 1) / 2))
    else x=$((n - j / 2)); fi
    printf '%s ' $(((x + r - 1) % n))
  done
}
# Restored dumps and trees all stay until the end (each round restores into fresh paths).
for ((round = 1; round <= RESTORE_ROUNDS; round++)); do
  for k in $(williams_order ${#TOOLS[@]} "$round"); do
    t=${TOOLS[$k]}
    out=$WORK/restore/$t-db-$round.sql
    tool_restore_dump "$t" "$DAYS" "$out" "$last_dump_bytes"
    cmp -- "$last_dump" "$out" >&2 || die "$t: restored dump of day $DAYS differs from $last_dump"
    log "round $round: $t: restore dump $(printf '%.2f' "$LAST_WALL") s, identical"

    dir=$WORK/restore/$t-tree-$round
    tool_restore_tree "$t" "$DAYS" "$dir" "$last_tree_bytes"
    [ -d "$RESTORED" ] || die "$t: restore of the tree left no $RESTORED"
    diff -r --no-dereference -- "$last_tree" "$RESTORED" >"$WORK/logs/$t.diff" 2>&1 ||
      { head -n 20 "$WORK/logs/$t.diff" >&2; die "$t: restored tree of day $DAYS differs from $last_tree (see $WORK/logs/$t.diff)"; }
    log "round $round: $t: restore tree $(printf '%.2f' "$LAST_WALL") s, identical"
  done
done

# ---------- full data check ----------
for t in "${TOOLS[@]}"; do
  if tool_check "$t"; then
    log "$t: full data check $(printf '%.2f' "$LAST_WALL") s"
  else
    log "$t: no full data check (n/a)"
  fi
done

# The restored dumps and trees, kept until every tool had restored (see above).
rm -rf -- "$WORK"/restore/*-tree-* "$WORK"/restore/*-db-*.sql
el=$(($(date +%s) - T_START))
meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
meta elapsed "$((el / 60)) min $((el % 60)) s (including the build and untimed staging)"
python3 "$HERE/compare_report.py" "$WORK" || die "compare_report.py failed"
log "done in $((el / 60)) min $((el % 60)) s; table in $WORK/results.md, raw numbers in $WORK/results.json"
