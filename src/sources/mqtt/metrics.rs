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
            "QoS 1 messages the broker lets wait for ecogate's acknowledgement, as learned from the flow (0 until known); below 100 a burst can overflow the broker's queue.",
        )
        .expect("valid metric");
        let broker_dropped = prometheus::IntGauge::new(
            "ecogate_mqtt_broker_dropped_messages",
            "Messages the broker reports it dropped for full queues or in-flight windows, all clients together ($SYS/broker/publish/messages/dropped; -1 until the broker has said).",
        )
        .expect("valid metric");
        broker_dropped.set(-1);
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
        for r in ["accepted", "rejected"] {
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
            rebirths,
            kicks,
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
