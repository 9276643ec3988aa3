#!/usr/bin/env bash
# ecogate's benchmarks in one table (docs/performance.md explains each row and keeps the history).
#
#   ./scripts/bench.sh            full form: 3 runs of everything, medians (about 35 minutes)
#   ./scripts/bench.sh --short    a smoke of every row: 1 run, small sizes (about 5 minutes)
#   ./scripts/bench.sh --scaling  the scaling curve only: 1,000, 10,000 and 50,000 MQTT meters,
#                                 and a park split over 1, 2 and 3 instances
#   ./scripts/bench.sh --soak [MINUTES]  1,000 meters at one QoS 1 message a second each, with
#                                 the InfluxDB sink, for 30 minutes (or MINUTES): ecogate's RSS
#                                 every minute, which must level off
#
# Every figure is measured against a baseline in the same run (a bare MQTT subscriber on the same
# broker, taking turns with ecogate); the machine is not quiet enough for absolute times to mean
# much from one day to the next. The stock-mosquitto rows run Debian's mosquitto with its own
# limits; only its $SYS interval is set (1 s), so that its drop count can be read per
# half-round. Needs mosquitto and victoria-metrics (./scripts/test.sh installs them) and GNU time
# (installed here when missing). Servers listen on loopback ports it picks.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full
case "${1:-}" in
  --short) MODE=short ;;
  --scaling) MODE=scaling ;;
  --soak) MODE=soak ;;
  "") ;;
  *) echo "usage: scripts/bench.sh [--short|--scaling|--soak [MINUTES]]" >&2; exit 2 ;;
esac
SOAK_MINUTES=${2:-30}

if [ ! -x /usr/bin/time ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq time
fi
for cmd in mosquitto victoria-metrics python3; do
  command -v "$cmd" >/dev/null 2>&1 || {
    echo "bench.sh: $cmd is missing (./scripts/test.sh installs mosquitto and victoria-metrics)" >&2
    exit 1
  }
done

if [ "$MODE" = short ]; then
  RUNS=1 MESSAGES=20000 INFLUX_MESSAGES=50000 REPLAY_SIZES="100000 200000"
else
  RUNS=3 MESSAGES=200000 INFLUX_MESSAGES=1000000 REPLAY_SIZES="1000000 4000000"
fi

echo "== building (release)"
cargo build --release --quiet
cargo bench --bench mqtt_ingest --no-run --quiet 2>/dev/null
BIN=target/release/ecogate
# Logs stay in target/bench/ (each run's own folder) for a look after the table.
WORK=target/bench/$(date +%Y%m%d-%H%M%S)
mkdir -p "$WORK"
echo "== logs in $WORK"
trap 'rm -rf "$WORK/replay" "$WORK/yeargap/yeargap.db"*' EXIT
ROWS=()
row() { ROWS+=("$(printf '| %s | %s | %s |' "$1" "$2" "$3")"); }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# mqtt_ingest prints "QoS q: median of R rounds: bare subscriber B msg/s, ecogate into the store
# E msg/s, ratio P % (...); ecogate CPU C % of one core, peak RSS M MB".
mqtt() {
  local label=$1 log=$2
  shift 2
  env ECOGATE_BENCH_ROUNDS="$RUNS" "$@" cargo bench --quiet --bench mqtt_ingest >"$log" 2>&1 || {
    echo "bench.sh: mqtt_ingest failed ($label); its output:" >&2
    tail -n 30 "$log" >&2
    exit 1
  }
  for q in 0 1; do
    local line
    line=$(grep "^QoS $q: median" "$log" || true)
    [ -n "$line" ] || continue
    local bare eco ratio cpu rss
    bare=$(sed -n 's/.*bare subscriber \([0-9]*\) msg\/s.*/\1/p' <<<"$line")
    eco=$(sed -n 's/.*into the store \([0-9]*\) msg\/s.*/\1/p' <<<"$line")
    ratio=$(sed -n 's/.*ratio \([0-9.]*\) %.*/\1/p' <<<"$line")
    cpu=$(sed -n 's/.*ecogate CPU \([0-9]*\) %.*/\1/p' <<<"$line")
    rss=$(sed -n 's/.*peak RSS \([0-9.]*\) MB.*/\1/p' <<<"$line")
    local drops
    drops=$(sed -n 's/.*; \(broker dropped .*\)$/\1/p' <<<"$line")
    row "MQTT QoS $q, $label: committed" "$eco msg/s vs bare $bare msg/s" "$ratio % of bare; CPU $cpu % of a core; peak RSS $rss MB; $drops"
    local held
    held=$(sed -n "s/^QoS $q: InfluxDB: VictoriaMetrics holds \([0-9]*\) readings of \([0-9]*\) committed; median end-to-end \([0-9]*\) msg\/s (\([0-9.]*\) %.*/\3 msg\/s (\4 % of bare); VictoriaMetrics holds \1 of \2/p" "$log")
    if [ -n "$held" ]; then
      row "MQTT QoS $q, $label: held by VictoriaMetrics" "${held%%;*}" "${held#*; }"
    fi
    local bytes
    bytes=$(sed -n "s/^QoS $q: store .*: \([0-9]*\) bytes per reading/\1/p" "$log")
    if [ -n "$bytes" ] && [ "$label" != "+ InfluxDB sink" ]; then
      row "store, $label, QoS $q" "$bytes bytes a reading" "$(awk -v b="$bytes" -v m="${ECOGATE_BENCH_METERS_NOW:-1000}" 'BEGIN { printf "readings 1 s apart per meter: %.0f MB a day for %d meters at one a second (at one a minute, see the replay rows)", b * m * 86400 / 1e6, m }')"
    fi
  done
}

if [ "$MODE" = soak ]; then
  echo "== soak: $SOAK_MINUTES minutes, 1,000 meters, QoS 1, one message a second each, InfluxDB sink"
  env ECOGATE_BENCH_ROUNDS=1 ECOGATE_BENCH_QOS=1 ECOGATE_BENCH_RATE=1000 ECOGATE_BENCH_SKIP_BARE=1 \
    ECOGATE_BENCH_MESSAGES=$((SOAK_MINUTES * 60 * 1000)) ECOGATE_BENCH_RSS_EVERY_S=60 \
    ECOGATE_BENCH_INFLUX=1 cargo bench --quiet --bench mqtt_ingest 2>&1 | tee "$WORK/soak.log" | grep -E "rss t=|committed in"
  exit 0
fi

if [ "$MODE" != scaling ] && [ "$MODE" != soak ]; then
  echo "== MQTT, store only ($RUNS rounds of $MESSAGES messages, 1,000 meters)"
  mqtt "store only" "$WORK/mqtt-store.log" ECOGATE_BENCH_MESSAGES="$MESSAGES"
  echo "== MQTT + InfluxDB sink ($RUNS rounds of $INFLUX_MESSAGES messages)"
  mqtt "+ InfluxDB sink" "$WORK/mqtt-influx.log" ECOGATE_BENCH_MESSAGES="$INFLUX_MESSAGES" ECOGATE_BENCH_INFLUX=1

  echo "== replay"
  for n in $REPLAY_SIZES; do
    python3 scripts/bench/replay_rows.py "$WORK/replay" "$n"
    : >"$WORK/replay-$n.times"
    for _ in $(seq "$RUNS"); do
      rm -f "$WORK/replay/replay.db"*
      /usr/bin/time -f "%e %M" -o "$WORK/t" "$BIN" replay --config "$WORK/replay/replay.toml" \
        --input "$WORK/replay/replay-$n.csv" >"$WORK/replay.out"
      # Each meter rises 1 kWh a minute: the park's total is (n / 1,000 - 1) x 1,000 kWh.
      want=$(awk -v n="$n" 'BEGIN { printf "%.3f", (n / 1000 - 1) * 1000 }' | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta')
      grep -A1 '^park' "$WORK/replay.out" | grep -q "electricity   $want kWh" || {
        echo "bench.sh: replay of $n rows did not give the park's $want kWh" >&2
        exit 1
      }
      cat "$WORK/t" >>"$WORK/replay-$n.times"
      db_bytes=0
      for f in "$WORK/replay/replay.db" "$WORK/replay/replay.db-wal"; do
        if [ -f "$f" ]; then db_bytes=$((db_bytes + $(stat -c %s "$f"))); fi
      done
    done
    secs=$(awk '{ print $1 }' "$WORK/replay-$n.times" | median)
    rss=$(awk '{ print $2 / 1024 }' "$WORK/replay-$n.times" | median)
    rate=$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
    row "replay $n rows (CSV grouped by meter)" "$rate rows/s ($secs s)" "peak RSS $(printf '%.1f' "$rss") MB; store $(awk -v b="$db_bytes" -v n="$n" 'BEGIN { printf "%.0f bytes a reading at one a minute per meter: %.0f MB a day for 1,000 meters", b / n, b / n * 1440000 / 1e6 }')"
    rm -f "$WORK/replay/replay-$n.csv"
  done

  echo "== year gap (8 firms, 14 meters, 42 readings over a year)"
  python3 scripts/bench/yeargap.py "$WORK/yeargap"
  : >"$WORK/yeargap.times"
  for _ in $(seq "$RUNS"); do
    rm -f "$WORK/yeargap/yeargap.db"*
    /usr/bin/time -f "%e %M" -o "$WORK/t" "$BIN" replay --config "$WORK/yeargap/yeargap.toml" \
      --input "$WORK/yeargap/yeargap.csv" >"$WORK/yeargap.out"
    grep -A1 '^park' "$WORK/yeargap.out" | grep -q 'electricity   210,000.000 kWh' || {
      echo "bench.sh: the year-gap park total is not the hand-computed 210,000 kWh" >&2
      exit 1
    }
    cat "$WORK/t" >>"$WORK/yeargap.times"
  done
  secs=$(awk '{ print $1 }' "$WORK/yeargap.times" | median)
  bytes=0
  for f in "$WORK/yeargap/yeargap.db" "$WORK/yeargap/yeargap.db-wal"; do
    if [ -f "$f" ]; then bytes=$((bytes + $(stat -c %s "$f"))); fi
  done
  row "year gap replayed" "$secs s" "store $bytes bytes; park 210,000 kWh as hand-computed"
fi

if [ "$MODE" != scaling ]; then
  # Debian's mosquitto as installed (20 in flight, 1,000 queued per session): what a burst and
  # steady rates lose at the broker, bare subscriber and ecogate alike (docs/mqtt.md).
  if [ "$MODE" = short ]; then STOCK_N=20000; PACED_N=20000; else STOCK_N=100000; PACED_N=""; fi
  echo "== MQTT QoS 1 through a stock mosquitto: a burst of ${STOCK_N} messages"
  mqtt "stock mosquitto, burst" "$WORK/stock-burst.log" ECOGATE_BENCH_MESSAGES="$STOCK_N" \
    ECOGATE_BENCH_QOS=1 ECOGATE_BENCH_INFLIGHT=stock
  for rate in 2000 5000 10000; do
    # About 30, 20 and 10 s a half-round in the full form.
    n=${PACED_N:-$((rate == 2000 ? 60000 : 100000))}
    echo "== MQTT QoS 1 through a stock mosquitto: $n messages paced at $rate msg/s"
    mqtt "stock mosquitto, paced $rate msg/s" "$WORK/stock-$rate.log" ECOGATE_BENCH_MESSAGES="$n" \
      ECOGATE_BENCH_QOS=1 ECOGATE_BENCH_INFLIGHT=stock ECOGATE_BENCH_RATE="$rate"
  done
fi

if [ "$MODE" = full ] || [ "$MODE" = scaling ]; then
  echo "== scaling curve (MQTT QoS 1, store only)"
  for meters in 1000 10000 50000; do
    ECOGATE_BENCH_METERS_NOW=$meters mqtt "$meters meters" "$WORK/scale-$meters.log" \
      ECOGATE_BENCH_MESSAGES=$((meters * 20)) ECOGATE_BENCH_METERS=$meters ECOGATE_BENCH_QOS=1
  done
fi

if [ "$MODE" != soak ]; then
  # A park split over 1, 2 and 3 instances on this machine (docs/scale-out.md): rounds take
  # turns between the instance counts; the ratio is to one instance in the same run.
  if [ "$MODE" = short ]; then SHARD_N=20000; else SHARD_N=100000; fi
  echo "== shards: 1, 2 and 3 instances ($RUNS rounds of $SHARD_N QoS 1 messages, 1,000 firms)"
  env ECOGATE_BENCH_ROUNDS="$RUNS" ECOGATE_BENCH_MESSAGES="$SHARD_N" cargo bench --quiet --bench shards \
    >"$WORK/shards.log" 2>&1 || {
    echo "bench.sh: the shards bench failed; its output:" >&2
    tail -n 30 "$WORK/shards.log" >&2
    exit 1
  }
  while read -r line; do
    k=$(sed -n 's/^\([0-9]*\) instance(s): median.*/\1/p' <<<"$line")
    rate=$(sed -n 's/.*median \([0-9]*\) msg\/s.*/\1/p' <<<"$line")
    ratio=$(sed -n 's/.*(\([0-9.]*\) x 1 instance(s)).*/\1/p' <<<"$line")
    rest=$(sed -n 's/.*instance(s)), \(.*\)$/\1/p' <<<"$line")
    row "MQTT QoS 1, park split over $k instance(s)" "$rate msg/s" "$ratio x one instance; $rest"
  done < <(grep -E '^[0-9]+ instance\(s\): median' "$WORK/shards.log")
fi

echo
echo "| what | figure | against / notes |"
echo "|---|---|---|"
printf '%s\n' "${ROWS[@]}"
