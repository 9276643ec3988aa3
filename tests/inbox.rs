//! The inbox (src/sinks/inbox.rs): QoS 1 messages are acknowledged once their readings are
//! durable in the inbox, before the accounting commit; a kill -9 in between loses nothing and
//! counts nothing twice, because the restart accounts what the inbox holds.

#[path = "common/mosquitto.rs"]
mod mosquitto;

use ecogate::accounting::metric::Metric;
use ecogate::accounting::window::WindowKind;
use ecogate::accounting::{Accountant, Entity};
use ecogate::sinks::inbox::Inbox;
use ecogate::sinks::store::Store;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const METERS: usize = 10;
const PER_METER: usize = 20;

fn config(port: u16, store: &Path, commit_interval_ms: u64) -> String {
    let mut t = String::from(
        "[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"charging_station\"\n",
    );
    for i in 0..METERS {
        t.push_str(&format!(
            "[[meters]]\nid = \"c{i}\"\nsite = \"s\"\nchannels = [{{ id = \"delivered\", carrier = \"charging_delivered\", kind = \"counter\", unit = \"Wh\", max_rate_per_hour = 1000000 }}]\n"
        ));
    }
    t.push_str(&format!(
        "[store]\npath = \"{}\"\ncommit_interval_ms = {commit_interval_ms}\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"ecogate-inbox\"\n\
         [[mqtt.subscriptions]]\ntopic = \"park/{{meter}}/energy\"\ndecoder = \"json\"\nfields = {{ delivered = \"/wh\" }}\ntimestamp = \"/ts\"\n",
        store.display()
    ));
    t
}

struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start(cfg: &Path) -> Guard {
    Guard(Some(
        Command::new(env!("CARGO_BIN_EXE_ecogate"))
            .args(["run", "--config", cfg.to_str().unwrap()])
            .spawn()
            .unwrap(),
    ))
}

fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(-1)
}

/// 200 QoS 1 messages (10 meters x 20 readings a minute apart, meter i rising 10 + i Wh a
/// minute) reach an ecogate whose accounting commits only every 60 s: all 200 are in the inbox,
/// and so acknowledged, while the store holds none. Killed -9 then, and started again with a
/// 100 ms interval, ecogate accounts the inbox's 200 readings: the firm's total is exactly
/// sum over i of 19 x (10 + i) Wh = 19 x 145 = 2,755 Wh (each meter's first reading is its
/// baseline), each reading stored once. The broker had every message acknowledged and sends
/// none again, so only the inbox can have kept them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_acknowledged_but_not_accounted_are_accounted_after_kill_9() {
    let broker = mosquitto::Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let cfg_path = dir.path().join("ecogate.toml");
    std::fs::write(&cfg_path, config(broker.port, &store, 60_000)).unwrap();
    let mut child = start(&cfg_path);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t0 = chrono::Utc::now().timestamp_millis() - (PER_METER as i64 + 1) * 60_000;
    let msgs: Vec<(String, Vec<u8>)> = (0..PER_METER)
        .flat_map(|k| {
            (0..METERS).map(move |i| {
                (
                    format!("park/c{i}/energy"),
                    format!(
                        "{{\"wh\":{},\"ts\":{}}}",
                        5_000 + k * (10 + i),
                        t0 + k as i64 * 60_000
                    )
                    .into_bytes(),
                )
            })
        })
        .collect();
    mosquitto::publish_qos1(
        broker.port,
        "inbox-publisher",
        msgs,
        Duration::from_secs(30),
        || {},
    )
    .await;
    let inbox = Inbox::path_for(&store);
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&inbox, "SELECT COUNT(*) FROM inbox") < (METERS * PER_METER) as i64 {
        assert!(
            Instant::now() < deadline,
            "the inbox never held all 200 readings"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give the acknowledgements time to reach the broker, then kill before any accounting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accounted_before = count(&store, "SELECT COUNT(*) FROM readings");
    {
        let mut c = child.0.take().unwrap();
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
    }
    assert_eq!(
        accounted_before, 0,
        "the store accounted nothing before the kill (60 s interval)"
    );
    std::fs::write(&cfg_path, config(broker.port, &store, 100)).unwrap();
    child = start(&cfg_path);
    let cfg =
        ecogate::app::AppConfig::parse(&cfg_path, &std::fs::read_to_string(&cfg_path).unwrap())
            .unwrap()
            .core;
    let deadline = Instant::now() + Duration::from_secs(30);
    let total_wh = loop {
        let wh = Store::open(&store)
            .ok()
            .and_then(|s| {
                s.sums(
                    &Accountant::new(cfg.clone()),
                    WindowKind::Year,
                    Entity::Firm(0),
                    0,
                    i64::MAX,
                )
                .ok()
            })
            .map_or(0.0, |x| x.get(Metric::ChargingDeliveredKwh) * 1000.0);
        if (wh - 2_755.0).abs() < 1e-6 || Instant::now() > deadline {
            break wh;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(child);
    assert!(
        (total_wh - 2_755.0).abs() < 1e-6,
        "firm total {total_wh} Wh, hand-computed 2,755 Wh"
    );
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM readings"),
        200,
        "each reading stored once"
    );
    assert_eq!(
        count(
            &store,
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'inbox_seq'"
        ),
        200,
        "the store recorded the inbox accounted through its 200th row"
    );
}
