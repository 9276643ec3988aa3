//! The MQTT source's metric families: registered by the source itself, labelled only with
//! fixed values.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct MqttMetrics {
    pub messages: IntCounterVec,
    pub rejected: IntCounterVec,
    pub connected: prometheus::IntGauge,
    /// 1 once the broker has acknowledged ecogate's subscriptions on this connection (or kept
    /// them in its session).
    pub subscribed: prometheus::IntGauge,
    pub reconnects: IntCounter,
    /// The broker's in-flight window as learned (0 until known).
    pub inflight_window: prometheus::IntGauge,
    /// The broker's own count of messages it dropped (mosquitto's `$SYS`), -1 until heard.
    pub broker_dropped: prometheus::IntGauge,
    /// Rises of that count seen while ecogate was subscribed: what the status page warns about.
    pub broker_drops_seen: IntCounter,
    /// Jumps in meters' message sequence numbers, and the numbers skipped.
    pub sequence_gaps: IntCounter,
    pub sequence_missing: IntCounter,
    /// The latest jump, for the status page: (meter, highest before, number that came).
    pub last_gap: std::sync::Arc<std::sync::Mutex<Option<(String, u64, u64)>>>,
    /// Sparkplug B rebirth requests sent (NCMD `Node Control/Rebirth`).
    pub rebirths: IntCounter,
    /// PINGREQs written to release messages a broker held behind a window's acknowledgements.
    pub kicks: IntCounter,
}

impl MqttMetrics {
    pub fn register(registry: &Registry) -> MqttMetrics {
        let mqtt_messages = IntCounterVec::new(
            Opts::new(
                "ecogate_mqtt_messages_total",
                "MQTT messages received, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let mqtt_rejected = IntCounterVec::new(
            Opts::new(
                "ecogate_mqtt_rejected_total",
                "MQTT messages refused, by reason (acknowledged, nothing kept).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let mqtt_connected = prometheus::IntGauge::new(
            "ecogate_mqtt_connected",
            "1 while connected to the MQTT broker.",
        )
        .expect("valid metric");
        let subscribed = prometheus::IntGauge::new(
            "ecogate_mqtt_subscribed",
            "1 while the broker holds ecogate's subscriptions on the current connection (acknowledged, or kept in its session).",
        )
        .expect("valid metric");
        let mqtt_reconnects = IntCounter::new(
            "ecogate_mqtt_connection_failures_total",
            "MQTT connection failures (each followed by a back-off).",
        )
        .expect("valid metric");
        let inflight_window = prometheus::IntGauge::new(
            "ecogate_mqtt_broker_inflight_window",
            "QoS 1 messages the broker lets wait for ecogate's acknowledgement, as learned from the flow (0 until known; held between bursts until contradicted or the connection drops); below 100 a burst can overflow the broker's queue.",
        )
        .expect("valid metric");
        let broker_dropped = prometheus::IntGauge::new(
            "ecogate_mqtt_broker_dropped_messages",
            "Messages the broker reports it dropped for full queues or in-flight windows, all clients together ($SYS/broker/publish/messages/dropped; -1 until the broker has said).",
        )
        .expect("valid metric");
        broker_dropped.set(-1);
        let broker_drops_seen = IntCounter::new(
            "ecogate_mqtt_broker_drops_seen_total",
            "Rises of the broker's dropped-messages count seen while ecogate was subscribed to it: messages lost at the broker, possibly ecogate's (docs/mqtt.md names the two mosquitto settings).",
        )
        .expect("valid metric");
        let sequence_gaps = IntCounter::new(
            "ecogate_mqtt_sequence_gaps_total",
            "Jumps in a meter's message sequence number (subscriptions with `sequence`): messages lost before they reached ecogate.",
        )
        .expect("valid metric");
        let sequence_missing = IntCounter::new(
            "ecogate_mqtt_sequence_missing_messages_total",
            "Sequence numbers skipped in those jumps: messages meters sent that never reached ecogate.",
        )
        .expect("valid metric");
        let rebirths = IntCounter::new(
            "ecogate_mqtt_sparkplug_rebirth_requests_total",
            "Sparkplug B rebirth requests sent to edge nodes whose DATA used aliases no BIRTH had mapped (at most one per node every 10 s).",
        )
        .expect("valid metric");
        let kicks = IntCounter::new(
            "ecogate_mqtt_refill_pings_total",
            "PINGREQs sent right after a partial refill of the broker's in-flight window, to acknowledge at the TCP level what a broker with Nagle's algorithm holds back (docs/mqtt.md).",
        )
        .expect("valid metric");
        for r in ["accepted", "rejected", "other_shard"] {
            mqtt_messages.with_label_values(&[r]);
        }
        for r in super::decode::Reject::ALL {
            mqtt_rejected.with_label_values(&[r.name()]);
        }
        for c in [
            Box::new(mqtt_messages.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(mqtt_rejected.clone()),
            Box::new(mqtt_connected.clone()),
            Box::new(subscribed.clone()),
            Box::new(mqtt_reconnects.clone()),
            Box::new(inflight_window.clone()),
            Box::new(broker_dropped.clone()),
            Box::new(broker_drops_seen.clone()),
            Box::new(sequence_gaps.clone()),
            Box::new(sequence_missing.clone()),
            Box::new(rebirths.clone()),
            Box::new(kicks.clone()),
        ] {
            registry.register(c).expect("each metric registered once");
        }
        MqttMetrics {
            messages: mqtt_messages,
            rejected: mqtt_rejected,
            connected: mqtt_connected,
            subscribed,
            reconnects: mqtt_reconnects,
            inflight_window,
            broker_dropped,
            broker_drops_seen,
            sequence_gaps,
            sequence_missing,
            last_gap: Default::default(),
            rebirths,
            kicks,
        }
    }
}

impl MqttMetrics {
    pub fn sequence_gap(&self, meter: &str, missing: u64, after: u64, got: u64) {
        self.sequence_gaps.inc();
        self.sequence_missing.inc_by(missing);
        if let Ok(mut last) = self.last_gap.lock() {
            *last = Some((meter.to_string(), after, got));
        }
    }
}

/// Ready while connected to the broker with the subscriptions in place.
pub fn readiness(
    config: &super::config::MqttConfig,
    metrics: &crate::metrics::Metrics,
) -> crate::metrics::http::Check {
    let m = metrics.component(MqttMetrics::register);
    let broker = config
        .broker
        .as_ref()
        .map_or_else(String::new, |b| format!("{}:{}", b.host, b.port));
    crate::metrics::http::Check::new("mqtt", move || {
        match (m.connected.get(), m.subscribed.get()) {
            (1, 1) => Ok(format!("connected to {broker}, subscribed")),
            (1, _) => Err(format!("connected to {broker}, not yet subscribed")),
            _ => Err(format!("not connected to {broker}")),
        }
    })
}

/// The status page's warning while the broker drops messages or keeps a small window: what a
/// user cannot see in the figures (a dropped message never reaches ecogate) and how to fix it.
pub fn notices(metrics: &crate::metrics::Metrics) -> crate::sources::health::Notices {
    let m = metrics.component(MqttMetrics::register);
    std::sync::Arc::new(move || {
        let mut out = Vec::new();
        let dropped = m.broker_drops_seen.get();
        if dropped > 0 {
            out.push(crate::sources::health::Notice {
                en: format!(
                    "The MQTT broker reported dropping {dropped} messages since ecogate started \
                     (all its clients together): its queue or in-flight window is too small for \
                     the bursts it gets, and a dropped reading never reaches ecogate. In \
                     mosquitto.conf raise max_queued_messages (e.g. 100000) and \
                     max_inflight_messages (e.g. 1000), then restart the broker (docs/mqtt.md)."
                ),
                zh: format!(
                    "MQTT 代理(broker)报告自 ecogate 启动以来丢弃了 {dropped} 条消息(其所有客户端合计):\
                     其消息队列或在途窗口容纳不了突发流量,被丢弃的读数不会到达 ecogate。\
                     请在 mosquitto.conf 中调大 max_queued_messages(如 100000)和 \
                     max_inflight_messages(如 1000),再重启代理(见 docs/mqtt.md)。"
                ),
            });
        }
        let missing = m.sequence_missing.get();
        let last = m.last_gap.lock().ok().and_then(|g| g.clone());
        if let (true, Some((meter, after, got))) = (missing > 0, last) {
            let gaps = m.sequence_gaps.get();
            out.push(crate::sources::health::Notice {
                en: format!(
                    "{missing} messages are missing from meters' sequence numbers in {gaps} \
                     gaps since ecogate started (latest: meter {meter}, {got} after {after}): \
                     they were lost between the meters and ecogate. If the broker is mosquitto, \
                     raise max_queued_messages and max_inflight_messages (docs/mqtt.md)."
                ),
                zh: format!(
                    "自 ecogate 启动以来,表计消息序号出现 {gaps} 处跳号,共缺失 {missing} 条消息\
                     (最近一次:表计 {meter},{after} 之后收到 {got}):这些消息在表计与 ecogate 之间丢失。\
                     若代理为 mosquitto,请调大 max_queued_messages 和 max_inflight_messages(见 docs/mqtt.md)。"
                ),
            });
        }
        let window = m.inflight_window.get();
        if window > 0 && (window as u64) < super::window::SMALL_WINDOW {
            out.push(crate::sources::health::Notice {
                en: format!(
                    "The MQTT broker lets only {window} QoS 1 messages wait for ecogate's \
                     acknowledgement; a burst larger than its queue is dropped. Raise \
                     max_inflight_messages and max_queued_messages in mosquitto.conf \
                     (docs/mqtt.md)."
                ),
                zh: format!(
                    "MQTT 代理只允许 {window} 条 QoS 1 消息等待 ecogate 确认,超出其队列的突发消息会被丢弃。\
                     请在 mosquitto.conf 中调大 max_inflight_messages 和 max_queued_messages(见 docs/mqtt.md)。"
                ),
            });
        }
        out
    })
}
