//! A park split over 3 instances (docs/scale-out.md) accounts exactly what one instance
//! accounts on the same input: per firm, site and meter, per window, and the 3 park totals
//! sum to the one. Real mosquitto, real ecogate processes, one of them killed -9 mid-stream.

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/victoria.rs"]
mod victoria;

use common::count;
use rusqlite::types::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SHARDS: u32 = 3;
/// Readings per meter, 20 minutes apart: 5 h 20 min, so every reading's interval crosses a
/// quarter-hour boundary and some an hour's (pro rata splits on both sides).
const PER_METER: usize = 17;

/// Meter `m{i}` of firm `f{i}` rises by this much a reading, kWh: 1.5 to 4.0 in steps of 0.25.
fn step_kwh(i: usize) -> f64 {
    1.5 + (i % 11) as f64 * 0.25
}

/// The park of `firms` firms (one site, one grid meter each), split into 3 when `split`.
/// `topic` is the subscription; `{shard}` in it and in the store path and client id is each
/// instance's number.
fn config(firms: usize, port: u16, dir: &Path, split: bool, topic: &str) -> String {
    config_with(firms, port, dir, split, topic, "")
}

/// As [`config`], with further sections (`[influx]`).
fn config_with(
    firms: usize,
    port: u16,
    dir: &Path,
    split: bool,
    topic: &str,
    extra: &str,
) -> String {
    let mut t = String::from("[park]\nname = \"P\"\ngrid_factor_year = 2022\n");
    if split {
        t.push_str(&format!("[shard]\ncount = {SHARDS}\n"));
    }
    for i in 0..firms {
        t.push_str(&format!(
            "[[firms]]\nid = \"f{i:03}\"\nname = \"F{i}\"\nland_mu = 10\n\
             [[sites]]\nid = \"s{i:03}\"\nfirm = \"f{i:03}\"\nkind = \"factory\"\n\
             [[meters]]\nid = \"m{i:03}\"\nsite = \"s{i:03}\"\nchannels = [{{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 1000 }}]\n"
        ));
    }
    let (store, client) = if split {
        ("shard-{shard}.db", "ecogate-shard-{shard}")
    } else {
        ("single.db", "ecogate-single")
    };
    t.push_str(&format!(
        "[store]\npath = \"{}/{store}\"\ncommit_interval_ms = 200\n[metrics]\nenabled = false\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"{client}\"\n\
         [[mqtt.subscriptions]]\ntopic = \"{topic}\"\ndecoder = \"json\"\nfields = {{ import = \"/kwh\" }}\ntimestamp = \"/ts\"\n",
        dir.display()
    ));
    t.push_str(extra);
    t
}

struct Instance {
    cfg: PathBuf,
    shard: Option<u32>,
    child: Option<Child>,
    /// Set once the broker has acknowledged the instance's subscription (its log says so).
    subscribed: Arc<std::sync::atomic::AtomicBool>,
}

impl Instance {
    fn start(cfg: &Path, shard: Option<u32>) -> Instance {
        let mut i = Instance {
            cfg: cfg.to_path_buf(),
            shard,
            child: None,
            subscribed: Arc::default(),
        };
        i.spawn();
        i
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecogate"));
        cmd.args(["run", "--config", self.cfg.to_str().unwrap()]);
        if let Some(k) = self.shard {
            cmd.args(["--shard", &k.to_string()]);
        }
        let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let flag = self.subscribed.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("mqtt subscription acknowledged") {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                eprintln!("{line}");
            }
        });
        self.child = Some(child);
    }

    /// Waits (60 s at most) until the broker has acknowledged the subscription: a message
    /// published before would not be kept for a session that does not exist yet.
    fn wait_subscribed(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.subscribed.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "{:?} never subscribed",
                self.shard
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill_9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// Every aggregate row of a store: (window, level, entity, start) -> the metric columns.
type Rows = BTreeMap<(String, String, String, i64), Vec<i64>>;

fn aggregates(db: &Path) -> Rows {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT * FROM aggregates").unwrap();
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |r| {
            let text = |i| r.get::<_, String>(i);
            let key = (text(0)?, text(1)?, text(2)?, r.get::<_, i64>(3)?);
            let mut sums = Vec::with_capacity(n - 4);
            for i in 4..n {
                sums.push(match r.get::<_, Value>(i)? {
                    Value::Integer(v) => v,
                    Value::Null => 0,
                    other => panic!("aggregate column {i} holds {other:?}"),
                });
            }
            Ok((key, sums))
        })
        .unwrap()
        .collect::<Result<Rows, _>>()
        .unwrap();
    rows
}

/// The messages: each meter's readings in time order, meters interleaved. `topic(i)` names
/// meter i's topic.
fn messages(firms: usize, t0_ms: i64, topic: impl Fn(usize) -> String) -> Vec<(String, Vec<u8>)> {
    (0..PER_METER)
        .flat_map(|k| {
            let topic = &topic;
            (0..firms).map(move |i| {
                let kwh = 1000.0 + k as f64 * step_kwh(i);
                let ts = t0_ms + k as i64 * 20 * 60_000;
                (
                    topic(i),
                    format!("{{\"kwh\":{kwh},\"ts\":{ts}}}").into_bytes(),
                )
            })
        })
        .collect()
}

/// Waits until every store in `dbs` together holds `readings` readings (60 s at most).
fn wait_for_readings(dbs: &[PathBuf], readings: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got: i64 = dbs
            .iter()
            .map(|d| count(d, "SELECT COUNT(*) FROM readings").max(0))
            .sum();
        if got == readings {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {got} of {readings} readings stored"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The split stores against the single one: meter, site and firm rows identical, and the
/// shards' park rows summing to the single park row. Returns the single store's rows.
fn assert_split_equals_single(single: &Path, shards: &[PathBuf]) -> Rows {
    let one = aggregates(single);
    let mut merged: Rows = BTreeMap::new();
    for db in shards {
        for (key, sums) in aggregates(db) {
            if key.1 == "park" {
                let slot = merged.entry(key).or_insert_with(|| vec![0; sums.len()]);
                for (a, b) in slot.iter_mut().zip(&sums) {
                    *a += b;
                }
            } else {
                assert!(
                    merged.insert(key.clone(), sums).is_none(),
                    "{key:?} is in two shards' stores"
                );
            }
        }
    }
    assert_eq!(one.len(), merged.len(), "window rows: single vs 3 shards");
    for (key, sums) in &one {
        assert_eq!(Some(sums), merged.get(key), "{key:?}: single vs 3 shards");
    }
    one
}

/// Kilowatt-hours of grid import in a row (the column of `grid_import_kwh`, micro kWh).
fn import_kwh(db: &Path, level: &str, entity: &str) -> f64 {
    count(
        db,
        &format!(
            "SELECT COALESCE(SUM(grid_import_kwh), 0) FROM aggregates WHERE window = 'year' AND level = '{level}' AND entity = '{entity}'"
        ),
    ) as f64
        / 1e6
}

/// `[influx]` to the VictoriaMetrics at `port`, its outbox beside the instance's store.
fn influx(port: u16, dir: &Path, name: &str) -> String {
    format!(
        "[influx]\nurl = \"http://127.0.0.1:{port}\"\norg = \"o\"\nbucket = \"b\"\nflush_interval_ms = 200\n\
         windows = [\"15m\", \"1h\", \"1d\", \"month\", \"year\"]\n[influx.outbox]\ndir = \"{}/{name}\"\n",
        dir.display()
    )
}

/// `ecogate report --format json` for the year `year`, as of one fixed time: firm id -> the
/// firms table's figures (the park's total row left out).
fn report_firms(args: &[&str], year: &str, now: &str) -> BTreeMap<String, serde_json::Value> {
    first_table(&[&["report"], args, &["--period", year]].concat(), now)
}

/// `ecogate evaluate --format json` of `year`: firm id -> the evaluation table's row.
fn evaluation_firms(args: &[&str], year: &str, now: &str) -> BTreeMap<String, serde_json::Value> {
    first_table(&[&["evaluate"], args, &["--year", year]].concat(), now)
}

/// The first table of a JSON output by firm id.
fn first_table(args: &[&str], now: &str) -> BTreeMap<String, serde_json::Value> {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--format", "json", "--lang", "en"]);
    let (code, out, err) = common::ecogate_as_of(now, &all);
    assert_eq!(code, 0, "{all:?}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["tables"][0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["firm_id"] != "park")
        .map(|r| (r["firm_id"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

/// 300 firms, 5,100 QoS 1 messages published to `park/<shard>/<meter>/energy` (the firm-hash
/// topic layout: a publisher puts its firm's shard in the topic); shard k subscribes to
/// `$share/ecogate-k/park/k/+/energy`, the single instance to `park/{s}/{meter}/energy` (a named segment: any shard). Shard 1 is
/// killed -9 when half the messages are acknowledged and started again 1 s later.
///
/// Hand-computed: firm i's import is 16 intervals x (1.5 + (i mod 11) x 0.25) kWh; over the
/// 300 firms, i mod 11 runs 27 times through 0..10 and then 0, 1, 2: sum of (i mod 11) =
/// 27 x 55 + 3 = 1,488, so the park's import is 16 x (300 x 1.5 + 1,488 x 0.25) = 16 x 822 =
/// 13,152 kWh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_account_exactly_what_one_instance_does_through_a_kill_9() {
    const FIRMS: usize = 300;
    // Shard 1's session queues its messages while it is down.
    let broker = mosquitto::Mosquitto::start_with("max_queued_messages 0\n");
    // One central store for the 3 shards, another for the single instance.
    let vm_split = victoria::Victoria::start();
    let vm_single = victoria::Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let split_cfg = dir.path().join("split.toml");
    let single_cfg = dir.path().join("single.toml");
    std::fs::write(
        &split_cfg,
        config_with(
            FIRMS,
            broker.port,
            dir.path(),
            true,
            "$share/ecogate-{shard}/park/{shard}/{meter}/energy",
            &influx(vm_split.port, dir.path(), "outbox-{shard}"),
        ),
    )
    .unwrap();
    std::fs::write(
        &single_cfg,
        config_with(
            FIRMS,
            broker.port,
            dir.path(),
            false,
            "park/{s}/{meter}/energy",
            &influx(vm_single.port, dir.path(), "outbox-single"),
        ),
    )
    .unwrap();

    // `check` sees the split: 3 shards, every firm in one of them.
    let out = Command::new(env!("CARGO_BIN_EXE_ecogate"))
        .args(["check", "--config", split_cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("shards: 3 instances"), "{stdout}");
    let per_shard: Vec<usize> = (0..SHARDS)
        .map(|k| {
            (0..FIRMS)
                .filter(|i| ecogate::config::shard::shard_of(&format!("f{i:03}"), SHARDS) == k)
                .count()
        })
        .collect();
    for (k, n) in per_shard.iter().enumerate() {
        assert!(
            stdout.contains(&format!("shard {k}: {n} firms")),
            "{stdout}"
        );
    }
    assert_eq!(per_shard.iter().sum::<usize>(), FIRMS);

    let single = Instance::start(&single_cfg, None);
    let shards: Arc<Mutex<Vec<Instance>>> = Arc::new(Mutex::new(
        (0..SHARDS)
            .map(|k| Instance::start(&split_cfg, Some(k)))
            .collect(),
    ));
    single.wait_subscribed();
    shards
        .lock()
        .unwrap()
        .iter()
        .for_each(Instance::wait_subscribed);

    let t0 = (chrono::Utc::now().timestamp_millis() / 3_600_000 - 7) * 3_600_000;
    let msgs = messages(FIRMS, t0, |i| {
        let firm = format!("f{i:03}");
        format!(
            "park/{}/m{i:03}/energy",
            ecogate::config::shard::shard_of(&firm, SHARDS)
        )
    });
    let total = msgs.len() as i64;
    let for_kill = shards.clone();
    mosquitto::publish_qos1(
        broker.port,
        "shards-publisher",
        msgs,
        Duration::from_secs(60),
        move || {
            let mut s = for_kill.lock().unwrap();
            s[1].kill_9();
            std::thread::sleep(Duration::from_secs(1));
            s[1].spawn();
        },
    )
    .await;

    let single_db = dir.path().join("single.db");
    let shard_dbs: Vec<PathBuf> = (0..SHARDS)
        .map(|k| dir.path().join(format!("shard-{k}.db")))
        .collect();
    wait_for_readings(std::slice::from_ref(&single_db), total, "single instance");
    wait_for_readings(&shard_dbs, total, "3 shards");
    // Each shard holds its own firms' readings and no other's.
    for (k, db) in shard_dbs.iter().enumerate() {
        assert_eq!(
            count(db, "SELECT COUNT(*) FROM readings"),
            (per_shard[k] * PER_METER) as i64,
            "shard {k}'s readings"
        );
    }
    // Let the last commits land everywhere (the counts above are of the same transactions),
    // and the outboxes reach the central stores.
    let year = chrono::DateTime::from_timestamp_millis(t0)
        .unwrap()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y")
        .to_string();
    let now = chrono::Utc::now().to_rfc3339();
    let single_path = single_cfg.to_str().unwrap();
    let split_url = vm_split.url();
    let single_url = vm_single.url();
    let deadline = Instant::now() + Duration::from_secs(60);
    let park_import = |url: &str| -> f64 {
        report_firms(&["--config", single_path, "--central", url], &year, &now)
            .values()
            .map(|r| r["grid_import_kwh"].as_f64().unwrap_or(0.0))
            .sum()
    };
    while (park_import(&split_url) - 13_152.0).abs() > 1e-6
        || (park_import(&single_url) - 13_152.0).abs() > 1e-6
    {
        assert!(
            Instant::now() < deadline,
            "the central stores never held the whole park"
        );
        let _ = victoria::http_get(vm_split.port, "/internal/force_flush");
        let _ = victoria::http_get(vm_single.port, "/internal/force_flush");
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(single);
    shards.lock().unwrap().clear();
    // Per firm, the report from the shards' central store, from the single instance's and
    // from its own store are one and the same.
    let local_args = ["--config", single_path];
    let split_args = ["--config", single_path, "--central", split_url.as_str()];
    let single_args = ["--config", single_path, "--central", single_url.as_str()];
    let local = report_firms(&local_args, &year, &now);
    assert_eq!(local.len(), FIRMS);
    for (args, what) in [
        (
            &split_args,
            "report: 3 shards' central store vs the single store",
        ),
        (&single_args, "report: single's central store vs its store"),
    ] {
        assert_eq!(report_firms(args, &year, &now), local, "{what}");
    }
    let local = evaluation_firms(&local_args, &year, &now);
    assert_eq!(local.len(), FIRMS);
    assert_eq!(
        evaluation_firms(&split_args, &year, &now),
        local,
        "evaluation: 3 shards' central store vs the single store"
    );

    let rows = assert_split_equals_single(&single_db, &shard_dbs);
    assert!(rows.len() > 4 * FIRMS, "{} window rows", rows.len());
    // The figures themselves, by hand: firm 7 (7 mod 11 = 7) imported 16 x 3.25 = 52 kWh.
    assert_eq!(import_kwh(&single_db, "firm", "f007"), 52.0);
    assert_eq!(import_kwh(&single_db, "park", "park"), 13_152.0);
    let park_over_shards: f64 = shard_dbs
        .iter()
        .map(|db| import_kwh(db, "park", "park"))
        .sum();
    assert_eq!(park_over_shards, 13_152.0);
}

/// Topics that do not carry the shard (`park/<meter>/energy`): every instance receives every
/// message and passes over the other shards' meters without refusing or storing them. 30
/// firms x 17 readings; the park's import is 16 x (30 x 1.5 + (2 x 55 + 28) x 0.25) =
/// 16 x 79.5 = 1,272 kWh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_pass_over_the_others_meters_when_topics_do_not_separate_them() {
    const FIRMS: usize = 30;
    let broker = mosquitto::Mosquitto::start_with("max_queued_messages 0\n");
    let dir = tempfile::tempdir().unwrap();
    let split_cfg = dir.path().join("split.toml");
    std::fs::write(
        &split_cfg,
        config(FIRMS, broker.port, dir.path(), true, "park/{meter}/energy"),
    )
    .unwrap();
    let shards: Vec<Instance> = (0..SHARDS)
        .map(|k| Instance::start(&split_cfg, Some(k)))
        .collect();
    shards.iter().for_each(Instance::wait_subscribed);
    let t0 = (chrono::Utc::now().timestamp_millis() / 3_600_000 - 7) * 3_600_000;
    let msgs = messages(FIRMS, t0, |i| format!("park/m{i:03}/energy"));
    let total = msgs.len() as i64;
    mosquitto::publish_qos1(
        broker.port,
        "shards-publisher-2",
        msgs,
        Duration::from_secs(60),
        || {},
    )
    .await;
    let shard_dbs: Vec<PathBuf> = (0..SHARDS)
        .map(|k| dir.path().join(format!("shard-{k}.db")))
        .collect();
    wait_for_readings(&shard_dbs, total, "3 shards");
    std::thread::sleep(Duration::from_millis(500));
    let park: f64 = shard_dbs
        .iter()
        .map(|db| import_kwh(db, "park", "park"))
        .sum();
    assert_eq!(park, 1_272.0);
    for (k, db) in shard_dbs.iter().enumerate() {
        let firms = count(
            db,
            "SELECT COUNT(DISTINCT entity) FROM aggregates WHERE level = 'firm'",
        );
        let expected = (0..FIRMS)
            .filter(|i| ecogate::config::shard::shard_of(&format!("f{i:03}"), SHARDS) == k as u32)
            .count() as i64;
        assert_eq!(firms, expected, "shard {k} accounts only its own firms");
    }
}

/// What `check` and `run` refuse in a split park, with the place named.
#[test]
fn a_split_park_refuses_what_would_double_count_or_collide() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ecogate"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let p = path.to_str().unwrap();
    // One client id for all shards: the broker would keep only one connected.
    let text = config(6, 1883, dir.path(), true, "park/{meter}/energy")
        .replace("ecogate-shard-{shard}", "ecogate-park");
    std::fs::write(&path, &text).unwrap();
    let (code, out) = run(&["check", "--config", p]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("shards 0 and 1 would both connect with MQTT client_id `ecogate-park`"),
        "{out}"
    );
    // A split park's instance must say which shard it is.
    let good = config(6, 1883, dir.path(), true, "park/{meter}/energy");
    std::fs::write(&path, &good).unwrap();
    let (code, out) = run(&["run", "--config", p]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("give this one's --shard (0 to 2)"), "{out}");
    let (code, out) = run(&["run", "--config", p, "--shard", "3"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--shard 3 does not exist"), "{out}");
    // A pinned firm outside the split, located.
    let pinned = good.replacen("land_mu = 10\n", "land_mu = 10\nshard = 5\n", 1);
    std::fs::write(&path, &pinned).unwrap();
    let (code, out) = run(&["check", "--config", p]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("firms[0].shard"), "{out}");
    assert!(out.contains("shard 5 does not exist"), "{out}");
    // One Modbus line carrying meters of two shards: which shard would poll it?
    let a = ecogate::config::shard::shard_of("f000", SHARDS);
    let other = (1..6)
        .find(|i| ecogate::config::shard::shard_of(&format!("f{i:03}"), SHARDS) != a)
        .unwrap();
    let modbus = format!(
        "{good}[[modbus.buses]]\nid = \"rs485-1\"\ntransport = \"rtu_over_tcp\"\naddress = \"127.0.0.1:5020\"\n\
         [[modbus.devices]]\nmeter = \"m000\"\nbus = \"rs485-1\"\nunit_id = 1\nprofile = \"acrel-adl400\"\nchannels = {{ import = \"import_kwh\" }}\n\
         [[modbus.devices]]\nmeter = \"m{other:03}\"\nbus = \"rs485-1\"\nunit_id = 2\nprofile = \"acrel-adl400\"\nchannels = {{ import = \"import_kwh\" }}\n"
    );
    std::fs::write(&path, &modbus).unwrap();
    let (code, out) = run(&["check", "--config", p]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("modbus.devices[1].meter")
            && out.contains("line `rs485-1` would serve two shards"),
        "{out}"
    );
}

/// `replay --shard k` of the whole park's file: shard k's rows are accounted, the others' are
/// passed over and counted, none refused. 6 firms x 3 hourly readings rising 5 kWh: shard k
/// holds 2 x 5 = 10 kWh a firm of its own.
#[test]
fn a_shard_replays_its_own_rows_of_a_whole_parks_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        config(6, 1883, dir.path(), true, "park/{meter}/energy"),
    )
    .unwrap();
    let mut csv = String::from("timestamp,meter,channel,value,unit\n");
    for h in 0..3 {
        for i in 0..6 {
            csv.push_str(&format!(
                "2026-11-02 0{h}:00:00,m{i:03},import,{},kWh\n",
                100 + 5 * h
            ));
        }
    }
    let input = dir.path().join("park.csv");
    std::fs::write(&input, csv).unwrap();
    let own: Vec<usize> = (0..6)
        .filter(|i| ecogate::config::shard::shard_of(&format!("f{i:03}"), SHARDS) == 0)
        .collect();
    assert!(!own.is_empty() && own.len() < 6, "shard 0 owns {own:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_ecogate"))
        .args(["replay", "--config", cfg.to_str().unwrap(), "--shard", "0"])
        .args(["--input", input.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "{} rows of other shards' meters passed over (shard 0 of 3)",
            (6 - own.len()) * 3
        )),
        "{stdout}"
    );
    let db = dir.path().join("shard-0.db");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM readings"),
        (own.len() * 3) as i64
    );
    assert_eq!(import_kwh(&db, "park", "park"), 10.0 * own.len() as f64);
}
