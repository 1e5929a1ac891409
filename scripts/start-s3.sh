#!/usr/bin/env bash
# A throwaway S3-compatible server on loopback for the tests of the `s3` blob backend: moto's
# server mode (pinned, from PyPI, installed into target/s3-venv), in memory, with one bucket.
#
#   scripts/start-s3.sh            start one; prints `export` lines (eval them):
#                                  REFBRIDGE_TEST_S3_ENDPOINT, REFBRIDGE_TEST_S3_BUCKET,
#                                  REFBRIDGE_TEST_S3_PID
#   scripts/start-s3.sh stop PID   stop it
#
# moto accepts any credentials; the tests sign with fixed dummy keys.
set -euo pipefail
MOTO_VERSION="${MOTO_VERSION:-5.1.22}"
root="$(cd "$(dirname "$0")/.." && pwd)"
log() { echo "start-s3: $*" >&2; }

if [[ "${1:-}" == stop ]]; then
    pid="${2:?usage: start-s3.sh stop PID}"
    kill "$pid" 2>/dev/null || true
    exit 0
fi

venv="$root/target/s3-venv"
if [[ ! -x "$venv/bin/moto_server" ]] ||
    [[ "$("$venv/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null)" != "$MOTO_VERSION" ]]; then
    log "installing moto[server] $MOTO_VERSION into $venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
logfile="$root/target/s3-server.log"
nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 &
pid=$!
endpoint="http://127.0.0.1:$port"
# http: Python's standard library (no curl needed).
http() { python3 -c 'import sys, urllib.request as u; u.urlopen(u.Request(sys.argv[2], method=sys.argv[1]), timeout=5)' "$@"; }
for _ in $(seq 1 100); do
    if http GET "$endpoint/moto-api/" 2>/dev/null; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then log "moto_server exited: $(tail -5 "$logfile")"; exit 1; fi
    sleep 0.1
done
bucket="refbridge-test"
# moto does not check signatures: an unsigned PUT makes the bucket.
http PUT "$endpoint/$bucket" || { log "cannot create bucket $bucket at $endpoint"; exit 1; }
log "moto S3 on $endpoint (pid $pid), bucket $bucket"
echo "export REFBRIDGE_TEST_S3_ENDPOINT=$endpoint"
echo "export REFBRIDGE_TEST_S3_BUCKET=$bucket"
echo "export REFBRIDGE_TEST_S3_PID=$pid"
