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
  "chromium:chromium"   # headless Chromium opens the HTML report and takes its screenshot
  "faketime:faketime"   # libfaketime steps ecogate's wall clock in the fault suite
  "mosquitto_pub:mosquitto-clients" # the scale-out deployment's smoke publishes with it
  "curl:curl"           # ... and asks VictoriaMetrics and Prometheus with it
  "jq:jq"               # ... and reads their JSON with it
)

missing=()
for pair in "${NEEDED[@]+"${NEEDED[@]}"}"; do
  cmd=${pair%%:*}
  pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
# Chinese glyphs for the report screenshots (without them Chromium draws empty boxes).
command -v fc-list >/dev/null 2>&1 && fc-list :lang=zh | grep -q . || missing+=("fonts-noto-cjk")
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
# Fuzzing, short form: each target a few seconds on its committed corpus (the full form, and
# how to run it: docs/fuzzing.md). cargo-fuzz needs the nightly toolchain; without one this step
# says so and is skipped, as it would be on a machine with stable Rust only.
if cargo +nightly --version >/dev/null 2>&1; then
  command -v cargo-fuzz >/dev/null 2>&1 || {
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
  }
  echo "== cargo fuzz (short form)"
  for target in $(cd fuzz && cargo +nightly fuzz list); do
    # New inputs go to a scratch folder: the committed corpus is only read.
    scratch=$(mktemp -d)
    (cd fuzz && cargo +nightly fuzz run -O "$target" "$scratch" "corpus/$target" -- \
      -max_total_time="${ECOGATE_FUZZ_SECONDS:-5}" -rss_limit_mb=2048 -timeout=10 2>&1 | tail -n 3)
    rm -rf "$scratch"
  done
else
  echo "== cargo fuzz: skipped (no nightly toolchain)"
fi

echo "== cargo test"
# Library, binary, integration and doc tests (benches are run by `cargo bench`, not here).
cargo test

# The 3-shard deployment as docs/scale-out.md starts it, in its short form: three shards,
# mosquitto, VictoriaMetrics and Prometheus; a few readings must reach the central store.
echo "== scale-out deployment: deploy/scale-out/up.sh --smoke"
ECOGATE="${CARGO_TARGET_DIR:-$PWD/target}/debug/ecogate" deploy/scale-out/up.sh --smoke

# The .deb as a user installs it: built from the test build (the shipping one is built by
# scripts/dist.sh with the dist profile), installed with dpkg, `ecogate check` run from the
# installed paths as the package's user, the unit's hardening rated, then purged again.
if [ "$(id -u)" -eq 0 ] && command -v dpkg >/dev/null 2>&1; then
  command -v cargo-deb >/dev/null 2>&1 || {
    echo "== installing cargo-deb"
    cargo install cargo-deb --version 3.8.0 --locked --quiet
  }
  echo "== .deb: build, install, check"
  rm -rf target/packages-test
  cargo deb --profile dev --no-build --fast --quiet --output target/packages-test/ 2>/dev/null
  deb=$(ls target/packages-test/ecogate_*.deb)
  dpkg -i "$deb" >/dev/null
  trap 'dpkg --purge ecogate >/dev/null 2>&1 || true' EXIT
  test -x /usr/bin/ecogate
  test -f /lib/systemd/system/ecogate.service
  [ "$(stat -c '%U:%G %a' /etc/ecogate/ecogate.toml)" = "root:ecogate 640" ]
  (cd /var/lib/ecogate && runuser -u ecogate -- /usr/bin/ecogate check --config /etc/ecogate/ecogate.toml | head -n 1)
  if command -v systemd-analyze >/dev/null 2>&1; then
    exposure=$(systemd-analyze security --offline=true /lib/systemd/system/ecogate.service 2>/dev/null \
      | sed -n 's/.*Overall exposure level for ecogate.service: \([0-9.]*\).*/\1/p')
    echo "systemd-analyze security: exposure $exposure"
    awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || {
      echo "test.sh: the unit's exposure rose above 2.0" >&2
      exit 1
    }
  fi
  dpkg --purge ecogate >/dev/null
  if id ecogate >/dev/null 2>&1; then
    echo "test.sh: purging the .deb left the ecogate user" >&2
    exit 1
  fi
  echo ".deb: installed, checked, purged"
else
  echo "== .deb: skipped (needs root and dpkg)"
fi
