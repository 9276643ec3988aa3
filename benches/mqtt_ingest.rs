//! MQTT ingest end to end (prints figures; not a test). Run: `cargo bench --bench mqtt_ingest`.
//!
//! mosquitto on a loopback port; a publisher in this process sends N JSON readings (~40 bytes)
//! for 1,000 meters as fast as it can. Measured in the same run, for QoS 0 and QoS 1:
//! - the ceiling: a bare rumqttc subscriber that does no work (auto acks);
//! - ecogate: an `ecogate run` child that decodes, accounts and commits every reading to its
//!   SQLite store (QoS 1: acknowledged only after the commit), timed until it reports all
//!   committed (a debug line per commit in its log, read as it comes: see [`Commits`]).
//!
//! Both are timed the same way: from the moment the publisher starts to the last message
//! received (bare) or committed (ecogate). The two take turns, round after round (one ecogate
//! process per QoS level for all rounds), because on this 2-core machine a single pair of runs
//! varies by ±15 %: each round's ratio compares runs seconds apart, and the median of the
//! rounds is the figure.
//!
//! Prints messages/s, the ratio to the ceiling per round and its median, and ecogate's CPU and
//! peak RSS, and the broker's and the publisher's CPU in both halves of a round (the broker is
//! single-threaded and shares the two cores with everything else: its share sets the rate).
//! ECOGATE_BENCH_MESSAGES sets N per round (default 200,000), ECOGATE_BENCH_ROUNDS the rounds
//! (default 5), ECOGATE_BENCH_QOS one QoS level alone (0 or 1), ECOGATE_BENCH_INFLIGHT the
//! broker's in-flight window (mosquitto's default is 20), ECOGATE_BENCH_LOG ecogate's log
//! filter (default `error`), ECOGATE_BENCH_BIN another ecogate binary to measure,
//! ECOGATE_BENCH_INFLUX=1 adds the InfluxDB sink (a VictoriaMetrics started on a loopback port):
//! a round then also waits until the outbox is empty (every point answered 204, so held by
//! VictoriaMetrics) and prints that time, and the end checks VictoriaMetrics' reading count,
//! ECOGATE_BENCH_INBOX=0 ecogate without its inbox ([store] inbox = false),
//! ECOGATE_BENCH_RATE the publisher's pace in messages a second, ECOGATE_BENCH_WINDOW a strict in-flight window held by a proxy in front of the subscribers
//! (mosquitto 2.0.11 does not hold its own once acknowledgements flow: tests/common/mqtt_proxy.rs),
//! with Nagle's algorithm on its sockets as mosquitto's default, or off with ECOGATE_BENCH_NODELAY=1.

#[path = "../tests/common/mosquitto.rs"]
mod mosquitto;
#[path = "../tests/common/mqtt_proxy.rs"]
mod mqtt_proxy;
mod support;
#[path = "../tests/common/victoria.rs"]
mod victoria;

use support::{cpu_ticks, hwm_kb, median, pct, publish, rss_kb, self_ticks};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Meters publishing (ECOGATE_BENCH_METERS, default 1,000).
fn meters() -> usize {
    std::env::var("ECOGATE_BENCH_METERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
        .max(1)
}

/// Readings ecogate has committed, and when the last commit was seen, from its log: one debug
/// line a commit (`committed accepted=N`). Scraping /metrics 20 times a second instead cost
/// ecogate two thirds of its CPU at 1,000 meters (a profile of the stock-broker burst), so the
/// bench measured mostly itself. Other log lines pass through to stderr.
#[derive(Clone, Default)]
struct Commits(std::sync::Arc<std::sync::Mutex<(i64, Option<Instant>)>>);

impl Commits {
    fn follow(&self, stderr: std::process::ChildStderr) {
        use std::io::BufRead;
        let me = self.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let n = line
                    .contains(" committed")
                    .then(|| line.split("accepted=").nth(1))
                    .flatten()
                    .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|d| d.parse::<i64>().ok());
                match n {
                    Some(n) => {
                        let mut g = me.0.lock().unwrap();
                        g.0 += n;
                        g.1 = Some(Instant::now());
                    }
                    None => eprintln!("{line}"),
                }
            }
        });
    }

    fn get(&self) -> (i64, Option<Instant>) {
        *self.0.lock().unwrap()
    }
}

/// Readings VictoriaMetrics holds (all rounds' so far), after making recent writes searchable.
fn vm_readings(port: u16, park: &str) -> u64 {
    let _ = victoria::http_get(port, "/internal/force_flush");
    // sum(count_over_time(ecogate_reading_energy_kwh{park="PARK"}[3650d])), URL-encoded.
    let body = victoria::http_get(
        port,
        &format!("/api/v1/query?nocache=1&query=sum%28count_over_time%28ecogate_reading_energy_kwh%7Bpark%3D%22{park}%22%7D%5B3650d%5D%29%29"),
    )
    .unwrap_or_default();
    let Some(v) = body.split("\"value\":[").nth(1) else {
        return 0;
    };
    v.split('"')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// One sample of ecogate's /metrics, by its full name.
fn metric(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return None;
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

/// Round `round`'s messages: every meter's counter goes on where the previous round left it,
/// one reading a second from `t0_ms`, so that every round's readings count.
fn payloads(n: usize, round: usize, t0_ms: i64, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let meters = meters();
    let per_meter = n / meters;
    (0..n)
        .map(|i| {
            let (m, k) = (i % meters, (round * per_meter + i / meters) as i64);
            (
                format!("{prefix}/m{m}"),
                format!("{{\"wh\":{},\"ts\":{}}}", k * 10, t0_ms + k * 1000).into_bytes(),
            )
        })
        .collect()
}

/// The broker's own count of messages it dropped (mosquitto's
/// `$SYS/broker/publish/messages/dropped`, all clients; -1 until heard), kept up to date by a
/// subscriber of the bench's own. The broker publishes it every `sys_interval` (1 s here).
fn follow_broker_drops(
    rt: &tokio::runtime::Runtime,
    port: u16,
) -> std::sync::Arc<std::sync::atomic::AtomicI64> {
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(-1));
    let out = dropped.clone();
    rt.spawn(async move {
        let (client, mut ev) =
            AsyncClient::new(MqttOptions::new("bench-sys", "127.0.0.1", port), 100);
        client
            .subscribe("$SYS/broker/publish/messages/dropped", QoS::AtMostOnce)
            .await
            .unwrap();
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = e {
                if let Some(n) = std::str::from_utf8(&p.payload)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                {
                    out.store(n, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
    dropped
}

/// Drops counted by the broker since `before`, after its next `$SYS` update.
fn drops_since(dropped: &std::sync::atomic::AtomicI64, before: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(1_200));
    (dropped.load(std::sync::atomic::Ordering::Relaxed) - before.max(0)).max(0)
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

/// Messages/s a do-nothing subscriber receives.
async fn bare(port: u16, sub_port: u16, n: usize, qos: QoS) -> (f64, usize) {
    let mut o = MqttOptions::new(format!("bare-{qos:?}"), "127.0.0.1", sub_port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut ev) = AsyncClient::new(o, 10_000);
    client.subscribe("bare/+", qos).await.unwrap();
    loop {
        if let Ok(Event::Incoming(Packet::SubAck(_))) = ev.poll().await {
            break;
        }
    }
    // Its own topics: ecogate, subscribed to bench/+ all along, must not see these.
    let msgs = payloads(n, 0, 0, "bare");
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
    // ECOGATE_BENCH_INFLIGHT: the broker's max_inflight_messages (mosquitto's default is 20).
    let broker = match std::env::var("ECOGATE_BENCH_INFLIGHT") {
        Ok(n) if n == "stock" => mosquitto::Mosquitto::start_with("stock\nsys_interval 1\n"),
        Ok(n) => mosquitto::Mosquitto::start_with(&format!(
            "max_inflight_messages {n}\nmax_queued_messages 0\n"
        )),
        Err(_) => mosquitto::Mosquitto::start(),
    };
    let port = broker.port;
    let broker_pid = broker.pid().expect("mosquitto is running");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let window: Option<usize> = std::env::var("ECOGATE_BENCH_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok());
    let nodelay = std::env::var("ECOGATE_BENCH_NODELAY").is_ok_and(|v| v == "1");
    let proxy =
        window.map(|w| rt.block_on(mqtt_proxy::MqttProxy::start_with(port, Some(w), nodelay)));
    let sub_port = proxy.as_ref().map_or(port, |p| p.port);
    let dropped = follow_broker_drops(&rt, port);
    let drops_now = || dropped.load(std::sync::atomic::Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = String::from(
        "[park]\nname = \"Bench\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 10\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"charging_station\"\n",
    );
    for m in 0..meters() {
        let _ = writeln!(
            cfg,
            "[[meters]]\nid = \"m{m}\"\nsite = \"s\"\nchannels = [{{ id = \"delivered\", carrier = \"charging_delivered\", kind = \"counter\", unit = \"Wh\", max_rate_per_hour = 1e12 }}]"
        );
    }
    let rounds: usize = std::env::var("ECOGATE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    println!("mqtt_ingest: {n} messages a round, {rounds} rounds, {} meters; bare subscriber and ecogate take turns", meters());
    // Every round's readings lie in the past, one second apart per meter, and later than the
    // round before's.
    let t0_ms =
        chrono::Utc::now().timestamp_millis() - (rounds * n / meters()) as i64 * 1000 - 60_000;
    let only = std::env::var("ECOGATE_BENCH_QOS").ok();
    let vm = std::env::var("ECOGATE_BENCH_INFLUX")
        .is_ok_and(|v| v == "1")
        .then(victoria::Victoria::start);
    for (qos_name, qos) in [("0", QoS::AtMostOnce), ("1", QoS::AtLeastOnce)] {
        if only.as_deref().is_some_and(|q| q != qos_name) {
            continue;
        }
        let store = dir.path().join(format!("q{qos_name}.db"));
        let metrics_port = mosquitto::free_port();
        let text = format!(
            "{cfg}[store]\npath = \"{}\"\nmax_batch_readings = 20000\ninbox = {}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {sub_port}\nclient_id = \"ecogate-bench-q{qos_name}\"\n\
             [[mqtt.subscriptions]]\ntopic = \"bench/{{meter}}\"\nqos = {qos_name}\ndecoder = \"json\"\nfields = {{ delivered = \"/wh\" }}\ntimestamp = \"/ts\"\n",
            store.display(),
            // ECOGATE_BENCH_INBOX=0: acknowledge after the accounting commit ([store] inbox).
            std::env::var("ECOGATE_BENCH_INBOX").map_or(true, |v| v != "0")
        );
        // A park name of its own per QoS run: VictoriaMetrics tells the two runs' points apart.
        let text = text.replacen(
            "name = \"Bench\"",
            &format!("name = \"Bench-q{qos_name}\""),
            1,
        );
        let text = match &vm {
            Some(vm) => format!(
                "{text}[influx]\nurl = \"{}\"\norg = \"o\"\nbucket = \"b\"\n[influx.outbox]\ndir = \"{}\"\n",
                vm.url(),
                dir.path().join(format!("outbox-q{qos_name}")).display()
            ),
            None => text,
        };
        let cfg_path = dir.path().join(format!("q{qos_name}.toml"));
        std::fs::write(&cfg_path, text).unwrap();
        // ECOGATE_BENCH_BIN: another build to measure (an earlier commit's, for an A/B).
        let bin = std::env::var("ECOGATE_BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ecogate").to_string());
        let mut child = std::process::Command::new(bin)
            .args(["run", "--config", cfg_path.to_str().unwrap()])
            .env(
                "ECOGATE_LOG",
                format!(
                    "{},ecogate::pipeline=debug",
                    std::env::var("ECOGATE_BENCH_LOG").unwrap_or_else(|_| "error".into())
                ),
            )
            .env("MALLOC_ARENA_MAX", "2")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let commits = Commits::default();
        commits.follow(child.stderr.take().expect("piped"));
        // A failed round must not leave ecogate running (it would hold cargo's output open).
        let kill = KillOnDrop(pid);
        std::thread::sleep(Duration::from_millis(1500));
        let (mut ratios, mut bare_rates, mut rates, mut cpus) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut held_rates: Vec<f64> = Vec::new();
        // Readings in the store (unique), and commits' accepted readings as logged: more than
        // the store's when a reconnect redelivered messages already taken (their copies add
        // nothing to the figures and no row to the store).
        let mut stored = 0;
        let mut logged = 0;
        let store_rows = || -> i64 {
            rusqlite::Connection::open(&store)
                .and_then(|c| c.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0)))
                .unwrap_or(0)
        };
        let (mut bare_drops, mut eco_drops) = (0i64, 0i64);
        for round in 0..rounds {
            let drops0 = drops_now();
            let (b0, s0, t0) = (cpu_ticks(broker_pid), self_ticks(), Instant::now());
            // ECOGATE_BENCH_SKIP_BARE=1 (the soak): no ceiling round, ratios are left out.
            let (ceiling, bare_got) =
                if std::env::var("ECOGATE_BENCH_SKIP_BARE").is_ok_and(|v| v == "1") {
                    (f64::NAN, 0)
                } else {
                    rt.block_on(bare(port, sub_port, n, qos))
                };
            let bare_secs = t0.elapsed().as_secs_f64();
            let bare_broker = pct(cpu_ticks(broker_pid) - b0, bare_secs);
            let bare_self = pct(self_ticks() - s0, bare_secs);
            let bare_dropped = drops_since(&dropped, drops0);
            bare_drops += bare_dropped;
            let drops0 = drops_now();
            let cpu0 = cpu_ticks(pid);
            let (b0, s0) = (cpu_ticks(broker_pid), self_ticks());
            let msgs = payloads(n, round, t0_ms, "bench");
            let target = stored + n as i64;
            let logged_target = logged + n as i64;
            let before = stored;
            let started = Instant::now();
            let publisher = rt.spawn(publish(port, "pub-ecogate", msgs, qos));
            let mut last_change = Instant::now();
            let mut done_at = started;
            // ECOGATE_BENCH_RSS_EVERY_S: print ecogate's resident set at that interval (the soak's
            // curve: it must level off).
            let rss_every = std::env::var("ECOGATE_BENCH_RSS_EVERY_S")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut next_rss = started;
            while logged < logged_target && last_change.elapsed() < Duration::from_secs(10) {
                if let Some(every) = rss_every {
                    if Instant::now() >= next_rss {
                        println!(
                            "    rss t={:.0} s: {:.1} MB ({logged} committed)",
                            started.elapsed().as_secs_f64(),
                            rss_kb(pid) as f64 / 1024.0
                        );
                        next_rss += every;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
                let (c, at) = commits.get();
                if c != logged {
                    logged = c;
                    last_change = Instant::now();
                    done_at = at.unwrap_or(last_change);
                }
            }
            // The log's count is reached; the store's must be too (a redelivered copy counted
            // in the log is no reading of this round).
            stored = store_rows();
            while stored < target && last_change.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(100));
                let (c, at) = commits.get();
                if c != logged {
                    logged = c;
                    last_change = Instant::now();
                    done_at = at.unwrap_or(last_change);
                }
                stored = store_rows();
            }
            let secs = done_at.duration_since(started).as_secs_f64();
            let cpu = pct(cpu_ticks(pid) - cpu0, secs);
            if let Some(vm) = &vm {
                // Until VictoriaMetrics answers with every reading committed so far.
                let wait_from = Instant::now();
                while vm_readings(vm.port, &format!("Bench-q{qos_name}")) < stored as u64
                    && wait_from.elapsed() < Duration::from_secs(120)
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let held = started.elapsed().as_secs_f64();
                println!(
                    "    InfluxDB: every point of the round held by VictoriaMetrics {held:.1} s after the publisher started ({:.0} msg/s end to end); lines written {:.0}, coalesced away {:.0}",
                    (stored - before) as f64 / held,
                    metric(metrics_port, "ecogate_influx_lines_written_total").unwrap_or(0.0),
                    metric(metrics_port, "ecogate_influx_lines_coalesced_total").unwrap_or(0.0)
                );
                held_rates.push((stored - before) as f64 / held);
            }
            let (eco_broker, eco_self) = (
                pct(cpu_ticks(broker_pid) - b0, secs),
                pct(self_ticks() - s0, secs),
            );
            rt.block_on(publisher).unwrap();
            let eco_dropped = drops_since(&dropped, drops0);
            eco_drops += eco_dropped;
            let rate = (stored - before) as f64 / secs;
            println!(
                "  QoS {qos_name} round {}: bare {ceiling:.0} msg/s ({bare_got}/{n}; broker dropped {bare_dropped}; broker CPU {bare_broker:.0} %, publisher+bare {bare_self:.0} %); ecogate {rate:.0} msg/s ({}/{n} committed in {secs:.1} s; broker dropped {eco_dropped}; CPU {cpu:.0} % of one core; broker {eco_broker:.0} %, publisher {eco_self:.0} %) = {:.1} %",
                round + 1,
                stored - before,
                rate / ceiling * 100.0
            );
            if stored < target {
                // A broker with a queue cap (mosquitto's stock 1,000) drops what overflows it.
                println!(
                    "    {} of the round's {n} messages never reached ecogate; the broker reports {:.0} dropped (ecogate_mqtt_broker_dropped_messages)",
                    target - stored,
                    metric(metrics_port, "ecogate_mqtt_broker_dropped_messages").unwrap_or(-1.0)
                );
            }
            ratios.push(rate / ceiling * 100.0);
            bare_rates.push(ceiling);
            rates.push(rate);
            cpus.push(cpu);
        }
        let hwm = hwm_kb(pid);
        let commits = metric(metrics_port, "ecogate_store_commits_total").unwrap_or(0.0);
        let commit_s = metric(metrics_port, "ecogate_store_commit_seconds_sum").unwrap_or(0.0);
        println!(
            "QoS {qos_name}: {commits:.0} commits, {:.2} ms each on average, {:.0} of them group commits; {:.0} inbox appends ({:.0} group appends); broker window learned: {:.0}",
            commit_s * 1000.0 / commits.max(1.0),
            metric(metrics_port, "ecogate_store_group_commits_total").unwrap_or(0.0),
            metric(metrics_port, "ecogate_inbox_appends_total").unwrap_or(0.0),
            metric(metrics_port, "ecogate_inbox_group_appends_total").unwrap_or(0.0),
            metric(metrics_port, "ecogate_mqtt_broker_inflight_window").unwrap_or(0.0)
        );
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let _ = child.wait();
        std::mem::forget(kill);
        let in_store = store_rows();
        assert_eq!(in_store, stored, "the store holds what the rounds counted");
        if logged > in_store {
            println!(
                "QoS {qos_name}: {} readings were delivered twice (redelivered after a reconnect) and stored once",
                logged - in_store
            );
        }
        let store_bytes: u64 = ["", "-wal"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", store.display())).ok())
            .map(|m| m.len())
            .sum();
        println!(
            "QoS {qos_name}: store {store_bytes} bytes for {in_store} readings of {} meters: {:.0} bytes per reading",
            meters(),
            store_bytes as f64 / in_store.max(1) as f64
        );
        if let Some(vm) = &vm {
            let in_vm = vm_readings(vm.port, &format!("Bench-q{qos_name}"));
            println!(
                "QoS {qos_name}: InfluxDB: VictoriaMetrics holds {in_vm} readings of {stored} committed; median end-to-end {:.0} msg/s ({:.1} % of the bare subscriber)",
                median(&held_rates),
                median(&held_rates) / median(&bare_rates) * 100.0
            );
        }
        println!(
            "QoS {qos_name}: median of {rounds} rounds: bare subscriber {:.0} msg/s, ecogate into the store {:.0} msg/s, ratio {:.1} % (rounds {:.1}-{:.1} %); ecogate CPU {:.0} % of one core, peak RSS {:.1} MB; broker dropped {bare_drops} (bare) and {eco_drops} (ecogate) of {} each",
            median(&bare_rates),
            median(&rates),
            median(&ratios),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
            median(&cpus),
            hwm as f64 / 1024.0,
            rounds * n
        );
    }
}
