#!/usr/bin/env bash
# The multi-process chaos test on PostgreSQL: three `refbridge worker` processes, 500 approvals
# with mixed ambiguous faults, workers SIGKILLed and restarted at random, the database
# restarted once; every referral must end sent, exactly once, within the shared rate budget.
#
#   scripts/chaos-postgres.sh              (CHAOS_APPROVALS, CHAOS_SEED, CHAOS_MAX_RPS override)
#
# Starts its own throwaway PostgreSQL (scripts/start-postgres.sh), so that it can restart it.
# Builds in release unless CHAOS_PROFILE=debug (the short form in scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/start-postgres.sh
trap 'refbridge_pg_stop' EXIT INT TERM
unset REFBRIDGE_TEST_POSTGRES_URL
refbridge_pg_start
profile=(--release)
if [[ "${CHAOS_PROFILE:-release}" == debug ]]; then profile=(); fi
CHAOS_APPROVALS="${CHAOS_APPROVALS:-500}" REFBRIDGE_TEST_DATABASE=postgres \
    cargo test "${profile[@]}" --locked -p refbridge-cli --test e2e multiprocess::worker_processes \
    -- --ignored --nocapture --test-threads 1
