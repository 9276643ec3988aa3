#!/usr/bin/env bash
# The fault suite in full: every scenario of tests/chaos.rs (kill -9 of ecogate, a broker
# restart, VictoriaMetrics stopped, broker connections reset, a fault proxy in front of the
# Modbus gateway and of the InfluxDB endpoint: latency, blackhole, resets; a full disk, on a
# tmpfs of its own, which needs root), under MQTT and Modbus
# load, with and without payload timestamps, ECOGATE_CHAOS_ROUNDS rounds each (default 5; about
# 2 minutes a round of all scenarios). ECOGATE_CHAOS_ONLY=modbus picks scenarios by name;
# ECOGATE_CHAOS_KEEP=1 keeps each round's folder (store, outbox, ecogate.log).
# Prints one table: scenario, rounds, readings, lost, doubled, rows missing, InfluxDB = truth,
# recovery time. ECOGATE_CHAOS_SEED repeats a run's random moments. `./scripts/test.sh` runs the
# short form (one round each).
set -euo pipefail
cd "$(dirname "$0")/.."
export ECOGATE_CHAOS_ROUNDS="${ECOGATE_CHAOS_ROUNDS:-5}"
cargo test --release --test chaos -- --nocapture --test-threads=1 2>&1 | grep -E '^(\||fault suite|thread|test result)'
