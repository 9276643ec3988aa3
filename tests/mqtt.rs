//! MQTT source against a real mosquitto on a loopback port the test picks.

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/mqtt_proxy.rs"]
mod mqtt_proxy;

use common::*;
use ecogate::app::AppConfig as Config;
use ecogate::metrics::Metrics;
use ecogate::pipeline::Envelope;
use ecogate::reading::Reading;
use ecogate::sources::SourceContext;
use mosquitto::Mosquitto;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const PARK: &str = "[park]\nname = \"P\"\ngrid_factor_year = 2022\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"charging_station\"\n";

fn meters(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        out.push_str(&format!(
            "[[meters]]\nid = \"c{i}\"\nsite = \"s\"\nchannels = [\n  {{ id = \"delivered\", carrier = \"charging_delivered\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 1000000 }},\n  {{ id = \"power\", kind = \"gauge\", unit = \"kW\" }},\n]\n"
        ));
    }
    out
}

/// A publisher that waits for every PUBACK.
async fn publish_all(port: u16, id: &str, messages: Vec<(String, Vec<u8>)>, qos: QoS) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_max_packet_size(4 << 20, 4 << 20)
        .set_inflight(500)
        .set_request_channel_capacity(1000);
    let (client, mut ev) = AsyncClient::new(o, 1000);
    let total = messages.len();
    let sender = tokio::spawn(async move {
        for (topic, payload) in messages {
            client.publish(topic, qos, false, payload).await.unwrap();
        }
        client
    });
    let mut acked = 0;
    if qos == QoS::AtMostOnce {
        let client = sender.await.unwrap();
        client.disconnect().await.unwrap();
        while let Ok(e) = ev.poll().await {
            if matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
        return;
    }
    while acked < total {
        match tokio::time::timeout(Duration::from_secs(30), ev.poll())
            .await
            .expect("publisher stalled")
        {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                eprintln!("publisher reconnecting: {e}");
            }
        }
    }
    let _ = sender.await;
}

/// Runs the MQTT source in-process; every envelope is acknowledged at once (no store).
async fn collect(
    cfg: &Arc<Config>,
    until: impl Fn(&[Reading]) -> bool,
    limit: Duration,
) -> (Vec<Reading>, Arc<Metrics>) {
    collect_with(cfg, until, limit, None).await
}

/// As `collect`, telling `ready` once the broker holds the source's subscriptions: a publisher
/// waits for it instead of sleeping (a busy machine once took longer than the sleep).
async fn collect_with(
    cfg: &Arc<Config>,
    until: impl Fn(&[Reading]) -> bool,
    limit: Duration,
    mut ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> (Vec<Reading>, Arc<Metrics>) {
    init_log();
    let (tx, mut rx) = mpsc::channel::<Envelope>(10_000);
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let source = ecogate::sources::mqtt::spawn(
        cfg.source::<ecogate::sources::mqtt::config::MqttConfig>()
            .unwrap(),
        cfg.core.clone(),
        SourceContext {
            output: tx,
            shutdown: stop_rx,
            clock: ecogate::util::Clock::real(),
        },
        metrics.clone(),
        &[],
    )
    .unwrap();
    let mut readings = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mqtt = metrics.component(ecogate::sources::mqtt::metrics::MqttMetrics::register);
    while !until(&readings) && tokio::time::Instant::now() < deadline {
        if mqtt.subscribed.get() == 1 {
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
        }
        let step = (tokio::time::Instant::now() + Duration::from_millis(20)).min(deadline);
        match tokio::time::timeout_at(step, rx.recv()).await {
            Ok(Some(env)) => {
                readings.extend(env.readings);
                if let Some(ack) = env.ack {
                    ack.done();
                }
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    stop_tx.send(true).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), source.task).await;
    (readings, metrics)
}

fn config(port: u16, client_id: &str, subscriptions: &str, n_meters: usize) -> Arc<Config> {
    let text = format!(
        "{PARK}{}[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"{client_id}\"\nmax_payload_bytes = 4096\n{subscriptions}",
        meters(n_meters)
    );
    Arc::new(Config::parse(Path::new("mqtt.toml"), &text).unwrap_or_else(|e| panic!("{e}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decoder_round_trips() {
    let broker = Mosquitto::start();
    let subs = "[[mqtt.subscriptions]]\ntopic = \"park/{firm}/{meter}/json\"\ndecoder = \"json\"\nfields = { delivered = \"/e/wh\", power = \"/p\" }\nunits = { delivered = \"Wh\" }\ntimestamp = \"/ts\"\n\
                [[mqtt.subscriptions]]\ntopic = \"park/{meter}/array\"\ndecoder = \"json_array\"\n\
                [[mqtt.subscriptions]]\ntopic = \"ocpp/{meter}\"\ndecoder = \"ocpp\"\nchannel = \"delivered\"\n\
                [[mqtt.subscriptions]]\ntopic = \"plain/c3/power\"\nmeter = \"c3\"\ndecoder = \"number\"\nchannel = \"power\"\n";
    let cfg = config(broker.port, "ecogate-roundtrip", subs, 4);
    let port = broker.port;
    let (ready, subscribed) = tokio::sync::oneshot::channel();
    let publisher = tokio::spawn(async move {
        subscribed.await.expect("the source subscribed");
        publish_all(
            port,
            "pub-roundtrip",
            vec![
                ("park/f/c0/json".into(), br#"{"e":{"wh":1500},"p":"7.5","ts":"2026-01-05T00:00:00Z"}"#.to_vec()),
                ("park/c1/array".into(), br#"[{"channel":"delivered","value":2.25,"unit":"MWh","ts":1767571200}]"#.to_vec()),
                (
                    "ocpp/c2".into(),
                    br#"{"connectorId":1,"meterValue":[{"timestamp":"2026-01-05T00:00:00Z","sampledValue":[{"value":"12345","measurand":"Energy.Active.Import.Register","unit":"Wh"}]}]}"#.to_vec(),
                ),
                ("ocpp/c2".into(), br#"{"transactionId":4,"meterStop":20000,"timestamp":"2026-01-05T01:00:00Z"}"#.to_vec()),
                ("plain/c3/power".into(), b"42.5".to_vec()),
            ],
            QoS::AtLeastOnce,
        )
        .await;
    });
    let (readings, metrics) =
        collect_with(&cfg, |r| r.len() >= 6, Duration::from_secs(20), Some(ready)).await;
    publisher.await.unwrap();
    let find = |m: &str, ch: &str| {
        readings
            .iter()
            .filter(|r| r.meter == m && r.channel == ch)
            .cloned()
            .collect::<Vec<_>>()
    };
    let c0 = find("c0", "delivered");
    assert_eq!(
        (c0[0].amount, c0[0].unit.symbol, c0[0].ts_ms),
        (1500.0, "Wh", ts("2026-01-05T00:00:00Z"))
    );
    assert_eq!(find("c0", "power")[0].amount, 7.5);
    let c1 = find("c1", "delivered");
    assert_eq!(
        (c1[0].amount, c1[0].unit.symbol, c1[0].ts_ms),
        (2.25, "MWh", ts("2026-01-05T00:00:00Z"))
    );
    let c2: Vec<f64> = find("c2", "delivered").iter().map(|r| r.amount).collect();
    assert_eq!(c2, vec![12345.0, 20000.0]);
    assert_eq!(
        (
            find("c3", "power")[0].amount,
            find("c3", "power")[0].unit.symbol
        ),
        (42.5, "kW")
    );
    assert_eq!(
        metrics
            .component(ecogate::sources::mqtt::metrics::MqttMetrics::register)
            .messages
            .with_label_values(&["accepted"])
            .get(),
        5
    );
}

/// With mosquitto's default in-flight window of 20 QoS 1 messages the broker sends no more until
/// ecogate acknowledges, so 3,000 messages get through only if every acknowledgement goes out:
/// the runs written behind a leader, and the leaders that wake an event loop waiting on a quiet
/// socket. A second session under the same client id then finds nothing to redeliver: what was
/// committed before the stop was acknowledged on the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_keep_a_twenty_message_window_moving() {
    let broker = Mosquitto::start_with("max_inflight_messages 20\n");
    let (cfg, readings, _) = counters_through(broker.port, broker.port, "w", 3_000).await;
    assert_eq!(
        readings.len(),
        3_000,
        "every message through a 20-message window"
    );
    // In order per meter: meter c3's counter reads 0, 10, ..., 2,990 Wh.
    let c3: Vec<f64> = readings
        .iter()
        .filter(|r| r.meter == "c3")
        .map(|r| r.amount)
        .collect();
    assert_eq!(c3, (0..300).map(|k| k as f64 * 10.0).collect::<Vec<_>>());
    let (again, metrics) = collect(&cfg, |r| !r.is_empty(), Duration::from_secs(3)).await;
    assert_eq!(again.len(), 0, "redelivered after a clean stop: {again:?}");
    assert_eq!(
        metrics
            .component(ecogate::sources::mqtt::metrics::MqttMetrics::register)
            .messages
            .with_label_values(&["accepted"])
            .get(),
        0
    );
}

/// A broker holding a strict 20-message window with Nagle's algorithm on (mosquitto's default,
/// `set_tcp_nodelay false`) sends one message after a run of acknowledgements and holds the rest
/// until ecogate's side acknowledges that one at the TCP level, which Linux delays. ecogate then
/// sees refills of 1-2 messages and stalls on them; it took the window for 19 and moved 3,243
/// msg/s in the bench (docs/benchmarks.md). A PINGREQ right after a partial refill carries the
/// TCP acknowledgement: the whole window of 20 comes in, and is learned as 20.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_refill_of_a_small_window_is_pinged_for_the_rest() {
    let broker = Mosquitto::start();
    let proxy = mqtt_proxy::MqttProxy::start_with_window(broker.port, Some(20)).await;
    let (_, readings, metrics) = counters_through(broker.port, proxy.port, "k", 2_000).await;
    assert_eq!(readings.len(), 2_000, "every message through the window");
    assert_eq!(
        proxy
            .max_in_flight
            .load(std::sync::atomic::Ordering::Acquire),
        20,
        "the proxy held the broker to 20 in flight"
    );
    let mqtt = metrics.component(ecogate::sources::mqtt::metrics::MqttMetrics::register);
    assert!(mqtt.kicks.get() > 0, "refills were pinged for");
    assert_eq!(
        mqtt.inflight_window.get(),
        20,
        "the window learned is the broker's whole window"
    );
}

/// `n` QoS 1 counter messages (`counter_messages(prefix, n)`) published to the broker on
/// `broker_port` once the source, connected through `source_port`, has subscribed to
/// `{prefix}/{meter}`; its configuration, what it read, and its metrics.
async fn counters_through(
    broker_port: u16,
    source_port: u16,
    prefix: &str,
    n: usize,
) -> (Arc<Config>, Vec<Reading>, Arc<Metrics>) {
    let subs = format!(
        "[[mqtt.subscriptions]]\ntopic = \"{prefix}/{{meter}}\"\nqos = 1\ndecoder = \"json\"\nfields = {{ delivered = \"/wh\" }}\nunits = {{ delivered = \"Wh\" }}\ntimestamp = \"/ts\"\n"
    );
    let cfg = config(source_port, &format!("ecogate-{prefix}"), &subs, 10);
    let messages = counter_messages(prefix, n);
    let publisher_id = format!("pub-{prefix}");
    let (ready, subscribed) = tokio::sync::oneshot::channel();
    let publisher = tokio::spawn(async move {
        subscribed.await.expect("the source subscribed");
        publish_all(broker_port, &publisher_id, messages, QoS::AtLeastOnce).await;
    });
    let (readings, metrics) =
        collect_with(&cfg, |r| r.len() >= n, Duration::from_secs(60), Some(ready)).await;
    publisher.await.unwrap();
    (cfg, readings, metrics)
}

/// `n` JSON readings for meters c0..c9 in turn, each meter's counter +10 Wh a second, on
/// `{prefix}/c{m}`.
fn counter_messages(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    let t0 = 1_767_571_200_000i64;
    (0..n)
        .map(|i| {
            let (m, k) = (i % 10, (i / 10) as i64);
            (
                format!("{prefix}/c{m}"),
                format!("{{\"wh\":{},\"ts\":{}}}", k * 10, t0 + k * 1000).into_bytes(),
            )
        })
        .collect()
}

/// Receives envelopes until `readings` reaches `n`, returning their acknowledgements unfired.
async fn receive_until(
    rx: &mut mpsc::Receiver<Envelope>,
    readings: &mut usize,
    n: usize,
    deadline: tokio::time::Instant,
) -> Vec<ecogate::pipeline::Ack> {
    let mut acks = Vec::new();
    while *readings < n {
        let env = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{readings} of {n} readings"))
            .unwrap();
        *readings += env.readings.len();
        acks.extend(env.ack);
    }
    acks
}

/// A connection lost while 100 QoS 1 messages wait for their commit: the broker sends them again
/// on the next connection with the same packet ids, and each is acknowledged there exactly once,
/// for the copy that came on it. Acknowledging the lost connection's copies as well (as ecogate
/// once did) would send every packet id twice, and the second could acknowledge, under a reused
/// id, a message not yet committed. The proxy in front of mosquitto reads the PUBACKs as they
/// pass and cuts the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_lost_connection_each_message_is_acknowledged_once() {
    use mqtt_proxy::{MqttProxy, PUBACK, SUBSCRIBE};
    let broker = Mosquitto::start();
    let proxy = MqttProxy::start(broker.port).await;
    let subs = "[[mqtt.subscriptions]]\ntopic = \"lost/{meter}\"\nqos = 1\ndecoder = \"json\"\nfields = { delivered = \"/wh\" }\nunits = { delivered = \"Wh\" }\ntimestamp = \"/ts\"\n";
    let cfg = config(proxy.port, "ecogate-lost", subs, 10);
    let (tx, mut rx) = mpsc::channel::<Envelope>(10_000);
    let (stop_tx, stop_rx) = watch::channel(false);
    let source = ecogate::sources::mqtt::spawn(
        cfg.source::<ecogate::sources::mqtt::config::MqttConfig>()
            .unwrap(),
        cfg.core.clone(),
        SourceContext {
            output: tx,
            shutdown: stop_rx,
            clock: ecogate::util::Clock::real(),
        },
        Arc::new(Metrics::new()),
        &[],
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !proxy.seen().iter().any(|p| p.kind == SUBSCRIBE) {
        assert!(tokio::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let messages = counter_messages("lost", 100);
    publish_all(broker.port, "pub-lost", messages, QoS::AtLeastOnce).await;
    // Every envelope is held, not committed, until both copies of all 100 are in.
    let mut held = Vec::new();
    let mut readings = 0;
    held.extend(receive_until(&mut rx, &mut readings, 100, deadline).await);
    proxy.cut();
    held.extend(receive_until(&mut rx, &mut readings, 200, deadline).await);
    for ack in held {
        ack.done();
    }
    let pubacks = |connection: usize| {
        let mut ids: Vec<u16> = proxy
            .seen()
            .iter()
            .filter(|p| p.connection == connection && p.kind == PUBACK)
            .filter_map(|p| p.pkid)
            .collect();
        ids.sort_unstable();
        ids
    };
    while pubacks(1).len() < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} PUBACKs on the second connection",
            pubacks(1).len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Room for any late duplicate to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pubacks(0),
        Vec::<u16>::new(),
        "nothing was committed on the first"
    );
    let second = pubacks(1);
    let mut unique = second.clone();
    unique.dedup();
    assert_eq!(
        (second.len(), unique.len()),
        (100, 100),
        "100 PUBACKs, each packet id once"
    );
    stop_tx.send(true).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), source.task).await;
}

const SPARKPLUG_SUBSCRIPTION: &str = "[[mqtt.subscriptions]]\ntopic = \"spBv1.0/{group}/{type}/{node}/{meter}\"\ndecoder = \"sparkplug_b\"\nfields = { delivered = \"Energy/Delivered\", power = \"Power\" }\nunits = { delivered = \"Wh\" }\n";

/// A Sparkplug B metric with an alias, a datatype and a value (no timestamp of its own).
fn metric(
    name: Option<&str>,
    alias: u64,
    datatype: u32,
    value: ecogate::sources::mqtt::sparkplug::Scalar,
) -> ecogate::sources::mqtt::sparkplug::Metric {
    ecogate::sources::mqtt::sparkplug::Metric {
        name: name.map(String::from),
        alias: Some(alias),
        timestamp_ms: None,
        datatype,
        is_null: false,
        value: Some(value),
    }
}

/// Sparkplug B through mosquitto: a DBIRTH names the metrics and gives them aliases, the DDATA
/// after it uses the aliases only. Before the birth, data by alias is refused (`unknown_alias`);
/// a DEATH reads nothing and is no error; garbage and unknown meters are refused by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparkplug_b_birth_then_data_by_alias() {
    use ecogate::sources::mqtt::sparkplug::{encode, Scalar};
    let broker = Mosquitto::start();
    let subs = SPARKPLUG_SUBSCRIPTION;
    let cfg = config(broker.port, "ecogate-sparkplug", subs, 2);
    let t0 = ts("2026-01-05T00:00:00Z") as u64;
    let birth = encode::payload(
        t0,
        0,
        &[
            metric(Some("Energy/Delivered"), 1, 8, Scalar::Long(1_000)),
            metric(Some("Power"), 2, 9, Scalar::Float(7.5)),
            metric(Some("Temperature"), 3, 9, Scalar::Float(31.0)),
        ],
    );
    let data = encode::payload(t0 + 60_000, 1, &[metric(None, 1, 8, Scalar::Long(1_500))]);
    let port = broker.port;
    let (ready, subscribed) = tokio::sync::oneshot::channel();
    let publisher = tokio::spawn(async move {
        subscribed.await.expect("the source subscribed");
        publish_all(
            port,
            "pub-sparkplug",
            vec![
                (
                    "spBv1.0/park/DDATA/edge1/c1".into(),
                    vec![0x12, 0xFF, 0xFF, 0x03],
                ),
                ("spBv1.0/park/DDATA/edge1/c9".into(), data.clone()),
                ("spBv1.0/park/DDATA/edge1/c0".into(), data.clone()),
                (
                    "spBv1.0/park/DDEATH/edge1/c0".into(),
                    encode::payload(t0, 0, &[]),
                ),
                ("spBv1.0/park/DBIRTH/edge1/c0".into(), birth),
                ("spBv1.0/park/DDATA/edge1/c0".into(), data),
            ],
            QoS::AtLeastOnce,
        )
        .await;
    });
    let (readings, metrics) =
        collect_with(&cfg, |r| r.len() >= 3, Duration::from_secs(20), Some(ready)).await;
    publisher.await.unwrap();
    let got: Vec<(&str, &str, f64, &str, i64)> = readings
        .iter()
        .map(|r| {
            (
                r.meter.as_str(),
                r.channel.as_str(),
                r.amount,
                r.unit.symbol,
                r.ts_ms,
            )
        })
        .collect();
    let t0 = t0 as i64;
    assert_eq!(
        got,
        vec![
            ("c0", "delivered", 1_000.0, "Wh", t0),
            ("c0", "power", 7.5, "kW", t0),
            ("c0", "delivered", 1_500.0, "Wh", t0 + 60_000),
        ]
    );
    let rejected = |r: &str| {
        metrics
            .component(ecogate::sources::mqtt::metrics::MqttMetrics::register)
            .rejected
            .with_label_values(&[r])
            .get()
    };
    assert_eq!(
        (
            rejected("malformed"),
            rejected("unknown_meter"),
            rejected("unknown_alias")
        ),
        (1, 1, 1)
    );
    // Birth, death and data.
    assert_eq!(
        metrics
            .component(ecogate::sources::mqtt::metrics::MqttMetrics::register)
            .messages
            .with_label_values(&["accepted"])
            .get(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_counted_acknowledged_and_forgotten() {
    let broker = Mosquitto::start();
    let subs = "[[mqtt.subscriptions]]\ntopic = \"park/{meter}/json\"\ndecoder = \"json\"\nfields = { delivered = \"/wh\" }\nunits = { delivered = \"Wh\" }\n";
    let cfg = config(broker.port, "ecogate-hostile", subs, 2);
    let port = broker.port;
    // Broker-side filter is park/+/json, so random topics must match it to reach us.
    let mut msgs: Vec<(String, Vec<u8>)> = vec![
        ("park/c0/json".into(), b"{not json".to_vec()),
        ("park/c0/json".into(), br#"{"wh":"abc"}"#.to_vec()),
        ("park/c0/json".into(), br#"{"other":1}"#.to_vec()),
        ("park/c0/json".into(), br#"{"wh":1e999}"#.to_vec()),
        ("park/c0/json".into(), vec![b' '; 10_000]),
        ("park/c0/json".into(), br#"{"wh":1000}"#.to_vec()),
    ];
    let n_random = 100_000;
    for i in 0..n_random {
        msgs.push((
            format!("park/x{i:x}{}/json", i * 7919),
            br#"{"wh":1}"#.to_vec(),
        ));
    }
    msgs.push(("park/c1/json".into(), br#"{"wh":5}"#.to_vec()));
    let before = rss_kb();
    let (ready, subscribed) = tokio::sync::oneshot::channel();
    let publisher = tokio::spawn(async move {
        subscribed.await.expect("the source subscribed");
        publish_all(port, "pub-hostile", msgs, QoS::AtLeastOnce).await;
    });
    let (readings, metrics) = collect_with(
        &cfg,
        |r| r.iter().any(|x| x.meter == "c1"),
        Duration::from_secs(60),
        Some(ready),
    )
    .await;
    publisher.await.unwrap();
    let after = rss_kb();
    let rej = |r: &str| {
        metrics
            .component(ecogate::sources::mqtt::metrics::MqttMetrics::register)
            .rejected
            .with_label_values(&[r])
            .get()
    };
    assert_eq!(rej("wrong_type"), 1);
    assert_eq!(rej("missing_field"), 1);
    // `{not json` is malformed; serde_json also refuses 1e999 (out of range) as malformed.
    assert_eq!(rej("not_finite") + rej("malformed"), 2);
    assert_eq!(rej("oversized"), 1);
    assert_eq!(rej("unknown_meter"), n_random as u64);
    assert_eq!(readings.iter().filter(|r| r.meter == "c0").count(), 1);
    // Memory: 100,000 distinct topics leave nothing behind (the test process holds both sides).
    eprintln!("rss before {before} kB, after {after} kB");
    assert!(
        after < before + 30_000,
        "RSS grew from {before} kB to {after} kB"
    );
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    let sh = |cmd: &str| {
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=ecogate-test-ca");
    sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1");
    sh("printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf");
    let tls_port = mosquitto::free_port();
    let broker = Mosquitto::start_with(&format!(
        "listener {tls_port} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n",
        d.display()
    ));
    let subs = format!(
        "[mqtt.tls]\nca_file = \"{}/ca.pem\"\n[[mqtt.subscriptions]]\ntopic = \"tls/{{meter}}\"\ndecoder = \"number\"\nchannel = \"power\"\n",
        d.display()
    );
    let cfg = config(tls_port, "ecogate-tls", &subs, 1);
    let plain = broker.port;
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        publish_all(
            plain,
            "pub-tls",
            vec![("tls/c0".into(), b"3.25".to_vec())],
            QoS::AtLeastOnce,
        )
        .await;
    });
    let (readings, metrics) = collect(&cfg, |r| !r.is_empty(), Duration::from_secs(20)).await;
    publisher.await.unwrap();
    assert_eq!(
        readings.len(),
        1,
        "nothing arrived over TLS (connection failures: {})",
        metrics
            .component(ecogate::sources::mqtt::metrics::MqttMetrics::register)
            .reconnects
            .get()
    );
    assert_eq!(readings[0].amount, 3.25);
}

/// What `sources/mqtt/puback.rs` relies on in rumqttc's insides, checked against a real broker:
/// an upgrade that changes any of it fails here instead of silently mis-pacing reads or
/// mis-ordering acknowledgements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_behaves_as_the_acknowledgement_batching_expects() {
    use ecogate::sources::mqtt::puback::{READ_BATCH, RUMQTTC_VERSION};
    // The locked version is the one the batching was written against.
    let lock = std::fs::read_to_string("Cargo.lock").unwrap();
    let locked = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"rumqttc\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string());
    assert_eq!(locked.as_deref(), Some(RUMQTTC_VERSION));

    let broker = Mosquitto::start();
    let mut o = MqttOptions::new("puback-probe", "127.0.0.1", broker.port);
    o.set_manual_acks(true);
    let (sub, mut ev) = AsyncClient::new(o, 100);
    sub.subscribe("probe/#", QoS::AtLeastOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = ev.poll().await.unwrap() {
            break;
        }
    }
    // 30 small QoS 0 messages wait in the socket while the subscriber does not poll.
    let (publisher, mut pev) = AsyncClient::new(
        MqttOptions::new("puback-pub", "127.0.0.1", broker.port),
        100,
    );
    for i in 0..30 {
        publisher
            .publish("probe/a", QoS::AtMostOnce, false, format!("{i}"))
            .await
            .unwrap();
    }
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        loop {
            match pev.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Publish(_))) => {
                    let _ = sent_tx.send(());
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    for _ in 0..30 {
        sent_rx.recv().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // One socket read decodes READ_BATCH packets: the first is handed out, the rest wait in
    // `state.events`; a read that gave fewer left nothing in the socket.
    match ev.poll().await.unwrap() {
        Event::Incoming(Packet::Publish(_)) => {}
        other => panic!("expected a publish, got {other:?}"),
    }
    assert_eq!(ev.state.events.len(), READ_BATCH - 1);
    while !ev.state.events.is_empty() {
        ev.poll().await.unwrap();
    }
    // An acknowledgement sent through the client is reported as written (`Outgoing::PubAck`
    // with its packet id) while `network` is there to write the rest of a run behind it.
    publisher
        .publish("probe/b", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    let p = loop {
        if let Event::Incoming(Packet::Publish(p)) = ev.poll().await.unwrap() {
            if p.qos == QoS::AtLeastOnce {
                break p;
            }
        }
    };
    sub.ack(&p).await.unwrap();
    let written = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Outgoing(rumqttc::Outgoing::PubAck(pkid)) = ev.poll().await.unwrap() {
                return pkid;
            }
        }
    })
    .await
    .expect("rumqttc reports the PUBACK it wrote");
    assert_eq!(written, p.pkid);
    assert!(ev.network.is_some());
}

/// A QoS 1 message above `max_packet_kib` made rumqttc drop the connection; the broker sent it
/// first again on every reconnect, and nothing queued behind it ever arrived. Now it is read
/// once, refused as `oversized` and acknowledged, and the messages behind it flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_never_blocks_the_ones_behind_it() {
    let broker = Mosquitto::start();
    let port = broker.port;
    let subs = "max_packet_kib = 64\n[[mqtt.subscriptions]]\ntopic = \"park/{meter}/json\"\ndecoder = \"json\"\nfields = { delivered = \"/wh\" }\nunits = { delivered = \"Wh\" }\n";
    let cfg = config(port, "ecogate-oversized", subs, 1);
    // A first run makes the persistent session and its subscription, then stops.
    let _ = collect(&cfg, |_| false, Duration::from_millis(1500)).await;
    // While ecogate is away: 1 good message, one of 200 KiB (above 64 KiB), 20 good ones.
    let mut msgs = vec![("park/c0/json".to_string(), br#"{"wh":1000}"#.to_vec())];
    msgs.push((
        "park/c0/json".into(),
        format!("{{\"wh\":1,\"pad\":\"{}\"}}", "x".repeat(200 * 1024)).into_bytes(),
    ));
    for k in 1..=20 {
        msgs.push((
            "park/c0/json".into(),
            format!("{{\"wh\":{}}}", 1000 + k).into_bytes(),
        ));
    }
    publish_all(port, "pub-oversized", msgs, QoS::AtLeastOnce).await;
    let (readings, metrics) = collect(
        &cfg,
        |r| r.iter().any(|x| x.amount == 1020.0),
        Duration::from_secs(30),
    )
    .await;
    let m = metrics.component(ecogate::sources::mqtt::metrics::MqttMetrics::register);
    // Every good message arrives (the first may come twice: read before the connection
    // dropped, and redelivered; the counters add nothing for a repeat).
    let mut seen: Vec<f64> = readings.iter().map(|r| r.amount).collect();
    seen.dedup();
    assert_eq!(seen, (1000..=1020).map(f64::from).collect::<Vec<_>>());
    assert_eq!(m.rejected.with_label_values(&["oversized"]).get(), 1);
    // The oversized message was acknowledged: nothing comes back to the next session.
    let (again, _) = collect(&cfg, |r| !r.is_empty(), Duration::from_secs(3)).await;
    let again: Vec<f64> = again.iter().map(|r| r.amount).collect();
    assert!(again.is_empty(), "{again:?}");
}

/// Sparkplug B bytes ecogate did not make (Eclipse Tahu's encoder as packaged in PyPI's
/// mqtt-spb-wrapper 2.1.2; tests/data/sparkplug/README.md) decode to the values they were
/// written with, by name in the BIRTH and by alias in the DATA.
#[test]
fn sparkplug_payloads_from_an_independent_encoder_decode() {
    use ecogate::sources::mqtt::sparkplug::{decode, Aliases, Kind};
    use ecogate::units::Unit;
    let fields: Vec<(String, String, Option<Unit>)> =
        [("e", "Energy/Import"), ("p", "Power"), ("n", "Sessions")]
            .iter()
            .map(|(c, m)| (c.to_string(), m.to_string(), None))
            .collect();
    let unit_of = |c: &str| match c {
        "e" => Unit::parse("kWh"),
        "p" => Unit::parse("kW"),
        _ => Unit::parse("session"),
    };
    let read = |file: &str| std::fs::read(format!("tests/data/sparkplug/{file}")).unwrap();
    let mut aliases = Aliases::default();
    let values = |readings: Vec<Reading>| -> Vec<(String, f64, i64)> {
        let mut v: Vec<_> = readings
            .into_iter()
            .map(|r| (r.channel, r.amount, r.ts_ms))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let birth = decode(
        &fields,
        "c0",
        Kind::Birth,
        &read("dbirth.bin"),
        0,
        &mut aliases,
        unit_of,
    )
    .unwrap();
    assert_eq!(
        values(birth),
        vec![
            ("e".into(), 1234.5, 1_714_522_500_000),
            ("n".into(), 3120.0, 1_714_522_500_000),
            ("p".into(), 1500.0, 1_714_522_500_000),
        ]
    );
    let data = decode(
        &fields,
        "c0",
        Kind::Data,
        &read("ddata.bin"),
        0,
        &mut aliases,
        unit_of,
    )
    .unwrap();
    assert_eq!(
        values(data),
        vec![
            ("e".into(), 1236.25, 1_714_522_560_000),
            ("n".into(), 3121.0, 1_714_522_560_000),
            ("p".into(), 1750.5, 1_714_522_560_000),
        ]
    );
    let neg = decode(
        &fields,
        "c0",
        Kind::Data,
        &read("ddata_neg_u32.bin"),
        0,
        &mut aliases,
        unit_of,
    )
    .unwrap();
    assert_eq!(
        values(neg),
        vec![
            ("n".into(), 4_000_000_000.0, 1_714_522_620_000),
            ("p".into(), -20.0, 1_714_522_620_000),
        ]
    );
}

/// (status line, body) of a GET to the daemon's listener; empty while it is not listening.
fn get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// A publishing meter has the same health metrics as a polled one: c0 publishes and is up; c1
/// publishes a payload that does not decode and is down as `refused_payload`; c2 (expected:
/// the topic has `{meter}` and no other source reads it) never publishes and is down as
/// `silent`; 2 s later (`stale_after_s = 2`) c0 is down as `silent` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_meters_have_up_last_reading_and_the_reason_they_are_down() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let text = format!(
        "{PARK}{}[store]\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"ecogate-health\"\n\
         [[mqtt.subscriptions]]\ntopic = \"h/{{meter}}\"\ndecoder = \"json\"\nfields = {{ delivered = \"/kwh\" }}\nstale_after_s = 2\n",
        meters(3),
        dir.path().join("store.db").display(),
        broker.port
    );
    let cfg_path = dir.path().join("ecogate.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let _child = Kill(
        std::process::Command::new(env!("CARGO_BIN_EXE_ecogate"))
            .args(["run", "--config", cfg_path.to_str().unwrap()])
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !get(port, "/metrics").contains("ecogate_mqtt_subscribed 1") {
        assert!(std::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    mosquitto::publish_qos1(
        broker.port,
        "health-publisher",
        vec![
            ("h/c0".into(), b"{\"kwh\": 10}".to_vec()),
            ("h/c1".into(), b"{\"kwh\": ".to_vec()),
        ],
        Duration::from_secs(20),
        || {},
    )
    .await;
    let line = |body: &str, prefix: &str| -> Option<String> {
        body.lines()
            .find(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    let up = |m: &str| format!("ecogate_meter_up{{meter=\"{m}\",source=\"mqtt\"}}");
    let reason = |m: &str, r: &str| {
        format!("ecogate_meter_last_failure{{meter=\"{m}\",reason=\"{r}\",source=\"mqtt\"}}")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut body = get(port, "/metrics");
    while line(&body, &up("c0")).as_deref() != Some("1") {
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        body = get(port, "/metrics");
    }
    assert_eq!(line(&body, &up("c1")).as_deref(), Some("0"), "{body}");
    assert_eq!(
        line(&body, &reason("c1", "refused_payload")).as_deref(),
        Some("1")
    );
    assert_eq!(line(&body, &up("c2")).as_deref(), Some("0"), "{body}");
    assert_eq!(line(&body, &reason("c2", "silent")).as_deref(), Some("1"));
    // A delivering meter has no failure series at all (one series per failing meter).
    assert!(
        !body.contains("ecogate_meter_last_failure{meter=\"c0\""),
        "{body}"
    );
    let last = line(
        &body,
        "ecogate_meter_last_success_timestamp_seconds{meter=\"c0\",source=\"mqtt\"}",
    )
    .unwrap()
    .parse::<f64>()
    .unwrap();
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    assert!((now - last).abs() < 10.0, "last reading {last}, now {now}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let body = get(port, "/metrics");
    assert_eq!(line(&body, &up("c0")).as_deref(), Some("0"), "{body}");
    assert_eq!(line(&body, &reason("c0", "silent")).as_deref(), Some("1"));
}

/// After a restart ecogate has no aliases: alias-only DDATA is refused as `unknown_alias`, and
/// ecogate asks the node to rebirth (NCMD `Node Control/Rebirth = true` on
/// spBv1.0/park/NCMD/edge1). The test's edge node answers it as a real one does, with its
/// DBIRTH, and its next DDATA (by alias) is read: 1,000 Wh and 7.5 kW from the birth, 1,500 Wh
/// from the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparkplug_alias_only_data_gets_a_rebirth_request_and_then_reads() {
    use ecogate::sources::mqtt::sparkplug::{encode, parse, Scalar};
    let broker = Mosquitto::start();
    let subs = SPARKPLUG_SUBSCRIPTION;
    let cfg = config(broker.port, "ecogate-rebirth", subs, 1);
    let t0 = ts("2026-01-05T00:00:00Z") as u64;
    let birth = encode::payload(
        t0,
        0,
        &[
            metric(Some("Energy/Delivered"), 1, 8, Scalar::Long(1_000)),
            metric(Some("Power"), 2, 9, Scalar::Float(7.5)),
        ],
    );
    let (first, second) = (
        encode::payload(t0 + 30_000, 1, &[metric(None, 1, 8, Scalar::Long(1_200))]),
        encode::payload(t0 + 60_000, 2, &[metric(None, 1, 8, Scalar::Long(1_500))]),
    );
    let port = broker.port;
    let (ready, subscribed) = tokio::sync::oneshot::channel();
    let edge = tokio::spawn(async move {
        let mut o = MqttOptions::new("edge1", "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut ev) = AsyncClient::new(o, 100);
        client
            .subscribe("spBv1.0/park/NCMD/edge1", QoS::AtMostOnce)
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !matches!(
            tokio::time::timeout_at(deadline, ev.poll()).await,
            Ok(Ok(Event::Incoming(Packet::SubAck(_))))
        ) {}
        subscribed.await.expect("the source subscribed");
        client
            .publish(
                "spBv1.0/park/DDATA/edge1/c0",
                QoS::AtLeastOnce,
                false,
                first,
            )
            .await
            .unwrap();
        let mut acks = 0;
        let command = loop {
            match tokio::time::timeout_at(deadline, ev.poll())
                .await
                .expect("no rebirth request within 20 s")
            {
                Ok(Event::Incoming(Packet::Publish(p))) => break p,
                Ok(Event::Incoming(Packet::PubAck(_))) => acks += 1,
                Ok(_) => {}
                Err(e) => panic!("edge node: {e}"),
            }
        };
        client
            .publish(
                "spBv1.0/park/DBIRTH/edge1/c0",
                QoS::AtLeastOnce,
                false,
                birth,
            )
            .await
            .unwrap();
        client
            .publish(
                "spBv1.0/park/DDATA/edge1/c0",
                QoS::AtLeastOnce,
                false,
                second,
            )
            .await
            .unwrap();
        // Until all three are acknowledged (or the deadline).
        while acks < 3 {
            match tokio::time::timeout_at(deadline, ev.poll()).await {
                Err(_) => break,
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acks += 1,
                Ok(_) => {}
            }
        }
        command
    });
    let (readings, metrics) =
        collect_with(&cfg, |r| r.len() >= 3, Duration::from_secs(20), Some(ready)).await;
    let command = edge.await.unwrap();
    assert_eq!(command.topic, "spBv1.0/park/NCMD/edge1");
    let asked = parse(&command.payload).unwrap();
    assert_eq!(
        asked.metrics[0].name.as_deref(),
        Some("Node Control/Rebirth")
    );
    assert_eq!(asked.metrics[0].value, Some(Scalar::Bool(true)));
    let got: Vec<(&str, f64, i64)> = readings
        .iter()
        .map(|r| (r.channel.as_str(), r.amount, r.ts_ms))
        .collect();
    let t0 = t0 as i64;
    assert_eq!(
        got,
        vec![
            ("delivered", 1_000.0, t0),
            ("power", 7.5, t0),
            ("delivered", 1_500.0, t0 + 60_000)
        ]
    );
    let m = metrics.component(ecogate::sources::mqtt::metrics::MqttMetrics::register);
    assert_eq!(m.rebirths.get(), 1);
    assert_eq!(m.rejected.with_label_values(&["unknown_alias"]).get(), 1);
}
