//! The InfluxDB sink against a real VictoriaMetrics (its `/api/v2/write` is InfluxDB's): every
//! point read back with its exact value and timestamp, and each answer's policy, with a small
//! fault-injecting proxy in front of the real server for the answers it will not give on demand.

mod common;
#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/victoria.rs"]
mod victoria;

use fault_proxy::{FaultProxy, Rule};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use victoria::Victoria;

/// A park name with every character line protocol must escape, and Chinese.
const PARK: &str = r#"青河 Park, Zone=A "east""#;
const METERS: usize = 5;
const PER_METER: usize = 120;
/// 2026-05-28T20:00:00Z: fixed, so every case has the same points.
const T0_MS: i64 = 1_780_000_800_000;

struct Case {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    csv: PathBuf,
    /// `(meter, ts_ms) -> kWh` of every reading written.
    truth: BTreeMap<(String, i64), f64>,
}

fn config_text(dir: &Path, url: &str, extra: &str, outbox_extra: &str) -> String {
    let mut t = format!(
        "[park]\nname = '{PARK}'\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 10\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"factory\"\n"
    );
    for i in 0..METERS {
        t.push_str(&format!(
            "[[meters]]\nid = \"m{i}\"\nsite = \"s\"\nchannels = [{{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 100000 }}]\n"
        ));
    }
    t.push_str(&format!(
        "[store]\npath = \"{}\"\n[metrics]\nenabled = false\n\
         [influx]\nurl = \"{url}\"\norg = \"o\"\nbucket = \"b\"\nflush_interval_ms = 50\n\
         retry_initial_ms = 100\nretry_max_ms = 800\nauth_retry_s = 1\n{extra}\n\
         [influx.outbox]\ndir = \"{}\"\n{outbox_extra}\n",
        dir.join("store.db").display(),
        dir.join("outbox").display()
    ));
    t
}

/// Meter i reads `1000 + k * (i + 1) * 0.25` kWh at minute k from `T0_MS`.
fn case(url: &str, extra: &str) -> Case {
    case_with(url, extra, "")
}

fn case_with(url: &str, extra: &str, outbox_extra: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ecogate.toml");
    std::fs::write(&cfg, config_text(dir.path(), url, extra, outbox_extra)).unwrap();
    let t0 = T0_MS;
    let mut csv = String::from("timestamp,meter,channel,value,unit\n");
    let mut truth = BTreeMap::new();
    for k in 0..PER_METER {
        for i in 0..METERS {
            let ts = t0 + k as i64 * 60_000;
            let kwh = 1000.0 + (k * (i + 1)) as f64 * 0.25;
            let at = chrono::DateTime::from_timestamp_millis(ts)
                .unwrap()
                .to_rfc3339();
            csv.push_str(&format!("{at},m{i},import,{kwh},kWh\n"));
            truth.insert((format!("m{i}"), ts), kwh);
        }
    }
    let csv_path = dir.path().join("in.csv");
    std::fs::write(&csv_path, csv).unwrap();
    Case {
        dir,
        cfg,
        csv: csv_path,
        truth,
    }
}

fn replay(c: &Case) -> std::process::Output {
    run_replay(&c.cfg, &c.csv)
}

fn run_replay(cfg: &Path, csv: &Path) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ecogate"))
        .args(["replay", "--config"])
        .arg(cfg)
        .arg("--input")
        .arg(csv)
        .args(["--influx-wait-s", "40"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every reading in VictoriaMetrics, `(meter, ts) -> kWh`; panics if a series and timestamp has
/// two different values (a repeat must be an identical point).
fn readings_in(vm: &Victoria) -> BTreeMap<(String, i64), f64> {
    let mut got = BTreeMap::new();
    for s in vm.export("ecogate_reading_energy_kwh") {
        assert_eq!(s.labels["park"], PARK, "the park tag comes back unescaped");
        assert_eq!(s.labels["channel"], "import");
        for (ts, v) in s.samples {
            let key = (s.labels["meter"].clone(), ts);
            if let Some(prev) = got.insert(key.clone(), v) {
                assert_eq!(prev, v, "two different values for {key:?}");
            }
        }
    }
    got
}

/// The firm's total grid import over all year windows, as the last (largest) value per window.
fn firm_year_import_kwh(vm: &Victoria) -> f64 {
    let series = vm.export(r#"ecogate_window_grid_import_kwh{level="firm",window="year"}"#);
    assert_eq!(series.len(), 1, "{series:?}");
    let mut per_window: BTreeMap<i64, f64> = BTreeMap::new();
    for (ts, v) in &series[0].samples {
        let e = per_window.entry(*ts).or_insert(*v);
        *e = e.max(*v);
    }
    per_window.values().sum()
}

/// Ground truth of the firm's import: each meter's last reading minus its first (the baseline).
fn truth_import_kwh() -> f64 {
    (0..METERS)
        .map(|i| ((PER_METER - 1) * (i + 1)) as f64 * 0.25)
        .sum()
}

fn dead_letters(c: &Case) -> Vec<serde_json::Value> {
    std::fs::read_to_string(c.dir.path().join("outbox/dead-letter.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_reading_and_window_total_arrives_exactly() {
    let vm = Victoria::start();
    let c = case(&vm.url(), "");
    let out = replay(&c);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("everything delivered"), "{stdout}");
    assert_eq!(readings_in(&vm), c.truth);
    // 5 meters: sum of 119 x (i + 1) x 0.25 = 119 x 15 x 0.25 = 446.25 kWh.
    assert_eq!(truth_import_kwh(), 446.25);
    assert_eq!(firm_year_import_kwh(&vm), 446.25);
    // Replaying the same file again adds nothing to the store and writes nothing new.
    replay(&c);
    assert_eq!(readings_in(&vm), c.truth);
    assert_eq!(firm_year_import_kwh(&vm), 446.25);
}

fn poisoned_line_rule(status: u16, meter: &'static str, ts: i64) -> Rule {
    let needle = format!("meter={meter},");
    let stamp = format!(" {ts}\n");
    Box::new(move |_, body: &str| {
        let bad = body.lines().any(|l| {
            l.starts_with("ecogate_reading,")
                && l.contains(&needle)
                && (l.to_string() + "\n").ends_with(&stamp)
        });
        bad.then(|| {
            (
                status,
                Vec::new(),
                r#"{"code":"invalid","message":"partial write: field type conflict"}"#.to_string(),
            )
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_line_is_dead_lettered_and_the_rest_delivered() {
    for status in [400u16, 422] {
        let vm = Victoria::start();
        let bad_ts = T0_MS + 37 * 60_000;
        let proxy = FaultProxy::start(
            format!("127.0.0.1:{}", vm.port),
            poisoned_line_rule(status, "m2", bad_ts),
        )
        .await;
        let c2 = case(&proxy.url(), "batch_lines = 1000");
        let (cfg, csv) = (c2.cfg.clone(), c2.csv.clone());
        tokio::task::spawn_blocking(move || run_replay(&cfg, &csv))
            .await
            .unwrap();
        let mut want = c2.truth.clone();
        assert!(want.remove(&("m2".to_string(), bad_ts)).is_some());
        let got = tokio::task::spawn_blocking(move || {
            let got = readings_in(&vm);
            drop(vm);
            got
        })
        .await
        .unwrap();
        assert_eq!(
            got, want,
            "status {status}: everything but the refused line"
        );
        let dl = dead_letters(&c2);
        assert_eq!(dl.len(), 1, "status {status}: {dl:?}");
        assert_eq!(dl[0]["status"], status);
        assert!(dl[0]["message"]
            .as_str()
            .unwrap()
            .contains("field type conflict"));
        let line = dl[0]["line"].as_str().unwrap();
        assert!(
            line.contains("meter=m2,") && line.ends_with(&format!(" {bad_ts}")),
            "{line}"
        );
        let seen = proxy.seen();
        let refused = seen.iter().filter(|s| s.status == status).count();
        // Halving a batch of at most 1,000 lines isolates one line in at most 10 splits; each
        // split refuses once more, so 2 to 11 refusals.
        assert!(
            (2..=11).contains(&refused),
            "status {status}: {refused} refusals"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_batches_are_split_until_they_fit() {
    let vm = Victoria::start();
    let proxy = FaultProxy::start(
        format!("127.0.0.1:{}", vm.port),
        Box::new(|_, body: &str| {
            (body.lines().count() > 50).then(|| (413, Vec::new(), "too large".to_string()))
        }),
    )
    .await;
    let c = case(&proxy.url(), "batch_lines = 400");
    let (cfg, csv) = (c.cfg.clone(), c.csv.clone());
    tokio::task::spawn_blocking(move || run_replay(&cfg, &csv))
        .await
        .unwrap();
    let seen = proxy.seen();
    assert!(seen.iter().any(|s| s.status == 413));
    for s in seen.iter().filter(|s| s.status == 204) {
        assert!(
            s.lines() <= 50,
            "a delivered request had {} lines",
            s.lines()
        );
    }
    assert!(dead_letters(&c).is_empty());
    let truth = c.truth.clone();
    let got = tokio::task::spawn_blocking(move || (readings_in(&vm), firm_year_import_kwh(&vm)))
        .await
        .unwrap();
    assert_eq!(got.0, truth);
    assert_eq!(got.1, 446.25);
}

/// Runs a replay against `rule` and returns the proxy's log; asserts all data arrived.
async fn deliver_through(rule: Rule) -> Vec<fault_proxy::Seen> {
    let vm = Victoria::start();
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", vm.port), rule).await;
    let c = case(&proxy.url(), "");
    let (cfg, csv) = (c.cfg.clone(), c.csv.clone());
    tokio::task::spawn_blocking(move || run_replay(&cfg, &csv))
        .await
        .unwrap();
    assert!(dead_letters(&c).is_empty());
    let truth = c.truth.clone();
    let got = tokio::task::spawn_blocking(move || readings_in(&vm))
        .await
        .unwrap();
    assert_eq!(got, truth);
    proxy.seen()
}

fn gap_s(seen: &[fault_proxy::Seen], i: usize) -> f64 {
    (seen[i + 1].at - seen[i].at).as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_honours_retry_after() {
    let seen = deliver_through(Box::new(|i, _| match i {
        0 => Some((429, vec![("Retry-After".into(), "2".into())], String::new())),
        1 => Some((503, vec![("Retry-After".into(), "1".into())], String::new())),
        _ => None,
    }))
    .await;
    assert_eq!(
        (seen[0].status, seen[1].status, seen[2].status),
        (429, 503, 204)
    );
    assert!(
        (2.0..3.0).contains(&gap_s(&seen, 0)),
        "429: {}",
        gap_s(&seen, 0)
    );
    assert!(
        (1.0..2.0).contains(&gap_s(&seen, 1)),
        "503: {}",
        gap_s(&seen, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_keep_the_data_and_retry_slowly() {
    let seen = deliver_through(Box::new(|i, _| {
        (i < 3).then(|| (401, Vec::new(), r#"{"code":"unauthorized"}"#.to_string()))
    }))
    .await;
    assert!(seen[..3].iter().all(|s| s.status == 401));
    for i in 0..3 {
        // auth_retry_s = 1
        assert!(
            gap_s(&seen, i) >= 1.0,
            "retry {i} after {} s",
            gap_s(&seen, i)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_back_off_exponentially() {
    let seen = deliver_through(Box::new(|i, _| {
        (i < 4).then(|| (500, Vec::new(), "internal error".to_string()))
    }))
    .await;
    // retry_initial_ms = 100, doubling, cap 800, jitter x [0.8, 1.2): at least 0.08, 0.16, 0.32,
    // 0.64 s; at most 0.12, 0.24, 0.48, 0.96 s plus the round trip through the proxy (slack
    // 0.3 s for a loaded machine).
    let gaps: Vec<f64> = (0..4).map(|i| gap_s(&seen, i)).collect();
    for (g, base) in gaps.iter().zip([0.1, 0.2, 0.4, 0.8]) {
        let (lo, hi) = (base * 0.8, base * 1.2 + 0.3);
        assert!((lo..hi).contains(g), "gaps {gaps:?}");
    }
}

#[test]
fn a_replay_larger_than_the_outbox_cap_is_delivered_while_it_runs() {
    let vm = Victoria::start();
    // 600 readings with their window totals are several times 64 KiB of line protocol.
    let c = case_with(&vm.url(), "", "max_bytes = 65536\nsegment_bytes = 16384");
    replay(&c);
    assert_eq!(readings_in(&vm), c.truth);
    assert_eq!(firm_year_import_kwh(&vm), 446.25);
}

/// A server that refuses every reading line (here: a field type conflict for the whole
/// measurement) is the server's fault, not the lines': after 100 lines dead-lettered in a row
/// ecogate keeps the rest in the outbox and retries, and delivers it once the server is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_everything_stops_the_dead_letters_and_keeps_the_data() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let vm = Victoria::start();
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    let proxy = FaultProxy::start(
        format!("127.0.0.1:{}", vm.port),
        Box::new(move |_, body: &str| {
            (flag.load(Ordering::SeqCst) && body.contains("ecogate_reading,")).then(|| {
                (
                    400,
                    Vec::new(),
                    r#"{"code":"invalid","message":"field type conflict"}"#.to_string(),
                )
            })
        }),
    )
    .await;
    let c = case(&proxy.url(), "");
    let (cfg, csv) = (c.cfg.clone(), c.csv.clone());
    let replay = tokio::task::spawn_blocking(move || run_replay(&cfg, &csv));
    // 100 lines dead-lettered, then no more however long the server keeps refusing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while dead_letters(&c).len() < 100 {
        assert!(std::time::Instant::now() < deadline, "no dead letters yet");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let dl = dead_letters(&c);
    assert_eq!(dl.len(), 100, "dead-lettering stopped at 100 lines");
    broken.store(false, Ordering::SeqCst);
    replay.await.unwrap();
    let mut want = c.truth.clone();
    for d in &dl {
        let line = d["line"].as_str().unwrap();
        let meter = line
            .split("meter=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let ts: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(want.remove(&(meter.to_string(), ts)).is_some(), "{line}");
    }
    let got = tokio::task::spawn_blocking(move || readings_in(&vm))
        .await
        .unwrap();
    // 600 readings - the 100 dead-lettered = 500 delivered once the server was fixed.
    assert_eq!(got.len(), 500);
    assert_eq!(got, want);
}

/// Splits line protocol at unescaped `sep` characters (outside double quotes).
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let (mut out, mut cur, mut esc, mut quoted) = (Vec::new(), String::new(), false, false);
    for ch in s.chars() {
        if esc {
            cur.push(ch);
            esc = false;
        } else if ch == '\\' {
            esc = true;
        } else if ch == '"' {
            quoted = !quoted;
            cur.push(ch);
        } else if ch == sep && !quoted {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    out.push(cur);
    out
}

/// The last `grid_import_kwh` written per window point, from every write body in the order it
/// was sent: (window, level, entity id, start ms) -> kWh. In InfluxDB the last write of a
/// series and timestamp is what a query sees.
fn last_window_totals(bodies: &[String]) -> BTreeMap<(String, String, String, i64), f64> {
    let mut out = BTreeMap::new();
    for body in bodies {
        for line in body.lines().filter(|l| l.starts_with("ecogate_window,")) {
            let parts = split_unescaped(line, ' ');
            assert_eq!(parts.len(), 3, "{line}");
            let tags: BTreeMap<String, String> = split_unescaped(&parts[0], ',')[1..]
                .iter()
                .map(|t| {
                    let (k, v) = t.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            let level = tags["level"].clone();
            let entity = match level.as_str() {
                "park" => "park".to_string(),
                other => tags[other].clone(),
            };
            let Some(kwh) = split_unescaped(&parts[1], ',').iter().find_map(|f| {
                f.strip_prefix("grid_import_kwh=")
                    .map(|v| v.parse::<f64>().unwrap())
            }) else {
                continue;
            };
            let ts: i64 = parts[2].parse().unwrap();
            out.insert((tags["window"].clone(), level, entity, ts), kwh);
        }
    }
    out
}

/// The store's total for each written window point, read back with the store's own reader.
struct StoreReader {
    cfg: std::sync::Arc<ecogate::config::Config>,
    acct: ecogate::accounting::Accountant,
    store: ecogate::sinks::store::Store,
}

impl StoreReader {
    fn open(c: &Case) -> StoreReader {
        let text = std::fs::read_to_string(&c.cfg).unwrap();
        let cfg = ecogate::app::AppConfig::parse(&c.cfg, &text).unwrap().core;
        let acct = ecogate::accounting::Accountant::new(cfg.clone());
        let store = ecogate::sinks::store::Store::open(&c.dir.path().join("store.db")).unwrap();
        StoreReader { cfg, acct, store }
    }

    fn window_total(&self, window: &str, level: &str, entity: &str, start_ms: i64) -> f64 {
        use ecogate::accounting::Entity;
        let cfg = &self.cfg;
        let e = match level {
            "park" => Entity::Park,
            "firm" => Entity::Firm(cfg.firms.iter().position(|f| f.id == entity).unwrap() as u32),
            "site" => Entity::Site(cfg.sites.iter().position(|s| s.id == entity).unwrap() as u32),
            _ => Entity::Meter(cfg.meters.iter().position(|m| m.id == entity).unwrap() as u32),
        };
        let w = ecogate::accounting::window::WindowKind::parse(window).unwrap();
        self.store
            .sums(&self.acct, w, e, start_ms, start_ms + 1)
            .unwrap()
            .get(ecogate::accounting::metric::Metric::GridImportKwh)
    }
}

/// Replays the case with `retention` (a `[store.retention]` body) through a pass-through proxy
/// in front of VictoriaMetrics; returns the case and the last total written per window point,
/// after checking each against the store's.
async fn window_totals_with_retention(
    retention: &str,
) -> (Case, BTreeMap<(String, String, String, i64), f64>) {
    window_totals_with(retention, "").await
}

/// As [`window_totals_with_retention`], with `more_rows` (CSV rows) after the case's.
async fn window_totals_with(
    retention: &str,
    more_rows: &str,
) -> (Case, BTreeMap<(String, String, String, i64), f64>) {
    let vm = Victoria::start();
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", vm.port), Box::new(|_, _| None)).await;
    let c = case(&format!("http://127.0.0.1:{}", proxy.port), "");
    let mut csv = std::fs::read_to_string(&c.csv).unwrap();
    csv.push_str(more_rows);
    std::fs::write(&c.csv, csv).unwrap();
    let text = std::fs::read_to_string(&c.cfg).unwrap().replace(
        "[metrics]",
        &format!("[store.retention]\n{retention}\n[metrics]"),
    );
    std::fs::write(&c.cfg, text).unwrap();
    tokio::task::spawn_blocking({
        let (cfg, csv) = (c.cfg.clone(), c.csv.clone());
        move || run_replay(&cfg, &csv)
    })
    .await
    .unwrap();
    let bodies: Vec<String> = proxy.seen().into_iter().map(|s| s.body).collect();
    let last = last_window_totals(&bodies);
    let reader = StoreReader::open(&c);
    for ((window, level, entity, start), kwh) in &last {
        let stored = reader.window_total(window, level, entity, *start);
        assert_eq!(*kwh, stored, "{window} {level} {entity} {start}");
    }
    (c, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_window_total_written_equals_the_stores() {
    // Minute windows kept forever, so that May's minutes are written too.
    let (_c, last) = window_totals_with_retention("minute_days = 0").await;
    // 2 hours of minutes from 04:00 local: every window kind of every level is written, each
    // equal to the store's.
    for w in ["1m", "15m", "1h", "1d", "month", "year"] {
        assert!(last.keys().any(|k| k.0 == w), "no {w} window written");
    }
    assert!(last.len() > 500, "{}", last.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_gap_kept_as_a_span_writes_every_window_it_reaches() {
    // Meter m0 read again 3 days after the case's last minute: the delta is one span in the
    // store, and every window it reaches is written with the store's total (checked point by
    // point), down to the minutes inside the gap.
    let last_ms = T0_MS + (PER_METER as i64 - 1) * 60_000;
    let at = chrono::DateTime::from_timestamp_millis(last_ms + 3 * 86_400_000)
        .unwrap()
        .to_rfc3339();
    let (_c, last) =
        window_totals_with("minute_days = 0", &format!("{at},m0,import,5000,kWh\n")).await;
    let inside = |w: &str, level: &str| {
        last.keys()
            .filter(|k| k.0 == w && k.1 == level && k.3 > last_ms + 86_400_000)
            .count()
    };
    // A whole day inside the gap: 1,440 minutes and 24 hours at meter and park level.
    for level in ["meter", "park"] {
        assert!(
            inside("1m", level) >= 1_440,
            "{level}: {}",
            inside("1m", level)
        );
        assert!(
            inside("1h", level) >= 24,
            "{level}: {}",
            inside("1h", level)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_older_than_the_store_keeps_are_not_rewritten() {
    // The case's readings are from May 2026; the store keeps hour windows 30 days and minutes
    // 1 day. Their totals in the store are gone (or about to go) after retention, so a late
    // reading would rewrite them with a part: none is written; days, months and years are,
    // each equal to the store's.
    let (_c, last) =
        window_totals_with_retention("minute_days = 1\nquarter_hour_days = 30\nhour_days = 30")
            .await;
    for w in ["1m", "15m", "1h"] {
        assert!(!last.keys().any(|k| k.0 == w), "{w} windows were written");
    }
    for w in ["1d", "month", "year"] {
        assert!(last.keys().any(|k| k.0 == w), "no {w} window written");
    }
}
