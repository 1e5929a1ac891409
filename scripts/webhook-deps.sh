#!/usr/bin/env bash
# What the webhook tests need: a Python venv under target/webhook-deps with the PyPI
# `standardwebhooks` package (an implementation of the Standard Webhooks specification other
# than ours, which the test receiver verifies every delivery with). Prints the export of
# WEBHOOK_PYTHON for the tests; idempotent and quick once installed.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="target/webhook-deps/venv"
if ! "$venv/bin/python" -c 'import standardwebhooks' >/dev/null 2>&1; then
    echo "webhook-deps: installing standardwebhooks from PyPI into $venv" >&2
    mkdir -p target/webhook-deps
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'standardwebhooks==1.1.0' >&2
fi
echo "export WEBHOOK_PYTHON=$PWD/$venv/bin/python"
