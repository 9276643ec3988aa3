//! InfluxDB sink throughput (prints figures; not a test). Needs `victoria-metrics` on PATH
//! (scripts/test.sh installs it); the bench starts its own on a free loopback port.
//!
//! 1. Line-protocol encoder alone, one core: `ecogate_reading` lines and `ecogate_window` lines.
//! 2. Sink path: encoded batches -> outbox (fsync = always, one fsync per 5,000-line record) ->
//!    sender (gzip) -> VictoriaMetrics, against the same bodies POSTed straight to the server by
//!    one client (the ceiling this machine gives one in-flight request) measured in the same run.
//! 3. The whole pipeline: accounting + SQLite commit + outbox + sender, against the pipeline with
//!    the store alone, in the same run.
//!
//! Medians of 3 (encoder: 5) runs. Run: `cargo bench --bench influx_sink`.

use ecogate::accounting::ledger::{Accepted, AggKey, ChannelRef, Entity};
use ecogate::accounting::metric::{Metric, Sums};
use ecogate::accounting::window::WindowKind;
use ecogate::app::AppConfig as Config;
use ecogate::metrics::Metrics;
use ecogate::pipeline::Pipeline;
use ecogate::reading::{Quality, Reading};
use ecogate::sinks::influx::metrics::InfluxMetrics;
use ecogate::sinks::influx::schema::Encoder;
use ecogate::sinks::influx::sender::Sender;
use ecogate::sinks::outbox::{FsyncPolicy, Outbox, OutboxConfig, WhenFull};
use ecogate::sinks::store::Store;
use ecogate::units::Unit;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

const METERS: usize = 1_000;
const BATCH_LINES: usize = 5_000;

fn config_text(influx: Option<(&str, &Path)>) -> String {
    let mut text = String::from(
        "[park]\nname = \"Bench Park\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 10\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"factory\"\n",
    );
    for m in 0..METERS {
        text.push_str(&format!(
            "[[meters]]\nid = \"m{m}\"\nsite = \"s\"\nchannels = [{{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 100000 }}]\n"
        ));
    }
    if let Some((url, dir)) = influx {
        text.push_str(&format!(
            "[influx]\nurl = \"{url}\"\norg = \"o\"\nbucket = \"b\"\nflush_interval_ms = 20\n[influx.outbox]\ndir = \"{}\"\nfsync = \"always\"\n",
            dir.display()
        ));
    }
    text
}

fn config(text: &str) -> Arc<Config> {
    Arc::new(Config::parse(Path::new("bench.toml"), text).expect("valid bench config"))
}

fn core(cfg: &Config) -> Arc<ecogate::config::Config> {
    cfg.core.clone()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server, its data folder (deleted on drop) and its port.
struct Vm(Child, #[allow(dead_code)] tempfile::TempDir, u16);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_vm() -> Vm {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new("victoria-metrics")
        .arg(format!("-storageDataPath={}", dir.path().display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        .arg("-loggerLevel=ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("victoria-metrics on PATH");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    Vm(child, dir, port)
}

/// `seconds` of one reading per meter per second, from `t0`.
fn accepted(seconds: usize, t0: i64) -> Vec<Accepted> {
    let mut out = Vec::with_capacity(METERS * seconds);
    for s in 0..seconds {
        for m in 0..METERS {
            out.push(Accepted {
                channel: ChannelRef {
                    meter: m as u32,
                    channel: 0,
                },
                ts_ms: t0 + s as i64 * 1000,
                base_amount: 1_000.0 + s as f64 * 0.25 + m as f64,
                quality: Quality::Good,
                held: false,
                maybe_stored: false,
            });
        }
    }
    out
}

/// Encoded reading lines, cut into bodies of `BATCH_LINES`.
fn bodies(enc: &Encoder, points: &[Accepted]) -> Vec<Vec<u8>> {
    points
        .chunks(BATCH_LINES)
        .map(|c| {
            let mut out = Vec::with_capacity(c.len() * 120);
            for a in c {
                enc.reading(&mut out, a);
            }
            out
        })
        .collect()
}

fn encoder_bench(cfg: &Arc<Config>) {
    let enc = Encoder::new(core(cfg), WindowKind::ALL, true);
    let points = accepted(1_000, 1_767_225_600_000);
    let mut out = Vec::with_capacity(BATCH_LINES * 130);
    let mut readings = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        for chunk in points.chunks(BATCH_LINES) {
            out.clear();
            for a in chunk {
                enc.reading(&mut out, a);
            }
        }
        readings.push(points.len() as f64 / start.elapsed().as_secs_f64());
    }
    // Window lines as a busy factory meter's: 12 figures each (site level adds derived ratios).
    let mut sums = Sums::default();
    for (i, m) in Metric::ALL.iter().enumerate().take(12) {
        sums.add(*m, 1_234_567 * (i as i64 + 1));
    }
    let keys: Vec<AggKey> = (0..200_000)
        .map(|i| AggKey {
            window: WindowKind::ALL[i % 6],
            start_ms: 1_767_225_600_000 + (i as i64 / 6) * 60_000,
            entity: if i % 50 == 0 {
                Entity::Site(0)
            } else {
                Entity::Meter((i % METERS) as u32)
            },
        })
        .collect();
    let mut windows = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        for chunk in keys.chunks(BATCH_LINES) {
            out.clear();
            for k in chunk {
                enc.window(&mut out, k, &sums, &sums, 1_767_225_600_000 + 3_600_000);
            }
        }
        windows.push(keys.len() as f64 / start.elapsed().as_secs_f64());
    }
    let sample = {
        let mut o = Vec::new();
        enc.reading(&mut o, &points[0]);
        String::from_utf8(o).unwrap()
    };
    println!("encoder (one core, median of 5):");
    println!(
        "  reading lines   {:>12.0} lines/s   e.g. {}",
        median(&readings),
        sample.trim_end()
    );
    println!(
        "  window lines    {:>12.0} lines/s   (12 figures; every 50th a site line with ratios)",
        median(&windows)
    );
}

fn post_direct(port: u16, bodies: &[Vec<u8>]) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v2/write?org=o&bucket=b&precision=ms");
    let lines: usize = bodies
        .iter()
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .sum();
    let start = Instant::now();
    rt.block_on(async {
        for b in bodies {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(b).unwrap();
            let gz = enc.finish().unwrap();
            let r = client
                .post(&url)
                .header("Content-Encoding", "gzip")
                .body(gz)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 204);
        }
    });
    lines as f64 / start.elapsed().as_secs_f64()
}

fn influx_config(cfg_text: &str) -> ecogate::sinks::influx::config::InfluxConfig {
    config(cfg_text).influx.clone().expect("influx configured")
}

/// Outbox + sender + server: points/s from the first append to the last 204.
fn sink_path(port: u16, bodies: &[Vec<u8>]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let ic = influx_config(&config_text(Some((&url, &dir.path().join("outbox")))));
    let (outbox, _) = Outbox::open(
        OutboxConfig {
            dir: dir.path().join("outbox"),
            max_bytes: 4 << 30,
            segment_bytes: 16 << 20,
            fsync: FsyncPolicy::Always,
            when_full: WhenFull::Block,
        },
        None,
    )
    .unwrap();
    let outbox = Arc::new(outbox);
    let metrics = InfluxMetrics::register(&prometheus::Registry::new());
    let lines: u64 = bodies
        .iter()
        .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
        .sum();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let sender = Sender::new(ic, outbox.clone(), metrics.clone()).unwrap();
    let start = Instant::now();
    let task = rt.spawn(sender.run(rx));
    let go = AtomicBool::new(false);
    for (seq, b) in bodies.iter().enumerate() {
        let n = b.iter().filter(|&&c| c == b'\n').count() as u32;
        outbox.append(seq as u64 + 1, n, b, &go).unwrap();
        outbox.commit(seq as u64 + 1);
    }
    while metrics.lines_written.get() < lines {
        std::thread::sleep(Duration::from_millis(2));
    }
    let rate = lines as f64 / start.elapsed().as_secs_f64();
    let _ = tx.send(true);
    rt.block_on(task).unwrap();
    rate
}

/// One reading per meter per second for `seconds` from `t0`.
fn readings(seconds: usize, t0: i64) -> Vec<Reading> {
    let kwh = Unit::parse("kWh").unwrap();
    (0..seconds)
        .flat_map(|s| {
            (0..METERS).map(move |m| Reading {
                meter: format!("m{m}"),
                channel: "import".into(),
                amount: 1_000.0 + s as f64 * 0.5 + m as f64,
                unit: kwh,
                ts_ms: t0 + s as i64 * 1000,
                quality: Quality::Good,
                stamped_on_arrival: false,
            })
        })
        .collect()
}

/// Accounting + store + outbox + sender: points (reading and window lines) delivered per second.
fn whole_pipeline(port: u16, seconds: usize, t0: i64) -> (f64, f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let text = config_text(Some((&url, &dir.path().join("outbox"))));
    let cfg = config(&text);
    let metrics = Arc::new(Metrics::new());
    let (mut p, outbox) =
        ecogate::app::daemon::open_pipeline(&cfg, &dir.path().join("store.db"), &metrics).unwrap();
    let outbox = outbox.unwrap();
    let im = (*metrics.component(InfluxMetrics::register)).clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let sender = Sender::new(cfg.influx.clone().unwrap(), outbox.clone(), im.clone()).unwrap();
    let readings = readings(seconds, t0);
    let start = Instant::now();
    let task = rt.spawn(sender.run(rx));
    for chunk in readings.chunks(10_000) {
        p.ingest(chunk).unwrap();
    }
    let ingest_s = start.elapsed().as_secs_f64();
    while outbox.stats().pending_lines > 0 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let lines = im.lines_written.get();
    let rate = lines as f64 / start.elapsed().as_secs_f64();
    let _ = tx.send(true);
    rt.block_on(task).unwrap();
    (rate, readings.len() as f64 / ingest_s, lines)
}

fn store_only(seconds: usize, t0: i64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&config_text(None));
    let store = Store::open(&dir.path().join("store.db")).unwrap();
    let mut p = Pipeline::open(core(&cfg), store, Arc::new(Metrics::new())).unwrap();
    let readings = readings(seconds, t0);
    let start = Instant::now();
    for chunk in readings.chunks(10_000) {
        p.ingest(chunk).unwrap();
    }
    readings.len() as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let cfg = config(&config_text(None));
    encoder_bench(&cfg);

    let vm = start_vm();
    let enc = Encoder::new(core(&cfg), WindowKind::ALL, true);
    let mut direct = Vec::new();
    let mut sink = Vec::new();
    for run in 0..3 {
        // Each run its own hour of timestamps, so no run rewrites another's points.
        let base = 1_767_225_600_000 + run as i64 * 2 * 3_600_000;
        let a = bodies(&enc, &accepted(600, base));
        direct.push(post_direct(vm.2, &a));
        let b = bodies(&enc, &accepted(600, base + 3_600_000));
        sink.push(sink_path(vm.2, &b));
    }
    let (d, s) = (median(&direct), median(&sink));
    println!(
        "sink path, 600,000 reading points, 5,000-line gzip requests, one in flight (median of 3):"
    );
    println!("  POST straight to VictoriaMetrics  {d:>10.0} points/s   (baseline)");
    println!(
        "  outbox (fsync always) + sender    {s:>10.0} points/s   ratio {:.2}",
        s / d
    );

    let mut whole = Vec::new();
    let mut ingest = Vec::new();
    let mut alone = Vec::new();
    let mut lines = 0;
    for run in 0..3 {
        let base = 1_767_225_600_000 + (10 + run as i64) * 24 * 3_600_000;
        let (r, i, l) = whole_pipeline(vm.2, 60, base);
        whole.push(r);
        ingest.push(i);
        lines = l;
        alone.push(store_only(60, base));
    }
    println!("whole pipeline, 1,000 meters x 60 s in commits of 10,000 readings (median of 3):");
    println!(
        "  store only                         {:>10.0} readings/s   (baseline)",
        median(&alone)
    );
    println!(
        "  store + outbox + InfluxDB          {:>10.0} readings/s   ratio {:.2}",
        median(&ingest),
        median(&ingest) / median(&alone)
    );
    println!(
        "  points delivered (readings + window totals, {lines} lines a run) {:>10.0} points/s",
        median(&whole)
    );
}
