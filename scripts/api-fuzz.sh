#!/usr/bin/env bash
# The OpenAPI document is the contract: schemathesis (`--checks all`) against a running
# `refbridge serve` on SQLite and then on PostgreSQL, each time on a throwaway data folder,
# loopback only, with the built-in ACCloud simulator. Exits nonzero on any failure.
#
#   scripts/api-fuzz.sh [sqlite] [postgres]     (both by default)
#
# Installs schemathesis (pinned) into a virtual environment under target/api-fuzz-venv,
# builds the `refbridge` binary (debug unless API_FUZZ_PROFILE=release), creates one token per
# role with `refbridge token create`, and runs every phase (examples, coverage, fuzzing,
# stateful) with the token of the role each route is for (intake for `/referral_request`,
# admin for `/v1/audit/…`, reviewer for the rest). Then a short pass with no token and one
# with the intake token on the other routes, so that 401 and 403 are checked as well.
#
#   API_FUZZ_MAX_EXAMPLES   cases per operation and phase (default 40)
#   API_FUZZ_SEED           schemathesis's seed (default: random; the run prints it)
#   API_FUZZ_WORKERS        concurrent schemathesis workers (default 1: with 2, schemathesis
#                           4.32 on CPython 3.11 sometimes fails inside itself, "AST constructor
#                           recursion depth mismatch")
#   API_FUZZ_PROFILE        debug (default) or release
#
# PostgreSQL is a throwaway server from scripts/start-postgres.sh (it runs as an unprivileged
# user when we are root; refbridge itself does not mind). Reports (JUnit XML, and the
# failures as a pytest file to replay) are left in target/api-fuzz/<backend>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
source scripts/start-postgres.sh

SCHEMATHESIS_VERSION=4.32.5
max_examples="${API_FUZZ_MAX_EXAMPLES:-40}"
workers="${API_FUZZ_WORKERS:-1}"
profile="${API_FUZZ_PROFILE:-debug}"
backends=("$@")
if ((${#backends[@]} == 0)); then backends=(sqlite postgres); fi

log() { echo "api-fuzz: $*" >&2; }

# ---- tools ----
venv="$root/target/api-fuzz-venv"
if [[ ! -x "$venv/bin/schemathesis" ]] ||
    [[ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != *"$SCHEMATHESIS_VERSION"* ]]; then
    log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
st="$venv/bin/schemathesis"

cargo_profile=()
bin="$root/target/debug/refbridge"
if [[ "$profile" == release ]]; then
    cargo_profile=(--release)
    bin="$root/target/release/refbridge"
fi
log "building refbridge ($profile)"
cargo build -q --locked "${cargo_profile[@]}" -p refbridge-cli --bin refbridge

# ---- clean-up of whatever we started ----
server_pid=""
pg_dir=""
work=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ -n "$pg_dir" ]]; then refbridge_pg_stop "$pg_dir" || true; fi
    if [[ -n "$work" ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# "cases failures" from schemathesis's closing summary, e.g. "670 generated, 21 found 21
# unique failures, 10 skipped" (no failures: no "unique failures").
counts() {
    python3 - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1], errors="replace").read()
generated = re.findall(r"(\d+) generated", text)
failures = re.findall(r"(\d+) unique failures?", text)
print(generated[-1] if generated else 0, failures[-1] if failures else 0)
EOF
}
summary=()
status=0

run_backend() {
    local backend="$1"
    local t0=$SECONDS
    work="$(mktemp -d "${TMPDIR:-/tmp}/refbridge-fuzz.XXXXXX")"
    local out="$root/target/api-fuzz/$backend"
    rm -rf "$out"
    mkdir -p "$out"

    local db_url
    case "$backend" in
        sqlite) db_url="sqlite://$work/refbridge.db" ;;
        postgres)
            unset REFBRIDGE_TEST_POSTGRES_URL
            refbridge_pg_start
            pg_dir="$REFBRIDGE_PG_DIR"
            psql -q "$REFBRIDGE_TEST_POSTGRES_URL" -c 'CREATE DATABASE refbridge_fuzz'
            db_url="${REFBRIDGE_TEST_POSTGRES_URL%/postgres}/refbridge_fuzz"
            ;;
        *) log "unknown backend $backend (sqlite | postgres)"; return 2 ;;
    esac

    local port
    port="$(free_port)"
    export REFBRIDGE_DATABASE_URL="$db_url"
    export REFBRIDGE_FILES_DIR="$work/files"
    export REFBRIDGE_LISTEN="127.0.0.1:$port"
    export REFBRIDGE_LOG__FORMAT=json REFBRIDGE_LOG__FILTER="warn"
    export REFBRIDGE_ACCLOUD__TARGET=simulator
    "$bin" migrate >"$out/migrate.log" 2>&1
    local intake reviewer admin
    intake="$("$bin" token create --name fuzz-intake --role intake 2>>"$out/server.log")"
    reviewer="$("$bin" token create --name fuzz-reviewer --role reviewer 2>>"$out/server.log")"
    admin="$("$bin" token create --name fuzz-admin --role admin 2>>"$out/server.log")"

    "$bin" serve >>"$out/server.log" 2>&1 &
    server_pid=$!
    local base="http://127.0.0.1:$port" i
    for i in $(seq 1 100); do
        if curl -sf "$base/healthz" >/dev/null 2>&1; then break; fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            log "refbridge serve exited"; cat "$out/server.log" >&2; return 1
        fi
        sleep 0.2
    done

    # What every run allows, then (for the main run) one token per role, chosen by the route.
    cat >"$work/checks.toml" <<EOF
# A reused Idempotency-Key with another body is a documented 422 (idempotency_key_mismatch),
# whatever the body: schemathesis reuses short generated keys.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", 401, 403, 404, 409, 422, 429]

# An approval, a change of terms or a resume is resolved against the referral (its form, the
# patient's plans, the configured mappings): schema-valid terms can still be a 400 naming
# what is missing for this referral.
[[operations]]
include-path-regex = "/approval"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", 400, 401, 403, 404, 409, 422, 429]

# A plan's rules across fields, which a schema cannot state: end_date not before start_date,
# conflict_behavior and its alias conflict_strategy alike.
[[operations]]
include-path = "/v1/patient-plans"
include-method = "PUT"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", 400, 401, 403, 404, 409, 422, 429]
EOF
    {
        echo 'headers = { Authorization = "Bearer ${FUZZ_REVIEWER}" }'
        cat "$work/checks.toml"
        echo '[[operations]]'
        echo 'include-path = "/referral_request"'
        echo 'headers = { Authorization = "Bearer ${FUZZ_INTAKE}" }'
        echo '[[operations]]'
        echo 'include-path-regex = "^/v1/audit/"'
        echo 'headers = { Authorization = "Bearer ${FUZZ_ADMIN}" }'
    } >"$work/roles.toml"
    local seed=()
    if [[ -n "${API_FUZZ_SEED:-}" ]]; then seed=(--seed "$API_FUZZ_SEED"); fi
    # NUL (\u0000) is refused in every JSON string (400), a rule the README states once rather
    # than each string schema of the document: not generated.
    local common=(--checks all --workers "$workers" --no-color --request-timeout 30
        --suppress-health-check all --generation-database none "${seed[@]}"
        --generation-allow-x00 false)

    log "$backend: schemathesis, every phase, $max_examples cases per operation, on $base"
    local rc=0
    # From the scratch folder: schemathesis keeps state in ./.schemathesis.
    pushd "$work" >/dev/null
    FUZZ_INTAKE="$intake" FUZZ_REVIEWER="$reviewer" FUZZ_ADMIN="$admin" \
        "$st" --config-file "$work/roles.toml" run "$base/openapi.json" \
        "${common[@]}" --max-examples "$max_examples" \
        --report junit,pytest --report-junit-path "$out/junit.xml" --report-dir "$out" \
        >"$out/schemathesis.log" 2>&1 || rc=$?
    tail -n 40 "$out/schemathesis.log"

    # 401 and 403: no token at all, then a token of the wrong role (intake may not review,
    # and may not read the audit log; on intake itself it is right, so that route is left out).
    local rc_auth=0 rc_role=0
    log "$backend: the same without a token (401) and with the intake token (403)"
    "$st" --config-file "$work/checks.toml" run "$base/openapi.json" "${common[@]}" \
        --max-examples 5 --phases examples,coverage,fuzzing --exclude-checks ignored_auth \
        --report junit --report-junit-path "$out/no-token.xml" --report-dir "$out" \
        >"$out/no-token.log" 2>&1 || rc_auth=$?
    tail -n 12 "$out/no-token.log"
    "$st" --config-file "$work/checks.toml" run "$base/openapi.json" "${common[@]}" \
        --max-examples 5 --phases examples,coverage,fuzzing --exclude-path /referral_request \
        -H "Authorization: Bearer $intake" \
        --report junit --report-junit-path "$out/wrong-role.xml" --report-dir "$out" \
        >"$out/wrong-role.log" 2>&1 || rc_role=$?
    tail -n 12 "$out/wrong-role.log"
    popd >/dev/null

    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    if grep -q '"level":"ERROR"' "$out/server.log"; then
        log "$backend: the server logged errors (see $out/server.log)"
        ((rc != 0)) || rc=1
    fi
    if [[ -n "$pg_dir" ]]; then refbridge_pg_stop "$pg_dir" || true; pg_dir=""; fi
    rm -rf "$work"
    work=""

    local cases=0 failures=0 log c f
    for log in schemathesis no-token wrong-role; do
        read -r c f < <(counts "$out/$log.log")
        cases=$((cases + c))
        failures=$((failures + f))
    done
    local secs=$((SECONDS - t0))
    summary+=("$backend: $cases cases, $failures failures (schemathesis exit codes $rc/$rc_auth/$rc_role), ${secs} s")
    if ((rc != 0 || rc_auth != 0 || rc_role != 0 || failures != 0)); then status=1; fi
}

for b in "${backends[@]}"; do
    run_backend "$b"
done

echo
echo "== api-fuzz (schemathesis $SCHEMATHESIS_VERSION, --checks all, max examples $max_examples)"
for line in "${summary[@]}"; do echo "$line"; done
if ((status != 0)); then
    echo "FAILED: see target/api-fuzz/<backend>/ (schemathesis.log, junit.xml, the pytest file)"
fi
exit "$status"

