#!/usr/bin/env bash
# Builds sopvault and runs its main job on a local-directory repository:
# init, a snapshot holding a web tree *and* a database dump stream, a second
# (deduplicated) snapshot, a byte-for-byte verified restore, and a full check.
# Everything lives in one temporary directory (printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
BIN=$PWD/target/release/sopvault
WORK=${SOPVAULT_DEMO_DIR:-$(mktemp -d /tmp/sopvault-demo.XXXXXX)}
mkdir -p "$WORK"
export SOPVAULT_REPO=$WORK/vault
export SOPVAULT_PASSWORD_FILE=$WORK/password
export SOPVAULT_CACHE_DIR=$WORK/cache
(umask 077 && head -c 24 /dev/urandom | base64 > "$SOPVAULT_PASSWORD_FILE")

# A web tree: PHP-like files, uploads, an empty directory and a symlink.
WWW=$WORK/www/siakad
mkdir -p "$WWW/uploads/2026/11" "$WWW/cache" "$WWW/includes"
cp -a /usr/share/doc "$WWW/uploads/2026/11/docs"
for i in $(seq 1 200); do
  printf '<?php\n// page %d\nrequire "includes/config.php";\necho "hello %d";\n' "$i" "$i" > "$WWW/page$i.php"
done
printf '<?php\n$db = "siakad";\n' > "$WWW/includes/config.php"
ln -s includes/config.php "$WWW/config.php"

# A dump stream: a deterministic SQL generator standing in for pg_dump.
DUMP="$PWD/scripts/fake-dump.sh 300000"

say() { printf '\n== %s\n' "$*"; }
say "sopvault init"
"$BIN" init
say "first snapshot: a web tree and a dump stream in one snapshot"
"$BIN" snapshot --source siakad --stream siakad.sql="$DUMP" "$WWW"
say "second snapshot, one PHP file changed: almost nothing is added"
echo "// edited" >> "$WWW/page1.php"
"$BIN" snapshot --source siakad --stream siakad.sql="$DUMP" "$WWW"
say "sopvault snapshots"
"$BIN" snapshots
say "restore latest and compare byte for byte"
"$BIN" restore latest --target "$WORK/restore"
diff -r --no-dereference "$WWW" "$WORK/restore$WWW"
cmp <("$BIN" cat siakad:latest siakad.sql) <($DUMP)
echo "restore matches the source tree and the dump exactly"
say "sopvault check --read-data"
"$BIN" check --read-data
say "every repository file is named by its SHA-256 (verifiable without the key)"
bad=0
while IFS= read -r f; do
  [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$(basename "$f")" ] || { echo "MISMATCH $f"; bad=1; }
done < <(find "$SOPVAULT_REPO"/{config,keys,packs,index,snapshots} -type f)
[ $bad = 0 ] && echo "all names match"
printf '\ndemo OK; repository, sources and restore are in %s\n' "$WORK"
