//! Zero loss through the outbox: `ecogate run` fed over MQTT (QoS 1) writes to a real
//! VictoriaMetrics that goes away for 60 s; ecogate is killed -9 during the outage; the outbox
//! has a torn record at start; the outbox's disk fills up or it reaches its size cap. Every
//! reading must arrive with its exact value and timestamp, a repeat only as an identical point.

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/victoria.rs"]
mod victoria;

use common::Kill;
use mosquitto::{free_port, Mosquitto};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use victoria::Victoria;

const METERS: usize = 40;
const PER_METER: usize = 150;
/// 2026-05-28T20:00:00Z.
const T0_MS: i64 = 1_780_000_800_000;
const OUTAGE: Duration = Duration::from_secs(60);

type Points = BTreeMap<(String, i64), f64>;

/// Meter i's k-th reading: `5000 + k * (i + 1) * 0.5` kWh at minute k.
fn messages() -> (Vec<(String, Vec<u8>)>, Points) {
    let mut out = Vec::new();
    let mut truth = BTreeMap::new();
    for k in 0..PER_METER {
        for i in 0..METERS {
            let ts = T0_MS + k as i64 * 60_000;
            let kwh = 5000.0 + (k * (i + 1)) as f64 * 0.5;
            out.push((
                format!("park/m{i}/energy"),
                format!("{{\"kwh\":{kwh},\"ts\":{ts}}}").into_bytes(),
            ));
            truth.insert((format!("m{i}"), ts), kwh);
        }
    }
    (out, truth)
}

/// The firm's import: sum over meters of 149 x (i + 1) x 0.5 = 149 x 820 x 0.5 = 61,090 kWh.
const TRUTH_IMPORT_KWH: f64 = 61_090.0;

struct Daemon {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    metrics_port: u16,
    log: PathBuf,
}

fn daemon(broker: u16, influx_port: u16, outbox_extra: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let mut t = String::from(
        "[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 10\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"factory\"\n",
    );
    for i in 0..METERS {
        t.push_str(&format!(
            "[[meters]]\nid = \"m{i}\"\nsite = \"s\"\nchannels = [{{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 100000 }}]\n"
        ));
    }
    t.push_str(&format!(
        "[store]\npath = \"{}\"\ncommit_interval_ms = 200\nmax_batch_readings = 500\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {broker}\nclient_id = \"ecogate-influx\"\n\
         [[mqtt.subscriptions]]\ntopic = \"park/{{meter}}/energy\"\ndecoder = \"json\"\nfields = {{ import = \"/kwh\" }}\ntimestamp = \"/ts\"\n\
         [influx]\nurl = \"http://127.0.0.1:{influx_port}\"\norg = \"o\"\nbucket = \"b\"\nflush_interval_ms = 100\n\
         retry_initial_ms = 200\nretry_max_ms = 2000\n\
         [influx.outbox]\ndir = \"{}\"\n{outbox_extra}\n",
        dir.path().join("store.db").display(),
        dir.path().join("outbox").display()
    ));
    let cfg = dir.path().join("ecogate.toml");
    std::fs::write(&cfg, t).unwrap();
    let log = dir.path().join("ecogate.log");
    Daemon {
        dir,
        cfg,
        metrics_port,
        log,
    }
}

impl Daemon {
    fn start(&self) -> Kill {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        Kill(
            Command::new(env!("CARGO_BIN_EXE_ecogate"))
                .args(["run", "--config"])
                .arg(&self.cfg)
                .env("ECOGATE_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metric(&self, name: &str) -> Option<f64> {
        victoria::scraped(self.metrics_port, name)
    }

    fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }
}

/// Publishes with QoS 1 and waits for the broker's acknowledgements (a minute at most).
async fn publish(port: u16, messages: Vec<(String, Vec<u8>)>) {
    mosquitto::publish_qos1(
        port,
        "influx-publisher",
        messages,
        Duration::from_secs(60),
        || {},
    )
    .await;
}

fn readings_in(vm: &Victoria) -> Points {
    let mut got = BTreeMap::new();
    for s in vm.export("ecogate_reading_energy_kwh") {
        for (ts, v) in s.samples {
            let key = (s.labels["meter"].clone(), ts);
            if let Some(prev) = got.insert(key.clone(), v) {
                assert_eq!(prev, v, "two different values for {key:?}");
            }
        }
    }
    got
}

/// The firm's year total, as the last (largest) value written per window.
fn firm_year_import_kwh(vm: &Victoria) -> f64 {
    let mut per_window: BTreeMap<i64, f64> = BTreeMap::new();
    for s in vm.export(r#"ecogate_window_grid_import_kwh{level="firm",window="year"}"#) {
        for (ts, v) in s.samples {
            let e = per_window.entry(ts).or_insert(v);
            *e = e.max(v);
        }
    }
    per_window.values().sum()
}

/// Polls VictoriaMetrics until it holds `want` (or `limit` passes); returns what it holds.
async fn wait_for(vm: &Victoria, want: &Points, limit: Duration) -> Points {
    let deadline = Instant::now() + limit;
    loop {
        let got = tokio::task::block_in_place(|| readings_in(vm));
        if &got == want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if tokio::task::block_in_place(&mut f) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn outage(kill_during_outage: bool) {
    let broker = Mosquitto::start();
    let mut vm = Victoria::start();
    let d = daemon(broker.port, vm.port, "");
    let mut ecogate = d.start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (msgs, truth) = messages();
    let half = msgs.len() / 2;
    let (first, second) = (msgs[..half].to_vec(), msgs[half..].to_vec());
    publish(broker.port, first).await;
    // Some data has reached the server before it goes away.
    assert!(
        wait_until(Duration::from_secs(30), || !readings_in(&vm).is_empty()).await,
        "nothing reached VictoriaMetrics before the outage"
    );
    let outage_started = Instant::now();
    vm.stop();
    publish(broker.port, second).await;
    // Everything is accounted (and so in the outbox) while the server is still away.
    assert!(
        wait_until(Duration::from_secs(40), || d
            .metric("ecogate_readings_accepted_total")
            .is_some_and(|n| n >= (METERS * PER_METER) as f64))
        .await,
        "not all readings accounted during the outage"
    );
    let pending = d.metric("ecogate_outbox_pending_lines").unwrap();
    assert!(pending > 0.0, "the outbox holds the undelivered lines");
    if kill_during_outage {
        ecogate.0.kill().unwrap(); // SIGKILL
        ecogate.0.wait().unwrap();
        ecogate = d.start();
    }
    let left = OUTAGE.saturating_sub(outage_started.elapsed());
    tokio::time::sleep(left).await;
    vm.start_again();
    let got = wait_for(&vm, &truth, Duration::from_secs(60)).await;
    let missing = truth.keys().filter(|k| !got.contains_key(k)).count();
    assert_eq!(missing, 0, "readings missing in VictoriaMetrics");
    assert_eq!(got, truth);
    let total = tokio::task::block_in_place(|| firm_year_import_kwh(&vm));
    assert_eq!(total, TRUTH_IMPORT_KWH);
    assert!(
        d.metric("ecogate_influx_retries_total{reason=\"network\"}")
            .is_some_and(|n| n > 0.0),
        "the outage shows in the retry counter"
    );
    drop(ecogate);
    eprintln!(
        "outage (kill -9: {kill_during_outage}): {} readings exact, {pending} lines were waiting in the outbox",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_60_s_outage_loses_nothing() {
    outage(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_the_outage_loses_nothing() {
    outage(true).await;
}

/// A record cut short by a crash mid-append sits at the end of the outbox at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_record_is_cut_counted_and_the_rest_delivered() {
    let broker = Mosquitto::start();
    let vm_port = free_port();
    let d = daemon(broker.port, vm_port, "");
    // Fill the outbox with the server away.
    let ecogate = d.start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (msgs, truth) = messages();
    publish(broker.port, msgs).await;
    assert!(
        wait_until(Duration::from_secs(40), || d
            .metric("ecogate_readings_accepted_total")
            .is_some_and(|n| n >= (METERS * PER_METER) as f64))
        .await
    );
    drop(ecogate); // SIGKILL
    let last = last_segment(&d.outbox());
    // A header announcing 1,000 payload bytes, followed by 10 of them.
    let mut torn = Vec::new();
    torn.extend_from_slice(&0x4547_4f31u32.to_le_bytes());
    torn.extend_from_slice(&1000u32.to_le_bytes());
    torn.extend_from_slice(&[0u8; 24]);
    torn.extend_from_slice(b"ecogate_re");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    std::io::Write::write_all(&mut f, &torn).unwrap();
    drop(f);
    let vm = Victoria::start_on(vm_port);
    let ecogate = d.start();
    let got = wait_for(&vm, &truth, Duration::from_secs(60)).await;
    assert_eq!(got, truth);
    assert_eq!(d.metric("ecogate_outbox_torn_bytes_total"), Some(42.0));
    assert!(d.log_text().contains("torn"), "{}", d.log_text());
    drop(ecogate);
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

/// The outbox cannot take more (its disk is full, or it is at its cap) while the server is
/// away: ecogate says so, keeps running, acknowledges nothing it has not stored, and once the
/// server is back every reading arrives.
async fn backpressure(d: &Daemon, broker: u16, vm_port: u16, expect_in_log: &str) -> Kill {
    let ecogate = d.start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (msgs, truth) = messages();
    publish(broker, msgs).await;
    assert!(
        wait_until(Duration::from_secs(60), || d
            .log_text()
            .contains(expect_in_log))
        .await,
        "no `{expect_in_log}` in the log:\n{}",
        d.log_text()
    );
    let mut ecogate = ecogate;
    assert!(ecogate.0.try_wait().unwrap().is_none(), "ecogate exited");
    let accepted = d.metric("ecogate_readings_accepted_total").unwrap_or(0.0);
    assert!(
        accepted < (METERS * PER_METER) as f64,
        "the pipeline was held back ({accepted} accepted)"
    );
    let vm = Victoria::start_on(vm_port);
    let got = wait_for(&vm, &truth, Duration::from_secs(150)).await;
    let missing = truth.keys().filter(|k| !got.contains_key(k)).count();
    let log = d.log_text();
    assert_eq!(
        missing,
        0,
        "readings missing; log ends:\n{}",
        &log[log.len().saturating_sub(3000)..]
    );
    assert_eq!(got, truth);
    let total = tokio::task::block_in_place(|| firm_year_import_kwh(&vm));
    assert_eq!(total, TRUTH_IMPORT_KWH);
    ecogate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_size_cap_the_pipeline_waits_and_nothing_is_lost() {
    let broker = Mosquitto::start();
    let vm_port = free_port();
    let d = daemon(
        broker.port,
        vm_port,
        "max_bytes = 262144\nsegment_bytes = 65536\nwhen_full = \"block\"",
    );
    let ecogate = backpressure(&d, broker.port, vm_port, "outbox full").await;
    assert_eq!(d.metric("ecogate_outbox_full"), Some(0.0));
    drop(ecogate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_nothing_is_lost() {
    let broker = Mosquitto::start();
    let vm_port = free_port();
    let d = daemon(broker.port, vm_port, "segment_bytes = 65536");
    std::fs::create_dir_all(d.outbox()).unwrap();
    // A 1 MiB disk for the outbox alone (the store stays on the big one): room for a few
    // commits (at most 500 readings each), not for the whole stream.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(d.outbox())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        mounted,
        "mounting a small tmpfs needs root (the CI machine runs the suite as root)"
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(d.outbox());
    drop(backpressure(&d, broker.port, vm_port, "No space left on device").await);
}
