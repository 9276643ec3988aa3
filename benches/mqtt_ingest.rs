//! MQTT ingest end to end (prints figures; not a test). Run: `cargo bench --bench mqtt_ingest`.
//!
//! mosquitto on a loopback port; a publisher in this process sends N JSON readings (~40 bytes)
//! for 1,000 meters as fast as it can. Measured in the same run, for QoS 0 and QoS 1:
//! - the ceiling: a bare rumqttc subscriber that does no work (auto acks);
//! - ecogate: an `ecogate run` child that decodes, accounts and commits every reading to its
//!   SQLite store (QoS 1: acknowledged only after the commit), timed until it reports all
//!   committed (its `ecogate_readings_accepted_total`, counted after each commit, read every
//!   50 ms from /metrics: cheaper for the shared CPUs than counting the store's rows).
//!
//! Both are timed the same way: from the moment the publisher starts to the last message
//! received (bare) or committed (ecogate).
//!
//! Prints messages/s, the ratio to the ceiling, and ecogate's CPU and peak RSS.
//! ECOGATE_BENCH_MESSAGES sets N (default 200,000).

#[path = "../tests/common/mosquitto.rs"]
mod mosquitto;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const METERS: usize = 1000;

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

fn hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `ecogate_readings_accepted_total` from ecogate's /metrics (0 while it is not answering).
fn accepted(port: u16) -> i64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix("ecogate_readings_accepted_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as i64)
}

fn payloads(n: usize, round: u64) -> Vec<(String, Vec<u8>)> {
    let t0 = chrono::Utc::now().timestamp_millis() - (n / METERS) as i64 * 1000 - 60_000;
    (0..n)
        .map(|i| {
            let (m, k) = (i % METERS, (i / METERS) as i64);
            (
                format!("bench/m{m}"),
                format!(
                    "{{\"wh\":{},\"ts\":{}}}",
                    round * 10_000_000 + k as u64 * 10,
                    t0 + k * 1000
                )
                .into_bytes(),
            )
        })
        .collect()
}

async fn publish(port: u16, id: &str, msgs: Vec<(String, Vec<u8>)>, qos: QoS) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_inflight(1000).set_request_channel_capacity(10_000);
    let (client, mut ev) = AsyncClient::new(o, 10_000);
    let n = msgs.len();
    let sender = tokio::spawn(async move {
        for (t, p) in msgs {
            client.publish(t, qos, false, p).await.unwrap();
        }
        client
    });
    let mut acked = 0;
    if qos == QoS::AtLeastOnce {
        while acked < n {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = ev.poll().await {
                acked += 1;
            }
        }
    } else {
        // Drive the event loop until the sender is done and its requests have gone out.
        let client = loop {
            tokio::select! {
                r = ev.poll() => { r.unwrap(); }
            }
            if sender.is_finished() {
                break sender.await.unwrap();
            }
        };
        client.disconnect().await.unwrap();
        while let Ok(e) = ev.poll().await {
            if matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    }
}

/// Messages/s a do-nothing subscriber receives.
async fn bare(port: u16, n: usize, qos: QoS) -> (f64, usize) {
    let mut o = MqttOptions::new(format!("bare-{qos:?}"), "127.0.0.1", port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut ev) = AsyncClient::new(o, 10_000);
    client.subscribe("bench/+", qos).await.unwrap();
    loop {
        if let Ok(Event::Incoming(Packet::SubAck(_))) = ev.poll().await {
            break;
        }
    }
    let msgs = payloads(n, 0);
    let started = Instant::now();
    let publisher = tokio::spawn(publish(port, "pub-bare", msgs, qos));
    let mut got = 0usize;
    let mut last = Instant::now();
    while got < n {
        match tokio::time::timeout(Duration::from_secs(5), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => {
                got += 1;
                last = Instant::now();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    publisher.await.unwrap();
    let secs = last.duration_since(started).as_secs_f64().max(1e-9);
    (got as f64 / secs, got)
}

fn main() {
    let n: usize = std::env::var("ECOGATE_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let broker = mosquitto::Mosquitto::start();
    let port = broker.port;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = String::from(
        "[park]\nname = \"Bench\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 10\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"charging_station\"\n",
    );
    for m in 0..METERS {
        let _ = writeln!(
            cfg,
            "[[meters]]\nid = \"m{m}\"\nsite = \"s\"\nchannels = [{{ id = \"delivered\", carrier = \"charging_delivered\", kind = \"counter\", unit = \"Wh\", max_rate_per_hour = 1e12 }}]"
        );
    }
    for (qos_name, qos) in [("0", QoS::AtMostOnce), ("1", QoS::AtLeastOnce)] {
        let (ceiling, bare_got) = rt.block_on(bare(port, n, qos));
        let store = dir.path().join(format!("q{qos_name}.db"));
        let metrics_port = mosquitto::free_port();
        let text = format!(
            "{cfg}[store]\npath = \"{}\"\nmax_batch_readings = 20000\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"ecogate-bench-q{qos_name}\"\n\
             [[mqtt.subscriptions]]\ntopic = \"bench/{{meter}}\"\nqos = {qos_name}\ndecoder = \"json\"\nfields = {{ delivered = \"/wh\" }}\ntimestamp = \"/ts\"\n",
            store.display()
        );
        let cfg_path = dir.path().join(format!("q{qos_name}.toml"));
        std::fs::write(&cfg_path, text).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ecogate"))
            .args(["run", "--config", cfg_path.to_str().unwrap()])
            .env("ECOGATE_LOG", "error")
            .env("MALLOC_ARENA_MAX", "2")
            .spawn()
            .unwrap();
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(1500));
        let cpu0 = cpu_ticks(pid);
        let msgs = payloads(n, 1);
        let started = Instant::now();
        let publisher = rt.spawn(publish(port, "pub-ecogate", msgs, qos));
        let mut stored = 0;
        let mut last_change = Instant::now();
        let mut done_at = started;
        while stored < n as i64 && last_change.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
            let c = accepted(metrics_port);
            if c != stored {
                stored = c;
                last_change = Instant::now();
                done_at = last_change;
            }
        }
        let secs = done_at.duration_since(started).as_secs_f64();
        let cpu = (cpu_ticks(pid) - cpu0) as f64 / 100.0 / secs * 100.0;
        let hwm = hwm_kb(pid);
        rt.block_on(publisher).unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let _ = child.wait();
        let rate = stored as f64 / secs;
        let in_store: i64 = rusqlite::Connection::open(&store)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0)))
            .unwrap_or(0);
        assert_eq!(in_store, stored, "the counter and the store agree");
        println!(
            "QoS {qos_name}: bare subscriber {ceiling:.0} msg/s ({bare_got}/{n} received); ecogate into the store {rate:.0} msg/s ({stored}/{n} stored in {secs:.1} s) = {:.1} % of the bare subscriber; ecogate CPU {cpu:.0} % of one core, peak RSS {:.1} MB",
            rate / ceiling * 100.0,
            hwm as f64 / 1024.0
        );
    }
}
