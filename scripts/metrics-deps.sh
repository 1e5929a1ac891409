#!/usr/bin/env bash
# What the alert rules' test needs: promtool, from Debian's prometheus package (installed with
# apt-get when missing, as root; the server it also brings is not started). Prints the export
# of PROMTOOL for the tests; idempotent and quick once installed.
set -euo pipefail

if ! command -v promtool >/dev/null 2>&1; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "metrics-deps: promtool is missing; install Debian's prometheus package or run as root" >&2
        exit 1
    fi
    echo "metrics-deps: installing promtool (Debian's prometheus package)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # --no-install-recommends: promtool needs none of the web console's assets.
    apt-get install -y -q --no-install-recommends prometheus >&2 ||
        { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends prometheus >&2; }
    # The package starts its server under systemd where there is one; it is not needed.
    if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
fi
echo "export PROMTOOL=$(command -v promtool)"
