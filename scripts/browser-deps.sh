#!/usr/bin/env bash
# What the console's browser tests need: Debian's chromium and chromium-driver (installed with
# apt-get when missing, as root), and axe-core from npm under target/browser-deps. Prints the
# export of AXE_CORE_JS for the tests; idempotent and quick once installed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "browser-deps: chromium and chromium-driver are missing; install them (apt-get install chromium chromium-driver) or run as root" >&2
        exit 1
    fi
    echo "browser-deps: installing chromium and chromium-driver" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium chromium-driver >&2 ||
        { apt-get update -q >&2 && apt-get install -y -q chromium chromium-driver >&2; }
fi

axe="target/browser-deps/node_modules/axe-core/axe.min.js"
if [[ ! -f "$axe" ]]; then
    echo "browser-deps: installing axe-core from npm" >&2
    mkdir -p target/browser-deps
    (cd target/browser-deps && npm install --no-audit --no-fund --silent axe-core@4 >&2)
fi
echo "export AXE_CORE_JS=$PWD/$axe"
