#!/usr/bin/env bash
# Runs every test ecogate has, on a fresh Debian/Ubuntu machine or a developer's.
#
# It first installs what the tests need and is missing (Debian packages after one
# `apt-get update`; a Rust toolchain must already be there), then checks formatting and lints,
# then runs the whole suite. Tests that need servers (mosquitto, VictoriaMetrics, Prometheus,
# Modbus) start them themselves on loopback ports they pick.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need, as "command:package" pairs.
NEEDED=(
  "socat:socat"         # pseudo-terminal pairs for the Modbus RTU tests
  "mosquitto:mosquitto" # the MQTT broker the MQTT tests start on their own ports
  "openssl:openssl"     # a private CA and server certificate for the MQTT TLS test
  "promtool:prometheus" # promtool checks the /metrics output and the alert rules
  "amtool:prometheus-alertmanager" # amtool checks the example Alertmanager configuration
  "victoria-metrics:victoria-metrics" # the store behind the InfluxDB v2 write API in the sink tests
)

missing=()
for pair in "${NEEDED[@]+"${NEEDED[@]}"}"; do
  cmd=${pair%%:*}
  pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

command -v cargo >/dev/null 2>&1 || {
  echo "test.sh: cargo is not installed; install Rust (https://rustup.rs) first" >&2
  exit 1
}

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
# Library, binary, integration and doc tests (benches are run by `cargo bench`, not here).
cargo test
