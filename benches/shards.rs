//! Throughput of a park split over 1, 2 and 3 ecogate instances (docs/scale-out.md) on one
//! machine: a fast publisher sends N QoS 1 messages, one reading each, to the firm-hash topic
//! layout `park/<shard>/<meter>` of a mosquitto whose limits are raised (the broker's window is
//! #26's subject, not this one's); each shard subscribes to `$share/b-k/park/k/+`. A round ends
//! when the shards' stores together hold every reading. Prints, per instance count, the median
//! over the rounds of messages a second, its ratio to one instance and to a bare subscriber
//! (QoS 1, same burst, same broker) in the same run, and the instances' CPU.
//!
//! cargo bench --bench shards; ECOGATE_BENCH_MESSAGES (default 100,000), ECOGATE_BENCH_ROUNDS
//! (3), ECOGATE_BENCH_METERS (1,000, one firm each), ECOGATE_BENCH_SHARDS (default "1,2,3").

#[path = "../tests/common/mosquitto.rs"]
mod mosquitto;
mod support;

use rumqttc::QoS;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{cpu_ticks, hwm_kb, median, pct, publish};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn config(meters: usize, shards: u32, port: u16, dir: &Path) -> String {
    let mut t = String::from("[park]\nname = \"Bench\"\ngrid_factor_year = 2022\n");
    if shards > 1 {
        t.push_str(&format!("[shard]\ncount = {shards}\n"));
    }
    for i in 0..meters {
        t.push_str(&format!(
            "[[firms]]\nid = \"f{i}\"\nname = \"F{i}\"\nland_mu = 10\n\
             [[sites]]\nid = \"s{i}\"\nfirm = \"f{i}\"\nkind = \"factory\"\n\
             [[meters]]\nid = \"m{i}\"\nsite = \"s{i}\"\nchannels = [{{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"Wh\", max_rate_per_hour = 1e9 }}]\n"
        ));
    }
    let topic = if shards > 1 {
        "$share/b-{shard}/park/{shard}/{meter}"
    } else {
        "park/0/{meter}"
    };
    t.push_str(&format!(
        "[store]\npath = \"{}/store-{{shard}}.db\"\n[metrics]\nenabled = false\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"bench-{{shard}}\"\n\
         [[mqtt.subscriptions]]\ntopic = \"{topic}\"\nqos = 1\ndecoder = \"json\"\nfields = {{ import = \"/wh\" }}\ntimestamp = \"/ts\"\n",
        dir.display()
    ));
    t
}

fn stored(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0)))
        .unwrap_or(0)
}

struct Kill(Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Round {
    msg_per_s: f64,
    cpu_pct: f64,
    peak_rss_mb: f64,
}

async fn round(n: usize, meters: usize, shards: u32, broker: u16) -> Round {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("park.toml");
    std::fs::write(&cfg, config(meters, shards, broker, dir.path())).unwrap();
    let children: Vec<Child> = (0..shards)
        .map(|k| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_ecogate"));
            c.args(["run", "--config", cfg.to_str().unwrap()])
                .env("ECOGATE_LOG", "error")
                .stdout(Stdio::null());
            if shards > 1 {
                c.args(["--shard", &k.to_string()]);
            }
            c.spawn().unwrap()
        })
        .collect();
    let guard = Kill(children);
    let pids: Vec<u32> = guard.0.iter().map(|c| c.id()).collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let dbs: Vec<PathBuf> = (0..shards)
        .map(|k| dir.path().join(format!("store-{k}.db")))
        .collect();
    let per_meter = (n / meters).max(1);
    let t0 = chrono::Utc::now().timestamp_millis() - (per_meter as i64 + 60) * 1000;
    let msgs: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let (m, k) = (i % meters, (i / meters) as i64);
            let shard = if shards > 1 {
                ecogate::config::shard::shard_of(&format!("f{m}"), shards)
            } else {
                0
            };
            (
                format!("park/{shard}/m{m}"),
                format!("{{\"wh\":{},\"ts\":{}}}", k * 10, t0 + k * 1000).into_bytes(),
            )
        })
        .collect();
    let cpu0: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum();
    let start = Instant::now();
    let publisher = tokio::spawn(publish(broker, "bench-publisher", msgs, QoS::AtLeastOnce));
    let deadline = start + Duration::from_secs(600);
    loop {
        let got: i64 = dbs.iter().map(|d| stored(d)).sum();
        if got >= n as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{shards} instance(s): {got} of {n} readings stored after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu1: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum();
    let peak_rss_mb = pids.iter().map(|&p| hwm_kb(p)).max().unwrap_or(0) as f64 / 1024.0;
    publisher.await.unwrap();
    drop(guard);
    Round {
        msg_per_s: n as f64 / secs,
        cpu_pct: pct(cpu1 - cpu0, secs),
        peak_rss_mb,
    }
}

/// Messages a second a do-nothing subscriber (QoS 1, acknowledging each at once) receives of
/// the same kind of burst: the ceiling this machine, broker and publisher allow.
async fn bare(n: usize, meters: usize, broker: u16) -> f64 {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
    let mut o = MqttOptions::new("bench-bare", "127.0.0.1", broker);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut ev) = AsyncClient::new(o, 10_000);
    client.subscribe("bare/+", QoS::AtLeastOnce).await.unwrap();
    while !matches!(ev.poll().await, Ok(Event::Incoming(Packet::SubAck(_)))) {}
    let msgs: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let k = (i / meters) as i64;
            (
                format!("bare/m{}", i % meters),
                format!(
                    "{{\"wh\":{},\"ts\":{}}}",
                    k * 10,
                    1_700_000_000_000 + k * 1000
                )
                .into_bytes(),
            )
        })
        .collect();
    let start = Instant::now();
    let publisher = tokio::spawn(publish(
        broker,
        "bench-bare-publisher",
        msgs,
        QoS::AtLeastOnce,
    ));
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(10), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => got += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    publisher.await.unwrap();
    let _ = client.disconnect().await;
    got as f64 / secs
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_or("ECOGATE_BENCH_MESSAGES", 100_000);
    let rounds = env_or("ECOGATE_BENCH_ROUNDS", 3).max(1);
    let meters = env_or("ECOGATE_BENCH_METERS", 1_000).max(1);
    let counts: Vec<u32> = std::env::var("ECOGATE_BENCH_SHARDS")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let broker =
        mosquitto::Mosquitto::start_with("max_inflight_messages 0\nmax_queued_messages 0\n");
    println!(
        "shards: {n} QoS 1 messages a round, {meters} meters (one firm each), {rounds} rounds, instance counts {counts:?}"
    );
    // Rounds interleave the instance counts, so that a slow minute of the machine falls on
    // all of them alike.
    let mut results: Vec<Vec<Round>> = counts.iter().map(|_| Vec::new()).collect();
    let mut bares = Vec::new();
    for r in 0..rounds {
        let b = bare(n, meters, broker.port).await;
        println!("round {}: bare subscriber: {b:.0} msg/s", r + 1);
        bares.push(b);
        for (i, &shards) in counts.iter().enumerate() {
            let got = round(n, meters, shards, broker.port).await;
            println!(
                "round {}: {shards} instance(s): {:.0} msg/s, CPU {:.0} % of a core, peak RSS {:.1} MB (largest instance)",
                r + 1,
                got.msg_per_s,
                got.cpu_pct,
                got.peak_rss_mb
            );
            results[i].push(got);
        }
    }
    let base = median(&results[0].iter().map(|r| r.msg_per_s).collect::<Vec<_>>());
    let ceiling = median(&bares);
    println!("bare subscriber: median {ceiling:.0} msg/s");
    for (i, &shards) in counts.iter().enumerate() {
        let rates: Vec<f64> = results[i].iter().map(|r| r.msg_per_s).collect();
        let m = median(&rates);
        println!(
            "{shards} instance(s): median {m:.0} msg/s ({:.2} x {} instance(s)), {:.0} % of bare, CPU {:.0} % of a core, peak RSS {:.1} MB",
            m / base,
            counts[0],
            m / ceiling * 100.0,
            median(&results[i].iter().map(|r| r.cpu_pct).collect::<Vec<_>>()),
            median(&results[i].iter().map(|r| r.peak_rss_mb).collect::<Vec<_>>())
        );
    }
}
