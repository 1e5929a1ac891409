#!/usr/bin/env bash
# The chaos test at full size: 200 approvals with 10-20 % mixed faults on every ACCloud
# endpoint and the workers killed several times. CHAOS_APPROVALS and CHAOS_SEED override.
set -euo pipefail
cd "$(dirname "$0")/.."
CHAOS_APPROVALS="${CHAOS_APPROVALS:-200}" cargo test --release -p refbridge-cli --test e2e chaos -- --nocapture
