#!/usr/bin/env bash
# A throwaway PostgreSQL 15 on loopback, from Debian's server binaries (`pg_config --bindir`),
# for the tests, the chaos test and the benchmark. Nothing is kept: the cluster lives in a
# temporary folder that `stop` removes.
#
#   scripts/start-postgres.sh            start one; prints `export` lines (eval them):
#                                        REFBRIDGE_PG_DIR, REFBRIDGE_PG_BINDIR, REFBRIDGE_PG_USER,
#                                        REFBRIDGE_TEST_POSTGRES_URL (the admin URL)
#   scripts/start-postgres.sh stop DIR   stop it and remove DIR
#
#   source scripts/start-postgres.sh     defines refbridge_pg_start / refbridge_pg_stop /
#                                        refbridge_pg_restart, which export the same variables
#
# PostgreSQL refuses to run as root: as root the server runs as REFBRIDGE_PG_USER (default
# `postgres`, created as a system user when missing). REFBRIDGE_PG_DURABLE=1 keeps fsync and
# synchronous commit on (benchmarks); by default they are off (tests only need a live server).
# When `pg_ctl` is missing, the server package is installed with apt-get (as root).

refbridge_pg__log() { echo "start-postgres: $*" >&2; }

refbridge_pg__bindir() {
    local dir=""
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null || true)"
    fi
    if [[ -z "$dir" || ! -x "$dir/pg_ctl" ]]; then
        local found
        found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
        if [[ -n "$found" && -x "$found/pg_ctl" ]]; then
            dir="$found"
        fi
    fi
    if [[ -z "$dir" || ! -x "$dir/pg_ctl" ]]; then
        return 1
    fi
    echo "$dir"
}

refbridge_pg__install() {
    if [[ "$(id -u)" != 0 ]]; then
        refbridge_pg__log "pg_ctl not found and not root: install postgresql-15 (Debian) first"
        return 1
    fi
    refbridge_pg__log "installing the PostgreSQL server (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq postgresql-15 >&2 \
        || apt-get install -y -qq postgresql >&2
}

# Runs a server binary as the unprivileged user (or as ourselves when not root).
refbridge_pg__as_user() {
    if [[ "$(id -u)" == 0 ]]; then
        [[ -n "${REFBRIDGE_PG_USER:-}" ]] || { refbridge_pg__log "REFBRIDGE_PG_USER is not set"; return 1; }
        runuser -u "$REFBRIDGE_PG_USER" -- "$@"
    else
        "$@"
    fi
}

# The postmaster's pid from DIR/data/postmaster.pid, when that process is alive.
refbridge_pg__live_pid() {
    local pid
    pid="$(head -n 1 "$1/data/postmaster.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    # An exited server that nobody has reaped yet is not running.
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
    echo "$pid"
}

refbridge_pg__free_port() {
    local port i
    for i in $(seq 1 50); do
        port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

refbridge_pg_start() {
    local bindir
    if ! bindir="$(refbridge_pg__bindir)"; then
        refbridge_pg__install || return 1
        bindir="$(refbridge_pg__bindir)" || { refbridge_pg__log "no PostgreSQL server binaries"; return 1; }
    fi
    export REFBRIDGE_PG_BINDIR="$bindir"
    if [[ "$(id -u)" == 0 ]]; then
        export REFBRIDGE_PG_USER="${REFBRIDGE_PG_USER:-postgres}"
        if ! id "$REFBRIDGE_PG_USER" >/dev/null 2>&1; then
            useradd --system --no-create-home --shell /usr/sbin/nologin "$REFBRIDGE_PG_USER"
        fi
    else
        export REFBRIDGE_PG_USER="$(id -un)"
    fi
    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/refbridge-pg.XXXXXX")"
    chmod 700 "$dir"
    if [[ "$(id -u)" == 0 ]]; then chown "$REFBRIDGE_PG_USER" "$dir"; fi
    export REFBRIDGE_PG_DIR="$dir"
    refbridge_pg__as_user "$bindir/initdb" -D "$dir/data" -U refbridge --auth=trust \
        -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; return 1; }
    local durable="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    if [[ "${REFBRIDGE_PG_DURABLE:-0}" == 1 ]]; then durable=""; fi
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 400
shared_buffers = 256MB
idle_in_transaction_session_timeout = '60s'
log_min_messages = warning
EOF
    local port attempt
    for attempt in 1 2 3 4 5; do
        port="$(refbridge_pg__free_port)" || return 1
        if refbridge_pg__as_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-p $port $durable" start >/dev/null; then
            export REFBRIDGE_PG_PORT="$port"
            export REFBRIDGE_TEST_POSTGRES_URL="postgres://refbridge@127.0.0.1:$port/postgres"
            refbridge_pg__log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($dir)"
            return 0
        fi
        refbridge_pg__log "port $port did not work (attempt $attempt)"
    done
    cat "$dir/server.log" >&2
    return 1
}

# Restarts the server in place (as the chaos test does): connections are cut, data is kept.
refbridge_pg_restart() {
    local dir="${1:-${REFBRIDGE_PG_DIR:?}}"
    refbridge_pg__as_user "${REFBRIDGE_PG_BINDIR:?}/pg_ctl" -D "$dir/data" -w -t 60 -m fast \
        restart >/dev/null
}

# Stops the server of DIR, then removes DIR. Needs nothing from the shell that started it:
# the server runs as the owner of DIR/data, and when pg_ctl cannot stop it the postmaster is
# signalled directly. DIR is kept (and the call fails) while the server is still alive.
refbridge_pg_stop() {
    local dir="${1:-${REFBRIDGE_PG_DIR:-}}"
    [[ -n "$dir" && -d "$dir" ]] || return 0
    local bindir="${REFBRIDGE_PG_BINDIR:-}"
    [[ -n "$bindir" ]] || bindir="$(refbridge_pg__bindir)" || true
    if [[ -n "$(refbridge_pg__live_pid "$dir")" ]]; then
        local owner
        owner="$(stat -c %U "$dir/data")"
        if ! REFBRIDGE_PG_USER="$owner" refbridge_pg__as_user "$bindir/pg_ctl" -D "$dir/data" \
            -w -t 60 -m immediate stop >/dev/null 2>&1; then
            refbridge_pg__log "pg_ctl could not stop the server in $dir: signalling it"
        fi
        local pid i
        for i in $(seq 1 100); do
            pid="$(refbridge_pg__live_pid "$dir")" || break
            # SIGQUIT is PostgreSQL's immediate shutdown; SIGKILL after 5 s.
            if (( i == 1 )); then kill -QUIT "$pid" 2>/dev/null || true; fi
            if (( i == 50 )); then kill -KILL "$pid" 2>/dev/null || true; fi
            sleep 0.1
        done
        if pid="$(refbridge_pg__live_pid "$dir")"; then
            refbridge_pg__log "the server in $dir (pid $pid) is still running: $dir kept"
            return 1
        fi
    fi
    rm -rf "$dir"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    case "${1:-start}" in
        start)
            refbridge_pg_start
            for v in REFBRIDGE_PG_DIR REFBRIDGE_PG_BINDIR REFBRIDGE_PG_USER REFBRIDGE_PG_PORT \
                REFBRIDGE_TEST_POSTGRES_URL; do
                echo "export $v=${!v}"
            done
            ;;
        stop)
            [[ -n "${2:-}" ]] || { echo "usage: $0 stop DIR" >&2; exit 2; }
            case "$2" in */refbridge-pg.*) ;; *) echo "not a refbridge-pg folder: $2" >&2; exit 2 ;; esac
            refbridge_pg_stop "$2"
            ;;
        *) echo "usage: $0 [start | stop DIR]" >&2; exit 2 ;;
    esac
fi
