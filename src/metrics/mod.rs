//! Internal metrics for every pipeline stage, registered once with fixed label sets.
//!
//! Label values come only from fixed enums (reasons, event kinds), never from input, so no
//! reading can create a series. The HTTP `/metrics` endpoint and per-firm figures join here.

use crate::accounting::ledger::{Batch, EventKind, RejectReason};
pub mod accounts;
pub mod config;
pub mod http;
pub mod influx;
pub mod power;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub readings_accepted: IntCounter,
    pub readings_rejected: IntCounterVec,
    pub counter_events: IntCounterVec,
    pub store_commits: IntCounter,
    pub store_commit_errors: IntCounter,
    pub store_commit_seconds: Histogram,
    pub modbus_requests: IntCounterVec,
    pub modbus_exceptions: IntCounterVec,
    pub modbus_bad_values: IntCounterVec,
    pub modbus_connects: IntCounter,
    pub modbus_disconnects: IntCounter,
    pub modbus_polls_missed: IntCounter,
    /// Request latency per meter (labels: configured meter ids).
    pub modbus_request_seconds: prometheus::HistogramVec,
    pub mqtt_messages: IntCounterVec,
    pub mqtt_rejected: IntCounterVec,
    pub mqtt_connected: prometheus::IntGauge,
    pub mqtt_reconnects: IntCounter,
    /// Per-firm figures, registered once the configuration is known.
    pub accounts: std::sync::OnceLock<accounts::AccountMetrics>,
    /// The InfluxDB sink's figures, registered when it is configured.
    pub influx: std::sync::OnceLock<influx::InfluxMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let readings_accepted = IntCounter::new(
            "ecogate_readings_accepted_total",
            "Readings that passed validation and reached the accounting.",
        )
        .expect("valid metric");
        let readings_rejected = IntCounterVec::new(
            Opts::new(
                "ecogate_readings_rejected_total",
                "Readings refused before accounting, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let counter_events = IntCounterVec::new(
            Opts::new(
                "ecogate_register_events_total",
                "Counter events: baselines, rollovers, resets, quarantined jumps, duplicates, out-of-order readings, gauge gaps.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let store_commits = IntCounter::new(
            "ecogate_store_commits_total",
            "Batches committed to the embedded store.",
        )
        .expect("valid metric");
        let store_commit_errors = IntCounter::new(
            "ecogate_store_commit_errors_total",
            "Batch commits to the embedded store that failed (the batch is retried).",
        )
        .expect("valid metric");
        let store_commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ecogate_store_commit_seconds",
                "Time to commit one batch to the embedded store.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .expect("valid metric");
        let modbus_requests = IntCounterVec::new(
            Opts::new(
                "ecogate_modbus_requests_total",
                "Modbus read requests, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let modbus_exceptions = IntCounterVec::new(
            Opts::new(
                "ecogate_modbus_exceptions_total",
                "Modbus exception responses, by exception code.",
            ),
            &["code"],
        )
        .expect("valid metric");
        let modbus_bad_values = IntCounterVec::new(
            Opts::new(
                "ecogate_modbus_bad_values_total",
                "Decoded Modbus values refused (NaN, out of the plausible range, undecodable), by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let modbus_connects = IntCounter::new(
            "ecogate_modbus_connects_total",
            "Modbus connections opened.",
        )
        .expect("valid metric");
        let modbus_disconnects = IntCounter::new(
            "ecogate_modbus_disconnects_total",
            "Modbus connections dropped after a timeout or a broken response.",
        )
        .expect("valid metric");
        let modbus_polls_missed = IntCounter::new(
            "ecogate_modbus_polls_missed_total",
            "Scheduled Modbus polls skipped because the bus fell behind.",
        )
        .expect("valid metric");
        for r in [
            "ok",
            "timeout",
            "exception",
            "transport_error",
            "bad_response",
            "connect_error",
        ] {
            modbus_requests.with_label_values(&[r]);
        }
        for c in crate::sources::modbus::poller::EXCEPTION_LABELS {
            modbus_exceptions.with_label_values(&[c]);
        }
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
        let mqtt_reconnects = IntCounter::new(
            "ecogate_mqtt_connection_failures_total",
            "MQTT connection failures (each followed by a back-off).",
        )
        .expect("valid metric");
        for r in ["accepted", "rejected"] {
            mqtt_messages.with_label_values(&[r]);
        }
        for r in crate::sources::mqtt::decode::Reject::ALL {
            mqtt_rejected.with_label_values(&[r.name()]);
        }
        let modbus_request_seconds = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "ecogate_modbus_request_seconds",
                "Latency of successful Modbus requests, per meter.",
            )
            .buckets(vec![
                0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["meter"],
        )
        .expect("valid metric");
        for r in ["decode", "not_finite", "out_of_range"] {
            modbus_bad_values.with_label_values(&[r]);
        }
        for reason in RejectReason::ALL {
            readings_rejected.with_label_values(&[reason.name()]);
        }
        for kind in EventKind::ALL {
            counter_events.with_label_values(&[kind.name()]);
        }
        for c in [
            Box::new(readings_accepted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(readings_rejected.clone()),
            Box::new(counter_events.clone()),
            Box::new(store_commits.clone()),
            Box::new(store_commit_errors.clone()),
            Box::new(store_commit_seconds.clone()),
            Box::new(modbus_requests.clone()),
            Box::new(modbus_exceptions.clone()),
            Box::new(modbus_bad_values.clone()),
            Box::new(modbus_connects.clone()),
            Box::new(modbus_disconnects.clone()),
            Box::new(modbus_polls_missed.clone()),
            Box::new(modbus_request_seconds.clone()),
            Box::new(mqtt_messages.clone()),
            Box::new(mqtt_rejected.clone()),
            Box::new(mqtt_connected.clone()),
            Box::new(mqtt_reconnects.clone()),
        ] {
            registry.register(c).expect("each metric registered once");
        }
        Metrics {
            registry,
            readings_accepted,
            readings_rejected,
            counter_events,
            store_commits,
            store_commit_errors,
            store_commit_seconds,
            modbus_requests,
            modbus_exceptions,
            modbus_bad_values,
            modbus_connects,
            modbus_disconnects,
            modbus_polls_missed,
            modbus_request_seconds,
            mqtt_messages,
            mqtt_rejected,
            mqtt_connected,
            mqtt_reconnects,
            accounts: std::sync::OnceLock::new(),
            influx: std::sync::OnceLock::new(),
        }
    }

    /// Counts what a committed batch did.
    pub fn observe(&self, batch: &Batch) {
        self.readings_accepted.inc_by(batch.accepted.len() as u64);
        for r in &batch.rejections {
            self.readings_rejected
                .with_label_values(&[r.reason.name()])
                .inc();
        }
        for e in &batch.events {
            self.counter_events
                .with_label_values(&[e.kind.name()])
                .inc();
        }
    }

    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.readings_rejected
            .with_label_values(&[reason.name()])
            .get()
    }

    pub fn events(&self, kind: EventKind) -> u64 {
        self.counter_events.with_label_values(&[kind.name()]).get()
    }
}

/// Registers per-meter Modbus health gauges and returns the refresh that copies the poller's
/// health into them before each scrape. Meter ids come from the configuration.
pub fn modbus_health(
    registry: &Registry,
    health: std::sync::Arc<crate::sources::modbus::Health>,
) -> http::Refresh {
    use std::sync::atomic::Ordering;
    let gauge = |name: &str, help: &str| {
        let g = prometheus::GaugeVec::new(Opts::new(name, help), &["meter"]).expect("valid metric");
        registry
            .register(Box::new(g.clone()))
            .expect("registered once");
        g
    };
    let up = gauge("ecogate_meter_up", "1 if the meter's last poll succeeded.");
    let last = gauge(
        "ecogate_meter_last_success_timestamp_seconds",
        "Unix time of the meter's last successful poll (0: never).",
    );
    let failures = gauge(
        "ecogate_meter_consecutive_failures",
        "Polls failed in a row.",
    );
    let latency = gauge(
        "ecogate_meter_last_latency_seconds",
        "Latency of the last successful request.",
    );
    std::sync::Arc::new(move || {
        for (meter, h) in &health.devices {
            let labels = [meter.as_str()];
            up.with_label_values(&labels)
                .set(h.up.load(Ordering::Relaxed) as u8 as f64);
            last.with_label_values(&labels)
                .set(h.last_success_ms.load(Ordering::Relaxed) as f64 / 1000.0);
            failures
                .with_label_values(&labels)
                .set(h.consecutive_failures.load(Ordering::Relaxed) as f64);
            latency
                .with_label_values(&labels)
                .set(h.last_latency_us.load(Ordering::Relaxed) as f64 / 1e6);
        }
    })
}
