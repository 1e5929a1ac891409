#!/usr/bin/env bash
# Benchmark: approvals per second end to end (the queued sends drained by `refbridge worker`
# processes against the ACCloud simulator, faults off), with 1, 2 and 4 worker processes on
# PostgreSQL and one on SQLite. Release build; BENCH_APPROVALS (default 300) per run.
# Prints one `bench-workers:` line per run. The simulator and the API run in the test process,
# on the same machine as the workers and the database.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/start-postgres.sh
trap 'refbridge_pg_stop' EXIT INT TERM
unset REFBRIDGE_TEST_POSTGRES_URL
REFBRIDGE_PG_DURABLE=1 refbridge_pg_start
export BENCH_APPROVALS="${BENCH_APPROVALS:-300}"
cargo test --release --locked -p refbridge-cli --test e2e --no-run
run() {
    BENCH_WORKERS="$2" REFBRIDGE_TEST_DATABASE="$1" cargo test --release --locked -q -p refbridge-cli \
        --test e2e multiprocess::bench -- --ignored --nocapture --test-threads 1 2>&1 | grep '^bench-workers:'
}
run sqlite 1
for w in 1 2 4; do run postgres "$w"; done
