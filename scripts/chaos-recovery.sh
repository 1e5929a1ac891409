#!/usr/bin/env bash
# Recovery from a killed worker, on SQLite and on PostgreSQL: the worker process holding sends
# is SIGKILLed (on SQLite restarted at once, as a supervisor would), and the time until each of
# its sends is claimed again is printed; each must move within 15 s (the lease is 10 s,
# renewed every third of it while a send runs).
#
#   scripts/chaos-recovery.sh          (RECOVERY_APPROVALS, RECOVERY_LEASE_SECS override)
#
# Starts its own throwaway PostgreSQL unless REFBRIDGE_TEST_POSTGRES_URL names one.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/start-postgres.sh
started=""
trap '[[ -n "$started" ]] && refbridge_pg_stop "$started"' EXIT INT TERM
if [[ -z "${REFBRIDGE_TEST_POSTGRES_URL:-}" ]]; then
    refbridge_pg_start
    started="$REFBRIDGE_PG_DIR"
fi
for db in sqlite postgres; do
    REFBRIDGE_TEST_DATABASE=$db cargo test --locked -p refbridge-cli --test e2e \
        multiprocess::the_sends_of_a_killed_worker -- --ignored --nocapture --test-threads 1 2>&1 |
        grep -E '^recovery|panicked|test result' || { echo "recovery on $db failed" >&2; exit 1; }
done
