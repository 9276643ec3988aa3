//! What a stock mosquitto (20 messages in flight, 1,000 queued a session) drops never reaches
//! ecogate, so nothing downstream could notice it: ecogate reads the broker's `$SYS` drop
//! counter, counts it, warns in its log and on the status page, and names the two broker
//! settings that prevent it.

#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/victoria.rs"]
mod victoria;

use mosquitto::Mosquitto;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const MESSAGES: usize = 30_000;

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn config_text(broker_port: u16, metrics_port: u16, store: &Path) -> String {
    let mut text = String::from(
        "[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"charging_station\"\n",
    );
    for i in (0..100).map(|i| format!("c{i}")).chain(["g".to_string()]) {
        text.push_str(&format!(
            "[[meters]]\nid = \"{i}\"\nsite = \"s\"\nchannels = [{{ id = \"power\", kind = \"gauge\", unit = \"kW\" }}]\n"
        ));
    }
    text.push_str(&format!(
        "[store]\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {broker_port}\nclient_id = \"ecogate-stock\"\n\
         [[mqtt.subscriptions]]\ntopic = \"park/{{meter}}/power\"\ndecoder = \"json\"\nfields = {{ power = \"/kw\" }}\ntimestamp = \"/ts\"\nsequence = \"/seq\"\n",
        store.display(),
    ));
    text
}

/// A persistent session subscribed to `elsewhere/#` at QoS 1 that goes away: the broker queues
/// what comes for it up to its limit and drops the rest.
async fn leave_a_sleeping_session(port: u16) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut o = MqttOptions::new("sleeper", "127.0.0.1", port);
    o.set_clean_session(false);
    let (client, mut ev) = AsyncClient::new(o, 10);
    client
        .subscribe("elsewhere/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "the sleeper was never subscribed"
        );
        if let Ok(Ok(Event::Incoming(Packet::SubAck(_)))) =
            tokio::time::timeout(Duration::from_secs(1), ev.poll()).await
        {
            break;
        }
    }
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), ev.poll()).await;
}

/// Phase 1: only ecogate subscribes to `park/...`, so every one of 30,000 messages published as
/// fast as the broker takes them must be either a reading in the store or counted by the broker
/// as dropped: readings + `ecogate_mqtt_broker_dropped_messages` = 30,000 (whether the broker
/// drops any depends on the machine's speed; the sum does not).
///
/// Every message carries its meter's sequence number (`sequence = "/seq"`): a drop shows as a
/// gap once a later message of its meter arrives, so the numbers missing are at most the drops.
///
/// Phase 2: 3,000 messages for a sleeping session whose queue holds 1,000: the broker drops at
/// least 1,000 (mosquitto counts a message it cannot queue as dropped). ecogate heard the counter
/// at 0 before anything was published, so the drops it saw equal the broker's total exactly;
/// its log warns and names both settings, and the status page says so in English and 中文 with
/// that count.
///
/// Phase 3: meter g's numbers 1, 2, 6 are one gap of 3 messages, counted, and named on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_brokers_drops_are_counted_and_warned_about() {
    let broker = Mosquitto::start_with("stock\nsys_interval 1\n");
    leave_a_sleeping_session(broker.port).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let cfg_path = dir.path().join("ecogate.toml");
    let metrics_port = mosquitto::free_port();
    std::fs::write(&cfg_path, config_text(broker.port, metrics_port, &store)).unwrap();
    let log_path = dir.path().join("stderr.log");
    let _child = Guard(
        Command::new(env!("CARGO_BIN_EXE_ecogate"))
            .args(["run", "--config", cfg_path.to_str().unwrap()])
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let metric = |name: &str| victoria::scraped(metrics_port, name).unwrap_or(-1.0);
    // Connected and subscribed: the broker's counter has been heard (0 drops so far).
    let ready = Instant::now() + Duration::from_secs(20);
    while metric("ecogate_mqtt_broker_dropped_messages") != 0.0 {
        assert!(
            Instant::now() < ready,
            "the broker's $SYS counter never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let t0 = chrono::Utc::now().timestamp_millis() - (MESSAGES as i64 / 100 + 1) * 60_000;
    let msgs: Vec<(String, Vec<u8>)> = (0..MESSAGES)
        .map(|n| {
            let (i, k) = (n % 100, (n / 100) as i64);
            (
                format!("park/c{i}/power"),
                format!(
                    "{{\"kw\":{},\"ts\":{},\"seq\":{k}}}",
                    5 + k % 7,
                    t0 + k * 60_000
                )
                .into_bytes(),
            )
        })
        .collect();
    mosquitto::publish_qos1(
        broker.port,
        "burst-publisher",
        msgs,
        Duration::from_secs(120),
        || {},
    )
    .await;
    let stored = || -> f64 {
        rusqlite::Connection::open(&store)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get::<_, i64>(0)))
            .map_or(0.0, |n| n as f64)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut readings, mut dropped) = (0.0, 0.0);
    while Instant::now() < deadline {
        readings = stored();
        dropped = metric("ecogate_mqtt_broker_dropped_messages");
        if readings + dropped == MESSAGES as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("{readings} readings stored, {dropped} dropped by the broker");
    assert_eq!(readings + dropped, MESSAGES as f64);
    // A dropped message shows as a gap once a later one of its meter arrives: never more
    // missing numbers than drops, none without drops.
    let missing = metric("ecogate_mqtt_sequence_missing_messages_total");
    eprintln!("{missing} sequence numbers missing");
    assert!(
        (0.0..=dropped).contains(&missing),
        "{missing} missing, {dropped} dropped"
    );

    let elsewhere: Vec<(String, Vec<u8>)> = (0..3_000)
        .map(|n| ("elsewhere/x".to_string(), format!("{n}").into_bytes()))
        .collect();
    mosquitto::publish_qos1(
        broker.port,
        "elsewhere-publisher",
        elsewhere,
        Duration::from_secs(60),
        || {},
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut total, mut seen);
    loop {
        total = metric("ecogate_mqtt_broker_dropped_messages");
        seen = metric("ecogate_mqtt_broker_drops_seen_total");
        if total >= dropped + 1_000.0 && seen == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broker's drops for the sleeper were not seen: total {total}, seen {seen}, before {dropped}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("{total} dropped by the broker in all, {seen} seen by ecogate");

    // Phase 3: meter g publishes 1, 2 and 6: one gap of 3 (3, 4, 5), on the page with its numbers.
    let gaps = metric("ecogate_mqtt_sequence_gaps_total");
    let now = chrono::Utc::now().timestamp_millis();
    let g: Vec<(String, Vec<u8>)> = [1, 2, 6]
        .iter()
        .map(|n| {
            let body = format!(
                "{{\"kw\":1,\"ts\":{},\"seq\":{n}}}",
                now - 60_000 + n * 1000
            );
            ("park/g/power".to_string(), body.into_bytes())
        })
        .collect();
    mosquitto::publish_qos1(
        broker.port,
        "g-publisher",
        g,
        Duration::from_secs(20),
        || {},
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric("ecogate_mqtt_sequence_gaps_total") < gaps + 1.0 {
        assert!(Instant::now() < deadline, "meter g's gap was not seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric("ecogate_mqtt_sequence_gaps_total"), gaps + 1.0);
    assert_eq!(
        metric("ecogate_mqtt_sequence_missing_messages_total"),
        missing + 3.0
    );

    let log = std::fs::read_to_string(&log_path).unwrap();
    let warning = log
        .lines()
        .find(|l| l.contains("the MQTT broker reports dropping messages"))
        .unwrap_or_else(|| panic!("no drop warning in the log:\n{log}"));
    assert!(
        warning.contains("max_queued_messages") && warning.contains("max_inflight_messages"),
        "{warning}"
    );
    let count = format!("{}", seen as u64);
    let en = victoria::http_get(metrics_port, "/?lang=en").unwrap();
    assert!(
        en.contains(&format!("reported dropping {count} messages"))
            && en.contains("max_queued_messages")
            && en.contains("max_inflight_messages"),
        "{en}"
    );
    assert!(en.contains("(latest: meter g, 6 after 2)"), "{en}");
    let zh = victoria::http_get(metrics_port, "/").unwrap();
    assert!(
        zh.contains(&format!("丢弃了 {count} 条消息")) && zh.contains("max_queued_messages"),
        "{zh}"
    );
    assert!(zh.contains("表计 g,2 之后收到 6"), "{zh}");
}
