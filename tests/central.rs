//! The city view (docs/scale-out.md): two park gateways forward their windows to one
//! VictoriaMetrics through a link that drops, one gateway killed -9 while it is down; the
//! city's `report --central` and `evaluate --central` then give, per firm, exactly what each
//! park's own store gives. Real mosquitto, real VictoriaMetrics, real ecogate processes; the
//! proxy only cuts the link.
//!
//! The outage lasts 2 minutes; ECOGATE_TEST_OUTAGE_S sets another length (seconds).

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/tcp_proxy.rs"]
mod tcp_proxy;

use common::count;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FIRMS_PER_PARK: usize = 10;
const PER_METER: usize = 17;

/// Meter i of a park rises by this much a reading, kWh.
fn step_kwh(i: usize) -> f64 {
    1.5 + (i % 11) as f64 * 0.25
}

fn firms(prefix: &str) -> String {
    let mut t = String::new();
    for i in 0..FIRMS_PER_PARK {
        t.push_str(&format!(
            "[[firms]]\nid = \"{prefix}{i:02}\"\nname = \"{prefix}-firm {i}\"\nland_mu = {}\n\
             [[sites]]\nid = \"{prefix}s{i:02}\"\nfirm = \"{prefix}{i:02}\"\nkind = \"factory\"\n\
             [[meters]]\nid = \"{prefix}m{i:02}\"\nsite = \"{prefix}s{i:02}\"\nchannels = [{{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 1000 }}]\n",
            10 + i
        ));
    }
    t
}

/// A park gateway: its firms, its broker topics `<prefix>/<meter>/energy`, its InfluxDB sink
/// at `influx` (the city's VictoriaMetrics, through the proxy).
fn gateway(prefix: &str, dir: &Path, broker: u16, influx: &str) -> PathBuf {
    let d = dir.join(prefix);
    std::fs::create_dir_all(&d).unwrap();
    let text = format!(
        "[park]\nname = \"Park {prefix}\"\ngrid_factor_year = 2022\n{}\
         [store]\npath = \"{}/store.db\"\ncommit_interval_ms = 200\n[metrics]\nenabled = false\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {broker}\nclient_id = \"gateway-{prefix}\"\n\
         [[mqtt.subscriptions]]\ntopic = \"{prefix}/{{meter}}/energy\"\ndecoder = \"json\"\nfields = {{ import = \"/kwh\" }}\ntimestamp = \"/ts\"\n\
         [influx]\nurl = \"{influx}\"\norg = \"city\"\nbucket = \"ecogate\"\nflush_interval_ms = 200\nretry_initial_ms = 200\nretry_max_ms = 1000\nwindows = [\"15m\", \"1h\", \"1d\", \"month\", \"year\"]\n",
        firms(prefix),
        d.display()
    );
    let path = d.join("ecogate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The city: every firm of both parks, no sources; it only reads back.
fn city(dir: &Path, influx: &str) -> PathBuf {
    let d = dir.join("city");
    std::fs::create_dir_all(&d).unwrap();
    let text = format!(
        "[park]\nname = \"City\"\ngrid_factor_year = 2022\n{}{}\
         [store]\npath = \"{}/store.db\"\n[metrics]\nenabled = false\n\
         [influx]\nurl = \"{influx}\"\norg = \"city\"\nbucket = \"ecogate\"\n",
        firms("a"),
        firms("b"),
        d.display()
    );
    let path = d.join("ecogate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A gateway's process, and whether the broker has acknowledged its subscription yet (its
/// log says so).
struct Daemon(Option<Child>, PathBuf, Arc<AtomicBool>);

impl Daemon {
    fn start(cfg: &Path) -> Daemon {
        let mut d = Daemon(None, cfg.to_path_buf(), Arc::default());
        d.spawn();
        d
    }
    fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ecogate"))
            .args(["run", "--config", self.1.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let flag = self.2.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("mqtt subscription acknowledged") {
                    flag.store(true, Ordering::SeqCst);
                }
                eprintln!("{line}");
            }
        });
        self.0 = Some(child);
    }
    /// Waits (60 s at most) for the subscription: a message published before it would not be
    /// kept for a session that does not exist yet.
    fn wait_subscribed(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.2.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "{} never subscribed",
                self.1.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn kill_9(&mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// A one-shot command as of one fixed "now" for the whole test (see `common::ecogate_as_of`).
fn ecogate(args: &[&str]) -> (i32, String, String) {
    static NOW: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    common::ecogate_as_of(NOW.get_or_init(|| chrono::Utc::now().to_rfc3339()), args)
}

/// The firm rows of a JSON report or evaluation (not the park's total): firm id -> the
/// columns in `keys`.
fn firm_rows(json: &str, keys: &[&str]) -> BTreeMap<String, Vec<Value>> {
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let mut out = BTreeMap::new();
    for table in v["tables"].as_array().unwrap() {
        for row in table["rows"].as_array().unwrap() {
            if let Some(id) = row["firm_id"].as_str().filter(|id| *id != "park") {
                if row.get(keys[0]).is_some() {
                    out.insert(
                        id.to_string(),
                        keys.iter().map(|k| row[*k].clone()).collect(),
                    );
                }
            }
        }
    }
    out
}

/// `ecogate ARGS --format json --lang en`, which must succeed: its firm rows (see
/// [`firm_rows`]) and its stderr.
fn json_rows(args: &[&str], keys: &[&str]) -> (BTreeMap<String, Vec<Value>>, String) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--format", "json", "--lang", "en"]);
    let (code, out, err) = ecogate(&all);
    assert_eq!(code, 0, "{all:?}: {err}");
    (firm_rows(&out, keys), err)
}

/// Grid import of the whole city as `report --central` reads it back, kWh.
fn city_import(city: &str, url: &str, period: &str) -> Option<f64> {
    let (code, out, _) = ecogate(&[
        "report",
        "--config",
        city,
        "--period",
        period,
        "--central",
        url,
        "--format",
        "json",
    ]);
    if code != 0 {
        return None;
    }
    let v: Value = serde_json::from_str(&out).ok()?;
    v["tables"]
        .as_array()?
        .iter()
        .flat_map(|t| t["rows"].as_array().into_iter().flatten())
        .find(|r| r["firm_id"] == "park" && r.get("grid_import_kwh").is_some())
        .and_then(|r| r["grid_import_kwh"].as_f64())
}

/// 2 parks x 10 firms x 17 readings 20 minutes apart. Hand-computed: firm i of a park imports
/// 16 x (1.5 + (i mod 11) x 0.25) kWh; a park 16 x (10 x 1.5 + 45 x 0.25) = 16 x 26.25 =
/// 420 kWh; the city 840 kWh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_city_reads_back_exactly_what_each_park_holds_after_an_outage() {
    let outage = Duration::from_secs(
        std::env::var("ECOGATE_TEST_OUTAGE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    );
    let vm = victoria::Victoria::start();
    let proxy = tcp_proxy::TcpProxy::start(([127, 0, 0, 1], vm.port).into()).await;
    let broker = mosquitto::Mosquitto::start_with("max_queued_messages 0\n");
    let dir = tempfile::tempdir().unwrap();
    let link = format!("http://127.0.0.1:{}", proxy.port);
    let cfg_a = gateway("a", dir.path(), broker.port, &link);
    let cfg_b = gateway("b", dir.path(), broker.port, &link);
    let city_cfg = city(dir.path(), &vm.url());
    let mut gw_a = Daemon::start(&cfg_a);
    let gw_b = Daemon::start(&cfg_b);
    gw_a.wait_subscribed();
    gw_b.wait_subscribed();

    let t0 = (chrono::Utc::now().timestamp_millis() / 3_600_000 - 7) * 3_600_000;
    let batch = |ks: std::ops::Range<usize>| -> Vec<(String, Vec<u8>)> {
        ks.flat_map(|k| {
            ["a", "b"].into_iter().flat_map(move |p| {
                (0..FIRMS_PER_PARK).map(move |i| {
                    (
                        format!("{p}/{p}m{i:02}/energy"),
                        format!(
                            "{{\"kwh\":{},\"ts\":{}}}",
                            500.0 + k as f64 * step_kwh(i),
                            t0 + k as i64 * 20 * 60_000
                        )
                        .into_bytes(),
                    )
                })
            })
        })
        .collect()
    };
    // The first 8 readings of each meter while the link is up.
    mosquitto::publish_qos1(
        broker.port,
        "city-publisher",
        batch(0..8),
        Duration::from_secs(30),
        || {},
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The link drops; the rest arrives at the gateways meanwhile.
    proxy.set(tcp_proxy::Mode::Blackhole);
    mosquitto::publish_qos1(
        broker.port,
        "city-publisher",
        batch(8..PER_METER),
        Duration::from_secs(30),
        || {},
    )
    .await;
    let stores = [dir.path().join("a/store.db"), dir.path().join("b/store.db")];
    let deadline = Instant::now() + Duration::from_secs(30);
    for s in &stores {
        while count(s, "SELECT COUNT(*) FROM readings") < (FIRMS_PER_PARK * PER_METER) as i64 {
            assert!(
                Instant::now() < deadline,
                "{} never stored every reading",
                s.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Gateway a dies with its outbox full of undelivered windows, and comes back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw_a.kill_9();
    gw_a.spawn();
    tokio::time::sleep(outage).await;
    proxy.reset();
    proxy.set(tcp_proxy::Mode::Pass);

    let city_path = city_cfg.to_str().unwrap().to_string();
    let year = chrono::DateTime::from_timestamp_millis(t0)
        .unwrap()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = city_import(&city_path, &vm.url(), &year);
        if got == Some(840.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the city reads {got:?} kWh, not 840, 90 s after the link came back"
        );
        let _ = http_get(vm.port, "/internal/force_flush");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(gw_a);
    drop(gw_b);

    // Per firm, the city's report and evaluation equal the parks' own: grid import, tce, CO2
    // and intensity in the report; tce and CO2 in the evaluation.
    let vm_url = vm.url();
    let city_args = ["--config", city_path.as_str(), "--central", vm_url.as_str()];
    let report_keys = [
        "grid_import_kwh",
        "energy_tce",
        "co2_t",
        "carbon_intensity_tco2_per_10k_cny",
    ];
    let eval_keys = ["energy_tce", "co2_t"];
    let runs: [(&[&str], &[&str], &str); 2] = [
        (&["report", "--period", &year], &report_keys, "report"),
        (&["evaluate", "--year", &year], &eval_keys, "evaluation"),
    ];
    for (command, keys, what) in runs {
        let (city_rows, err) = json_rows(&[command, &city_args[..]].concat(), keys);
        assert!(err.contains("of park(s) Park a, Park b"), "{err}");
        let mut park_rows = BTreeMap::new();
        for cfg in [&cfg_a, &cfg_b] {
            let args = [command, &["--config", cfg.to_str().unwrap()]].concat();
            park_rows.extend(json_rows(&args, keys).0);
        }
        assert_eq!(city_rows.len(), 2 * FIRMS_PER_PARK, "{what}");
        assert_eq!(city_rows, park_rows, "city {what} vs the parks' {what}s");
        if what == "report" {
            // Firm a07 (7 mod 11 = 7): 16 x 3.25 = 52 kWh.
            assert_eq!(city_rows["a07"][0].as_f64(), Some(52.0));
        }
    }
}

#[path = "common/victoria.rs"]
mod victoria;

fn http_get(port: u16, path: &str) -> Option<String> {
    victoria::http_get(port, path)
}

/// A VictoriaMetrics cluster takes writes at vminsert's `/insert/<tenant>/influx/api/v2/write`:
/// a base URL with a path keeps it.
#[test]
fn an_influx_url_with_a_path_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = gateway(
        "a",
        dir.path(),
        1883,
        "http://127.0.0.1:8480/insert/0/influx",
    );
    let app = ecogate::app::AppConfig::load(&text).unwrap();
    let url = app
        .influx
        .as_ref()
        .unwrap()
        .url
        .join("api/v2/write")
        .unwrap();
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:8480/insert/0/influx/api/v2/write"
    );
}

/// One firm id written by two parks' gateways would be merged into one figure in the city's
/// view: `--central` refuses, naming the id and both parks.
#[test]
fn a_firm_id_written_by_two_parks_is_refused() {
    use std::io::{Read, Write};
    let vm = victoria::Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let city_cfg = city(dir.path(), &vm.url());
    let ts = (chrono::Utc::now().timestamp_millis() / 3_600_000 - 2) * 3_600_000;
    let body = format!(
        "ecogate_window,firm=a03,level=firm,park=Park\\ a,window=1h grid_import_kwh=5 {ts}\n\
         ecogate_window,firm=a03,level=firm,park=Park\\ b,window=1h grid_import_kwh=7 {ts}\n"
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", vm.port)).unwrap();
    write!(
        s,
        "POST /api/v2/write?org=o&bucket=b&precision=ms HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let _ = http_get(vm.port, "/internal/force_flush");
    let year = chrono::DateTime::from_timestamp_millis(ts)
        .unwrap()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y")
        .to_string();
    let (code, _, err) = ecogate(&[
        "report",
        "--config",
        city_cfg.to_str().unwrap(),
        "--period",
        &year,
        "--central",
        &vm.url(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("firm `a03` is written by two parks, `Park a` and `Park b`"),
        "{err}"
    );
}
