#!/usr/bin/env bash
# The fault suite in full: every scenario of tests/chaos.rs (kill -9 of ecogate, a broker
# restart, VictoriaMetrics stopped, broker connections reset), with and without payload
# timestamps, ECOGATE_CHAOS_ROUNDS rounds each (default 5; about 30 s a round of all scenarios).
# Prints one table: scenario, rounds, readings, lost, doubled, rows missing, InfluxDB = truth,
# recovery time. ECOGATE_CHAOS_SEED repeats a run's random moments. `./scripts/test.sh` runs the
# short form (one round each).
set -euo pipefail
cd "$(dirname "$0")/.."
export ECOGATE_CHAOS_ROUNDS="${ECOGATE_CHAOS_ROUNDS:-5}"
cargo test --release --test chaos -- --nocapture --test-threads=1 2>&1 | grep -E '^(\||fault suite|thread|test result)'
