#!/usr/bin/env bash
# The test command: the whole workspace's tests, once on SQLite and once on PostgreSQL.
# Run from anywhere; extra arguments go to both `cargo test` runs.
#
# The test harnesses pick the backend from REFBRIDGE_TEST_DATABASE (sqlite | postgres) and
# give every test its own fresh database (refbridge_storage::test_util). For the PostgreSQL
# half, REFBRIDGE_TEST_POSTGRES_URL names an admin URL; when it is not given, a throwaway
# PostgreSQL 15 is started on loopback (scripts/start-postgres.sh) and stopped at the end.
# The `s3` blob backend is tested against a throwaway S3-compatible server on loopback
# (scripts/start-s3.sh: moto, pinned, from PyPI), started here and stopped at the end.
# The tests are compiled once: the second run reuses the binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/start-postgres.sh

started=""
s3_pid=""
cleanup() {
    if [[ -n "$started" ]]; then refbridge_pg_stop "$started"; fi
    if [[ -n "$s3_pid" ]]; then scripts/start-s3.sh stop "$s3_pid"; fi
}
trap cleanup EXIT INT TERM

if [[ -z "${REFBRIDGE_TEST_POSTGRES_URL:-}" ]]; then
    refbridge_pg_start
    started="$REFBRIDGE_PG_DIR"
fi

if [[ -z "${REFBRIDGE_TEST_S3_ENDPOINT:-}" ]]; then
    eval "$(scripts/start-s3.sh)"
    s3_pid="$REFBRIDGE_TEST_S3_PID"
fi

# The console's browser tests: chromium, chromium-driver and axe-core.
eval "$(scripts/browser-deps.sh)"
# The webhook tests' receiver: Python with the PyPI standardwebhooks package.
eval "$(scripts/webhook-deps.sh)"
# promtool, which checks the shipped alert rules.
eval "$(scripts/metrics-deps.sh)"

t0=$SECONDS
echo "== tests on SQLite"
REFBRIDGE_TEST_DATABASE=sqlite cargo test --workspace --locked "$@"
t1=$SECONDS
echo "== tests on PostgreSQL"
REFBRIDGE_TEST_DATABASE=postgres cargo test --workspace --locked "$@"
t2=$SECONDS

echo "== multi-process chaos on PostgreSQL (short form; scripts/chaos-postgres.sh runs 500)"
CHAOS_PROFILE=debug CHAOS_APPROVALS="${CHAOS_APPROVALS:-60}" scripts/chaos-postgres.sh
t3=$SECONDS

echo "== recovery after a killed worker, on both backends"
scripts/chaos-recovery.sh
t4=$SECONDS

if [[ -z "$started" ]] && command -v psql >/dev/null 2>&1; then
    # A server we were given: drop the per-test databases (templates are kept for next time).
    psql -qAt "$REFBRIDGE_TEST_POSTGRES_URL" -c \
        "SELECT datname FROM pg_database WHERE datname LIKE 'refbridge\_t\_%'" |
        while read -r db; do
            psql -q "$REFBRIDGE_TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true
        done
fi
echo "== green: SQLite (with the build) $((t1 - t0)) s, PostgreSQL $((t2 - t1)) s, chaos $((t3 - t2)) s, recovery $((t4 - t3)) s"
