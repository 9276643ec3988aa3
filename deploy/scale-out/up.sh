#!/usr/bin/env bash
# The 3-shard deployment on this machine, in one command, without containers (docs/scale-out.md):
# mosquitto, VictoriaMetrics (the central store), three ecogate shards reading park.toml, and
# Prometheus scraping them (Grafana too, when grafana-server is installed). Debian packages:
# mosquitto mosquitto-clients victoria-metrics prometheus.
#
#   deploy/scale-out/up.sh            start everything; Ctrl-C stops it all
#   deploy/scale-out/up.sh --smoke    start, publish a few readings, check that the central
#                                     store and Prometheus see all three shards, stop (CI)
#
# Everything lives in a fresh folder under /tmp (ECOGATE_SCALE_DIR to choose it) on loopback
# ports: MQTT 18830, VictoriaMetrics 18428, /metrics 9110-9112, Prometheus 19090. The binary is
# $ECOGATE, else the newer of this repository's target/release and target/debug builds, else
# `ecogate` on PATH (an installed .deb).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
smoke=0
[ "${1:-}" = "--smoke" ] && smoke=1

bin=${ECOGATE:-}
if [ -z "$bin" ]; then
  bin=$(ls -t "$root/target/release/ecogate" "$root/target/debug/ecogate" 2>/dev/null | head -n 1 || true)
  [ -n "$bin" ] || bin=$(command -v ecogate || true)
fi
[ -n "$bin" ] || { echo "up.sh: no ecogate binary: cargo build --release, or set ECOGATE" >&2; exit 1; }
for cmd in mosquitto victoria-metrics; do
  command -v "$cmd" >/dev/null || { echo "up.sh: $cmd is not installed (apt-get install $cmd)" >&2; exit 1; }
done

work=${ECOGATE_SCALE_DIR:-$(mktemp -d /tmp/ecogate-scale-out.XXXXXX)}
mkdir -p "$work"
cd "$work"
cp "$here/park.toml" "$here/prometheus.yml" "$root/deploy/prometheus/ecogate.rules.yml" .
sed "s|persistence_location /tmp/|persistence_location $work/|" "$here/mosquitto.conf" > mosquitto.conf

pids=()
stop() {
  for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "up.sh: nothing listens on 127.0.0.1:$1 after 20 s ($2)" >&2
  return 1
}

mosquitto -c mosquitto.conf >mosquitto.log 2>&1 & pids+=($!)
# One sample per series and timestamp: window points are written again by every commit and
# sent again after a restart (docs/scale-out.md).
victoria-metrics -httpListenAddr=127.0.0.1:18428 -storageDataPath="$work/vm" \
  -dedup.minScrapeInterval=1ms -retentionPeriod=100y >vm.log 2>&1 & pids+=($!)
wait_port 18830 mosquitto
wait_port 18428 victoria-metrics
"$bin" check --config park.toml >check.txt
for k in 0 1 2; do
  "$bin" run --config park.toml --shard "$k" >"shard-$k.log" 2>&1 & pids+=($!)
done
for k in 0 1 2; do wait_port "911$k" "ecogate shard $k"; done
prom=0
if command -v prometheus >/dev/null; then
  prometheus --config.file=prometheus.yml --web.listen-address=127.0.0.1:19090 \
    --storage.tsdb.path="$work/prometheus" >prometheus.log 2>&1 & pids+=($!)
  wait_port 19090 prometheus
  prom=1
fi
if command -v grafana-server >/dev/null && [ $smoke -eq 0 ]; then
  echo "grafana-server is installed: provision it from deploy/grafana and $here/grafana-datasources.yml"
fi

echo "up: 3 shards of $(sed -n 's/^name = "\(.*\)"/\1/p' park.toml | head -n 1) in $work"
echo "  MQTT 127.0.0.1:18830 (topics park/<shard>/<meter>/telemetry; ecogate shards --config $work/park.toml)"
echo "  central store http://127.0.0.1:18428; /metrics 127.0.0.1:9110-9112; Prometheus 127.0.0.1:19090"
echo "  city report: $bin report --config $work/park.toml --central http://127.0.0.1:18428 --period $(date +%Y)"

if [ $smoke -eq 0 ]; then
  echo "Ctrl-C stops everything"
  wait
  exit 0
fi

# Smoke: 5 readings an hour apart per meter, each 10 kWh above the last, published QoS 1 to
# each meter's shard topic; the central store must then hold 4 x 10 kWh = 40 kWh a meter,
# 240 kWh for the park's 6 meters, written by three instances.
command -v mosquitto_pub >/dev/null || { echo "up.sh --smoke: mosquitto_pub is not installed (mosquitto-clients)" >&2; exit 1; }
now=$(date +%s)
first=$(( (now / 3600 - 5) * 3600 ))
year=$(TZ=Asia/Shanghai date -d "@$first" +%Y)
"$bin" shards --config park.toml | tail -n +2 | while IFS=, read -r meter firm shard; do
  for i in 0 1 2 3 4; do
    ts=$(( (first + i * 3600) * 1000 ))
    mosquitto_pub -p 18830 -q 1 -t "park/$shard/$meter/telemetry" \
      -m "{\"import_kwh\": $(( 1000 + i * 10 )), \"ts\": $ts}"
  done
done
got=""
for _ in $(seq 1 120); do
  curl -s "http://127.0.0.1:18428/internal/force_flush" >/dev/null || true
  got=$("$bin" report --config park.toml --central http://127.0.0.1:18428 --period "$year" \
    --format json 2>/dev/null | jq -r '.tables[0].rows[] | select(.firm_id == "park") | .grid_import_kwh' || true)
  [ "$got" = "240" ] && break
  sleep 0.5
done
[ "$got" = "240" ] || { echo "up.sh --smoke: the central store holds ${got:-nothing} kWh for the park, not 240" >&2; tail -n 5 shard-*.log >&2; exit 1; }
echo "smoke: the central store holds 240 kWh for the park (6 meters x 4 x 10 kWh) from 3 shards"
if [ $prom -eq 1 ]; then
  up=""
  for _ in $(seq 1 60); do
    up=$(curl -s 'http://127.0.0.1:19090/api/v1/query?query=sum(up%7Bjob%3D%22ecogate%22%7D)' | jq -r '.data.result[0].value[1] // empty')
    [ "$up" = "3" ] && break
    sleep 1
  done
  [ "$up" = "3" ] || { echo "up.sh --smoke: Prometheus sees ${up:-no} shard(s) up, not 3" >&2; exit 1; }
  echo "smoke: Prometheus scrapes all 3 shards"
fi
