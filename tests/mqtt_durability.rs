//! No reading lost, none counted twice: 50,000 QoS 1 readings through mosquitto into `ecogate
//! run`, with ecogate killed -9 mid-stream, or the broker restarted mid-stream.

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/mqtt_proxy.rs"]
mod mqtt_proxy;
#[path = "common/victoria.rs"]
mod victoria;

use ecogate::accounting::metric::Metric;
use ecogate::accounting::window::WindowKind;
use ecogate::accounting::{Accountant, Entity};
use ecogate::config::Config;
use ecogate::sinks::store::Store;
use mosquitto::Mosquitto;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

const METERS: usize = 100;
const PER_METER: usize = 500;

fn config_text(port: u16, store: &Path, meters: usize, payload_time: bool) -> String {
    let mut t = String::from(
        "[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"charging_station\"\n",
    );
    for i in 0..meters {
        t.push_str(&format!(
            "[[meters]]\nid = \"c{i}\"\nsite = \"s\"\nchannels = [{{ id = \"delivered\", carrier = \"charging_delivered\", kind = \"counter\", unit = \"Wh\", max_rate_per_hour = 1000000 }}]\n"
        ));
    }
    t.push_str(&format!(
        "[store]\npath = \"{}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"ecogate-durability\"\n\
         [[mqtt.subscriptions]]\ntopic = \"park/{{meter}}/energy\"\ndecoder = \"json\"\nfields = {{ delivered = \"/wh\" }}\n{}",
        store.display(),
        if payload_time { "timestamp = \"/ts\"\n" } else { "" }
    ));
    t
}

/// Meter i's k-th reading: a cumulative register in Wh, one a minute, ending a minute ago.
fn messages() -> (Vec<(String, Vec<u8>)>, f64) {
    let t0 = chrono::Utc::now().timestamp_millis() - (PER_METER as i64 + 1) * 60_000;
    let mut out = Vec::with_capacity(METERS * PER_METER);
    for k in 0..PER_METER {
        for i in 0..METERS {
            let wh = 1_000_000 + (k * (37 + i)) as u64;
            out.push((
                format!("park/c{i}/energy"),
                format!("{{\"wh\":{wh},\"ts\":{}}}", t0 + k as i64 * 60_000).into_bytes(),
            ));
        }
    }
    // The first reading of each meter is its baseline: truth = sum over meters of 499 x (37 + i) Wh.
    let truth_wh: u64 = (0..METERS)
        .map(|i| ((PER_METER - 1) * (37 + i)) as u64)
        .sum();
    (out, truth_wh as f64 / 1000.0)
}

fn start_ecogate(cfg: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ecogate"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .spawn()
        .unwrap()
}

fn delivered_kwh(cfg: &Arc<Config>, store: &Path) -> f64 {
    let Ok(s) = Store::open(store) else {
        return 0.0;
    };
    let acct = Accountant::new(cfg.clone());
    s.sums(&acct, WindowKind::Year, Entity::Firm(0), 0, i64::MAX)
        .map_or(0.0, |x| x.get(Metric::ChargingDeliveredKwh))
}

/// The durability publisher: QoS 1, two minutes at most.
async fn publish(
    port: u16,
    messages: Vec<(String, Vec<u8>)>,
    midway: impl FnOnce() + Send + 'static,
) {
    mosquitto::publish_qos1(
        port,
        "durability-publisher",
        messages,
        Duration::from_secs(120),
        midway,
    )
    .await;
}

struct Setup {
    dir: tempfile::TempDir,
    cfg_path: PathBuf,
    store: PathBuf,
    cfg: Arc<Config>,
}

fn setup(port: u16) -> Setup {
    setup_with(port, METERS, true)
}

fn setup_with(port: u16, meters: usize, payload_time: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let cfg_path = dir.path().join("ecogate.toml");
    let text = config_text(port, &store, meters, payload_time);
    std::fs::write(&cfg_path, &text).unwrap();
    let cfg = ecogate::app::AppConfig::parse(&cfg_path, &text)
        .unwrap()
        .core;
    Setup {
        dir,
        cfg_path,
        store,
        cfg,
    }
}

/// Polls the store (off the async runtime) until the firm's total reaches `truth` or 90 s pass.
async fn wait_for_total(s: &Setup, truth: f64) -> f64 {
    let (cfg, store) = (s.cfg.clone(), s.store.clone());
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got = delivered_kwh(&cfg, &store);
            if got == truth || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
    .await
    .unwrap()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing_and_counts_nothing_twice() {
    let broker = Mosquitto::start();
    let s = setup(broker.port);
    let ecogate = Arc::new(std::sync::Mutex::new(Guard(Some(start_ecogate(
        &s.cfg_path,
    )))));
    // Subscribed before anything is published (a new session has nothing queued yet).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (msgs, truth) = messages();
    let victim = ecogate.clone();
    publish(broker.port, msgs, move || {
        let mut child = victim.lock().unwrap().0.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    })
    .await;
    let before_restart = delivered_kwh(&s.cfg, &s.store);
    let child = Guard(Some(start_ecogate(&s.cfg_path)));
    let got = wait_for_total(&s, truth).await;
    drop(child);
    eprintln!(
        "kill -9: {before_restart} kWh before restart, {got} kWh at the end, truth {truth} kWh"
    );
    assert!(
        before_restart < truth,
        "the kill came too late to test anything"
    );
    assert_eq!(got, truth);
    drop(s.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream_loses_nothing() {
    let mut broker = Mosquitto::start();
    let port = broker.port;
    let s = setup(port);
    let child = Guard(Some(start_ecogate(&s.cfg_path)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (mut msgs, truth) = messages();
    let second = msgs.split_off(msgs.len() / 2);
    publish(port, msgs, || {}).await;
    // Stopped gracefully, mosquitto saves ecogate's session with its queued and in-flight
    // messages; ecogate reconnects to the new broker and finds its session present.
    broker.restart();
    publish(port, second, || {}).await;
    let got = wait_for_total(&s, truth).await;
    drop(child);
    eprintln!("broker restart: {got} kWh at the end, truth {truth} kWh");
    assert_eq!(got, truth);
}

/// Stops ecogate when the test ends, even by a failed assertion.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            stop(c);
        }
    }
}

/// Without payload timestamps every reading is stamped on arrival: a backlog delivered after a
/// restart arrives in one burst, and redelivered messages arrive after newer ones. 20 meters x
/// 2,000 readings, meter i rising by 37 + i Wh a reading. Truth per meter = last - first =
/// 1,999 x (37 + i) Wh.
const NT_METERS: usize = 20;
const NT_PER_METER: usize = 2_000;

fn untimed_messages() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::with_capacity(NT_METERS * NT_PER_METER);
    for k in 0..NT_PER_METER {
        for i in 0..NT_METERS {
            let wh = 5_000_000 + (k * (37 + i)) as u64;
            out.push((
                format!("park/c{i}/energy"),
                format!("{{\"wh\":{wh}}}").into_bytes(),
            ));
        }
    }
    out
}

fn meter_truth_kwh(i: usize) -> f64 {
    ((NT_PER_METER - 1) * (37 + i)) as f64 / 1000.0
}

fn meter_kwh(cfg: &Arc<Config>, store: &Path) -> Vec<f64> {
    let Ok(s) = Store::open(store) else {
        return vec![0.0; NT_METERS];
    };
    let acct = Accountant::new(cfg.clone());
    (0..NT_METERS)
        .map(|i| {
            s.sums(
                &acct,
                WindowKind::Year,
                Entity::Meter(i as u32),
                0,
                i64::MAX,
            )
            .map_or(0.0, |x| x.get(Metric::ChargingDeliveredKwh))
        })
        .collect()
}

/// Polls until every meter's total equals its truth or 90 s pass; returns the totals.
async fn wait_for_meters(s: &Setup) -> Vec<f64> {
    let (cfg, store) = (s.cfg.clone(), s.store.clone());
    tokio::task::spawn_blocking(move || {
        let truth: Vec<f64> = (0..NT_METERS).map(meter_truth_kwh).collect();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got = meter_kwh(&cfg, &store);
            if got == truth || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
    .await
    .unwrap()
}

fn report(what: &str, got: &[f64]) {
    for (i, g) in got.iter().enumerate() {
        eprintln!(
            "{what}: meter c{i}: {g} kWh, truth {} kWh",
            meter_truth_kwh(i)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_three_times_without_payload_timestamps_counts_each_meter_exactly() {
    let broker = Mosquitto::start();
    let s = setup_with(broker.port, NT_METERS, false);
    let ecogate = Arc::new(std::sync::Mutex::new(Guard(Some(start_ecogate(
        &s.cfg_path,
    )))));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut msgs = untimed_messages();
    let quarter = msgs.len() / 4;
    let mut parts = Vec::new();
    for _ in 0..3 {
        let rest = msgs.split_off(quarter);
        parts.push(std::mem::replace(&mut msgs, rest));
    }
    parts.push(msgs);
    for (n, part) in parts.into_iter().enumerate() {
        let victim = ecogate.clone();
        let kill = n < 3;
        publish(broker.port, part, move || {
            if kill {
                // SIGKILL halfway through this part: the rest of it queues at the broker and
                // arrives as one burst when ecogate is back.
                let mut child = victim.lock().unwrap().0.take().unwrap();
                child.kill().unwrap();
                child.wait().unwrap();
            }
        })
        .await;
        if kill {
            ecogate.lock().unwrap().0 = Some(start_ecogate(&s.cfg_path));
        }
    }
    let got = wait_for_meters(&s).await;
    drop(ecogate);
    report("kill -9 x3, stamped on arrival", &got);
    let truth: Vec<f64> = (0..NT_METERS).map(meter_truth_kwh).collect();
    assert_eq!(got, truth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarts_without_payload_timestamps_count_each_meter_exactly() {
    let broker = Arc::new(std::sync::Mutex::new(Mosquitto::start()));
    let port = broker.lock().unwrap().port;
    let s = setup_with(port, NT_METERS, false);
    let child = Guard(Some(start_ecogate(&s.cfg_path)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut msgs = untimed_messages();
    let second = msgs.split_off(msgs.len() / 2);
    for part in [msgs, second] {
        let b = broker.clone();
        // The broker restarts halfway through each half: publishers and ecogate reconnect,
        // unacknowledged messages are sent and delivered again.
        publish(port, part, move || b.lock().unwrap().restart()).await;
    }
    let got = wait_for_meters(&s).await;
    drop(child);
    report("two broker restarts, stamped on arrival", &got);
    let truth: Vec<f64> = (0..NT_METERS).map(meter_truth_kwh).collect();
    assert_eq!(got, truth);
}

/// A loss the totals cannot hide: every message ecogate acknowledged must be durable.
/// Through a proxy that sees ecogate's PUBACKs, ecogate is killed -9 once 3,000 have gone out;
/// then, without restarting it, every reading of the first N messages (N = the PUBACKs the proxy
/// saw, messages delivered in publish order) must be in the store or, not yet accounted, in its
/// inbox, counter and gauge alike. A
/// source that acknowledged on arrival would fail here. After a restart the stream completes
/// and each meter's counter total and reading count equal the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_is_durable_after_kill_9() {
    const ACK_METERS: usize = 20;
    const ACK_PER_METER: usize = 1_000;
    let broker = Mosquitto::start();
    let proxy = mqtt_proxy::MqttProxy::start(broker.port).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let cfg_path = dir.path().join("ecogate.toml");
    let mut text = String::from(
        "[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"charging_station\"\n",
    );
    for i in 0..ACK_METERS {
        text.push_str(&format!(
            "[[meters]]\nid = \"c{i}\"\nsite = \"s\"\nchannels = [{{ id = \"delivered\", carrier = \"charging_delivered\", kind = \"counter\", unit = \"Wh\", max_rate_per_hour = 1000000 }}, {{ id = \"power\", kind = \"gauge\", unit = \"kW\" }}]\n"
        ));
    }
    text.push_str(&format!(
        "[store]\npath = \"{}\"\n[metrics]\nenabled = false\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"ecogate-acked\"\n\
         [[mqtt.subscriptions]]\ntopic = \"park/{{meter}}/energy\"\ndecoder = \"json\"\nfields = {{ delivered = \"/wh\", power = \"/kw\" }}\ntimestamp = \"/ts\"\n",
        store.display(),
        proxy.port
    ));
    std::fs::write(&cfg_path, &text).unwrap();
    let t0 = chrono::Utc::now().timestamp_millis() - (ACK_PER_METER as i64 + 1) * 60_000;
    let mut msgs = Vec::new();
    let mut keys = Vec::new();
    for k in 0..ACK_PER_METER {
        for i in 0..ACK_METERS {
            let ts = t0 + k as i64 * 60_000;
            let wh = 1_000 + k * (10 + i);
            msgs.push((
                format!("park/c{i}/energy"),
                format!("{{\"wh\":{wh},\"kw\":{},\"ts\":{ts}}}", 5 + k % 7).into_bytes(),
            ));
            keys.push((format!("c{i}"), ts));
        }
    }
    let victim = Arc::new(std::sync::Mutex::new(Guard(Some(start_ecogate(&cfg_path)))));
    // Subscribed through the proxy before anything is published.
    let ready = Instant::now() + Duration::from_secs(20);
    while !proxy.seen().iter().any(|p| p.kind == mqtt_proxy::SUBSCRIBE) {
        assert!(Instant::now() < ready, "ecogate never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let publisher = tokio::spawn(publish(broker.port, msgs, || {}));
    let pubacks = |seen: &[mqtt_proxy::ClientPacket]| {
        seen.iter()
            .filter(|p| p.connection == 0 && p.kind == mqtt_proxy::PUBACK)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while pubacks(&proxy.seen()) < 3_000 {
        assert!(Instant::now() < deadline, "ecogate acknowledged too little");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    {
        let mut child = victim.lock().unwrap().0.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let acked = pubacks(&proxy.seen());
    // Every reading of the acknowledged messages, counter and gauge, is in the store or the inbox.
    let conn = rusqlite::Connection::open(&store).unwrap();
    let mut stored: std::collections::HashSet<(String, String, i64)> = Default::default();
    {
        let mut q = conn
            .prepare("SELECT meter, channel, ts_ms FROM readings_by_name")
            .unwrap();
        let rows = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        for row in rows {
            stored.insert(row.unwrap());
        }
    }
    let in_store = stored.len();
    // Acknowledged but not yet accounted: durable in the inbox (src/sinks/inbox.rs), above the
    // sequence the store's last commit accounted through; the restart accounts them.
    let accounted_seq: i64 = conn
        .query_row("SELECT value FROM meta WHERE key = 'inbox_seq'", [], |r| {
            r.get::<_, String>(0)
        })
        .map_or(0, |v| v.parse().unwrap());
    drop(conn);
    let inbox = rusqlite::Connection::open(ecogate::sinks::inbox::Inbox::path_for(&store)).unwrap();
    {
        let mut q = inbox
            .prepare("SELECT meter, channel, ts_ms FROM inbox WHERE seq > ?1")
            .unwrap();
        let rows = q
            .query_map([accounted_seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        for row in rows {
            stored.insert(row.unwrap());
        }
    }
    drop(inbox);
    eprintln!(
        "{in_store} readings in the store, {} more in the inbox only",
        stored.len() - in_store
    );
    let mut missing = 0;
    for (meter, ts) in &keys[..acked] {
        for channel in ["delivered", "power"] {
            if !stored.contains(&(meter.clone(), channel.to_string(), *ts)) {
                missing += 1;
            }
        }
    }
    eprintln!("kill -9 after {acked} PUBACKs: {} readings stored, {missing} acknowledged readings missing", stored.len());
    assert_eq!(
        missing, 0,
        "acknowledged messages missing from the store and the inbox"
    );
    // Restart: the rest arrives; totals and reading counts equal the truth.
    let _child = Guard(Some(start_ecogate(&cfg_path)));
    publisher.await.unwrap();
    let cfg = Arc::new(
        ecogate::app::AppConfig::parse(&cfg_path, &text)
            .unwrap()
            .core
            .as_ref()
            .clone(),
    );
    let truth_kwh: f64 = (0..ACK_METERS)
        .map(|i| ((ACK_PER_METER - 1) * (10 + i)) as f64 / 1000.0)
        .sum();
    let (c2, s2) = (cfg.clone(), store.clone());
    let got = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got = delivered_kwh(&c2, &s2);
            if (got - truth_kwh).abs() < 1e-9 || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
    .await
    .unwrap();
    assert!(
        (got - truth_kwh).abs() < 1e-9,
        "{got} kWh, truth {truth_kwh}"
    );
    let conn = rusqlite::Connection::open(&store).unwrap();
    let gauges: i64 = conn
        .query_row(
            "SELECT COUNT(DISTINCT meter || ts_ms) FROM readings_by_name WHERE channel = 'power'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(gauges as usize, ACK_METERS * ACK_PER_METER);
}

/// Group commit under a strict 20-message in-flight window (a broker that sends nothing more
/// until ecogate acknowledges, held to it by the proxy: Debian's mosquitto 2.0.11 leaks its own
/// window once acknowledgements flow). ecogate must learn the window from the flow, say so in
/// `ecogate_mqtt_broker_inflight_window`, and make each full window durable at once (an inbox
/// append, src/sinks/inbox.rs). 6,000 messages are 300 windows: at least 150 appends must be
/// group appends (the rest: the windows split across socket reads or arriving before the window
/// is learned), and every reading is counted: each meter's counter total is 99 x (10 + i) Wh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_twenty_message_window_is_learned_and_each_full_window_made_durable_at_once() {
    const W_METERS: usize = 60;
    const W_PER_METER: usize = 100;
    let broker = Mosquitto::start();
    let proxy = mqtt_proxy::MqttProxy::start_with_window(broker.port, Some(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let cfg_path = dir.path().join("ecogate.toml");
    let metrics_port = mosquitto::free_port();
    let mut text = String::from(
        "[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"charging_station\"\n",
    );
    for i in 0..W_METERS {
        text.push_str(&format!(
            "[[meters]]\nid = \"c{i}\"\nsite = \"s\"\nchannels = [{{ id = \"delivered\", carrier = \"charging_delivered\", kind = \"counter\", unit = \"Wh\", max_rate_per_hour = 1000000 }}]\n"
        ));
    }
    text.push_str(&format!(
        "[store]\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"ecogate-window\"\n\
         [[mqtt.subscriptions]]\ntopic = \"park/{{meter}}/energy\"\ndecoder = \"json\"\nfields = {{ delivered = \"/wh\" }}\ntimestamp = \"/ts\"\n",
        store.display(),
        proxy.port
    ));
    std::fs::write(&cfg_path, &text).unwrap();
    let cfg = ecogate::app::AppConfig::parse(&cfg_path, &text)
        .unwrap()
        .core;
    let t0 = chrono::Utc::now().timestamp_millis() - (W_PER_METER as i64 + 1) * 60_000;
    let mut msgs = Vec::new();
    for k in 0..W_PER_METER {
        for i in 0..W_METERS {
            msgs.push((
                format!("park/c{i}/energy"),
                format!(
                    "{{\"wh\":{},\"ts\":{}}}",
                    1_000 + k * (10 + i),
                    t0 + k as i64 * 60_000
                )
                .into_bytes(),
            ));
        }
    }
    let truth_kwh = (0..W_METERS)
        .map(|i| ((W_PER_METER - 1) * (10 + i)) as f64)
        .sum::<f64>()
        / 1000.0;
    let child = Guard(Some(start_ecogate(&cfg_path)));
    let ready = Instant::now() + Duration::from_secs(20);
    while !proxy.seen().iter().any(|p| p.kind == mqtt_proxy::SUBSCRIBE) {
        assert!(Instant::now() < ready, "ecogate never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metric = move |name: &str| victoria::scraped(metrics_port, name).unwrap_or(-1.0);
    publish(broker.port, msgs, || {}).await;
    let setup = Setup {
        dir,
        cfg_path,
        store: store.clone(),
        cfg,
    };
    let total_kwh = wait_for_total(&setup, truth_kwh).await;
    // Read after the stream: the gauge holds the window through the quiet that follows.
    let window = metric("ecogate_mqtt_broker_inflight_window");
    let group = metric("ecogate_inbox_group_appends_total");
    let appends = metric("ecogate_inbox_appends_total");
    let proxy_window = proxy
        .max_in_flight
        .load(std::sync::atomic::Ordering::Acquire);
    eprintln!(
        "total {total_kwh} kWh of {truth_kwh}; proxy window {proxy_window}; learned window \
         {window}; inbox appends {appends}, of which group appends {group}"
    );
    assert_eq!(total_kwh, truth_kwh);
    assert_eq!(
        proxy_window, 20,
        "the proxy held the broker to 20 messages in flight"
    );
    // What ecogate sees in flight can be a few short of the broker's count: messages read from
    // the socket that the MQTT library has not handed out yet (seen: 19 in a release build, 18 in
    // a debug build); never more than the broker allows.
    assert!((16.0..=20.0).contains(&window), "learned window {window}");
    // Not a share of all appends: the inbox appends whatever arrived during the append before
    // (a part of a window too), since an append costs little; what matters is that full windows
    // are taken at once. Seen: 319 to 441 with another test binary running beside. A group
    // append needs a learned window (src/sources/mqtt/window.rs): without one there are none.
    assert!(
        group >= 150.0,
        "{group} group appends of {appends} appends for 300 full windows"
    );
    drop(child);
}

/// SIGHUP mid-stream: first with a configuration that is not valid (refused, the running one
/// goes on), then with a valid one that changes the firm's land from 1 to 2 mu (the pipeline
/// restarts on it, the MQTT source runs on: its settings did not change), then with one that
/// changes the MQTT keep-alive (the source restarts too). 50,000 QoS 1 readings with payload
/// timestamps: every one is stored once (50,000 rows), and the firm's total is the truth (sum
/// over meters of 499 x (37 + i) Wh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_mid_stream_reloads_and_loses_nothing() {
    let broker = Mosquitto::start();
    let s = setup(broker.port);
    let log_path = s.dir.path().join("stderr.log");
    let child = Command::new(env!("CARGO_BIN_EXE_ecogate"))
        .args(["run", "--config", s.cfg_path.to_str().unwrap()])
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut child = Guard(Some(child));
    let log = move || std::fs::read_to_string(&log_path).unwrap_or_default();
    let started = Instant::now();
    while !log().contains("ecogate running") && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log().contains("ecogate running"), "{}", log());
    let (msgs, truth) = messages();
    let (cfg_path, hup_pid, hup_log) = (s.cfg_path.clone(), pid.clone(), log.clone());
    let valid = std::fs::read_to_string(&s.cfg_path).unwrap();
    publish(broker.port, msgs, move || {
        let hup = || {
            Command::new("kill")
                .args(["-HUP", &hup_pid])
                .status()
                .unwrap()
        };
        std::fs::write(&cfg_path, format!("{valid}\n[nonsense]\nkey = 1\n")).unwrap();
        hup();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !hup_log().contains("not valid") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let wait_for = |text: &str, n: usize| {
            let deadline = Instant::now() + Duration::from_secs(20);
            while hup_log().matches(text).count() < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let land = valid.replace("land_mu = 1", "land_mu = 2");
        std::fs::write(&cfg_path, &land).unwrap();
        hup();
        wait_for("ecogate running", 2);
        std::fs::write(
            &cfg_path,
            land.replace(
                "client_id = \"ecogate-durability\"\n",
                "client_id = \"ecogate-durability\"\nkeep_alive_s = 45\n",
            ),
        )
        .unwrap();
        hup();
    })
    .await;
    let got = wait_for_total(&s, truth).await;
    let rows: i64 = rusqlite::Connection::open(&s.store)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0))
        .unwrap();
    let text = log();
    eprintln!("SIGHUP: {got} kWh, truth {truth} kWh, {rows} readings stored\n{text}");
    assert!(
        text.contains("reload refused") && text.contains("nonsense"),
        "{text}"
    );
    assert!(text.contains("reloading"), "{text}");
    assert_eq!(text.matches("ecogate running").count(), 3, "{text}");
    // Started at the start and after the keep-alive changed; not at the land change.
    assert_eq!(text.matches("mqtt source started").count(), 2, "{text}");
    assert_eq!(
        text.matches("its settings changed: it restarts").count(),
        1,
        "{text}"
    );
    assert_eq!(got, truth);
    assert_eq!(rows, (METERS * PER_METER) as i64);
    let child = child.0.take().unwrap();
    let out = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(out.success());
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success(), "{status:?}: {}", log());
}
