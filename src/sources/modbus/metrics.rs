//! The Modbus source's metric families: registered by the source itself, labelled only with
//! fixed values and configured meter ids.

use super::Health;
use prometheus::{HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct ModbusMetrics {
    pub requests: IntCounterVec,
    pub exceptions: IntCounterVec,
    pub bad_values: IntCounterVec,
    pub connects: IntCounter,
    pub disconnects: IntCounter,
    pub polls_missed: IntCounter,
    /// Request latency per meter (labels: configured meter ids).
    pub request_seconds: prometheus::HistogramVec,
}

impl ModbusMetrics {
    pub fn register(registry: &Registry) -> ModbusMetrics {
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
        for c in super::reasons::EXCEPTION_LABELS {
            modbus_exceptions.with_label_values(&[c]);
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
        for c in [
            Box::new(modbus_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(modbus_exceptions.clone()),
            Box::new(modbus_bad_values.clone()),
            Box::new(modbus_connects.clone()),
            Box::new(modbus_disconnects.clone()),
            Box::new(modbus_polls_missed.clone()),
            Box::new(modbus_request_seconds.clone()),
        ] {
            registry.register(c).expect("each metric registered once");
        }
        ModbusMetrics {
            requests: modbus_requests,
            exceptions: modbus_exceptions,
            bad_values: modbus_bad_values,
            connects: modbus_connects,
            disconnects: modbus_disconnects,
            polls_missed: modbus_polls_missed,
            request_seconds: modbus_request_seconds,
        }
    }
}

/// The Modbus meters' health in the shared terms: up when the last poll succeeded.
pub fn statuses(health: std::sync::Arc<Health>) -> crate::sources::health::Statuses {
    use std::sync::atomic::Ordering;
    std::sync::Arc::new(move |_now_ms| {
        health
            .devices
            .iter()
            .map(|(meter, h)| {
                let failed_by = h.last_failure.load(Ordering::Relaxed) as usize;
                let reason = failed_by
                    .checked_sub(1)
                    .and_then(|i| super::reasons::FAILURE_REASONS.get(i));
                crate::sources::health::MeterStatus {
                    meter: meter.clone(),
                    source: "modbus",
                    up: h.up.load(Ordering::Relaxed),
                    last_success_ms: h.last_success_ms.load(Ordering::Relaxed),
                    consecutive_failures: h.consecutive_failures.load(Ordering::Relaxed),
                    last_failure: reason,
                    detail: reason.map(|r| failure_words(r.code).to_string()),
                }
            })
            .collect()
    })
}

/// A failure reason in words, for people.
pub fn failure_words(reason: &str) -> &'static str {
    match reason {
        "timeout" => "no answer within the timeout (wrong unit id, wiring, or the meter is off)",
        "exception" => {
            "the meter answered with a Modbus exception (register or function not supported)"
        }
        "transport_error" => "the connection or serial line failed during the request",
        "bad_response" => "the answer did not decode (wrong length or a value out of range)",
        "connect_error" => "cannot connect to the gateway or open the serial port",
        _ => "failed",
    }
}

/// Modbus-only per-meter figures: request latency and polls by outcome.
pub fn health(
    registry: &Registry,
    health: std::sync::Arc<Health>,
) -> crate::metrics::http::Refresh {
    use std::sync::atomic::Ordering;
    let latency = prometheus::GaugeVec::new(
        Opts::new(
            "ecogate_meter_last_latency_seconds",
            "Latency of the last successful request.",
        ),
        &["meter"],
    )
    .expect("valid metric");
    let polls = IntCounterVec::new(
        Opts::new(
            "ecogate_meter_polls_total",
            "Polls per meter by outcome: ok, failed, and missed (a healthy meter's slot that could not be polled).",
        ),
        &["meter", "result"],
    )
    .expect("valid metric");
    for c in [
        Box::new(latency.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(polls.clone()),
    ] {
        registry.register(c).expect("registered once");
    }
    // What the counters were last raised to, per meter: the poller counts in atomics.
    let seen: std::sync::Mutex<std::collections::HashMap<String, [u64; 3]>> = Default::default();
    std::sync::Arc::new(move || {
        let mut seen = seen.lock().expect("poll counts");
        for (meter, h) in &health.devices {
            let now = [
                h.polls_ok.load(Ordering::Relaxed),
                h.polls_failed.load(Ordering::Relaxed),
                h.polls_missed.load(Ordering::Relaxed),
            ];
            let before = seen.entry(meter.clone()).or_insert([0; 3]);
            for (i, result) in ["ok", "failed", "missed"].iter().enumerate() {
                polls
                    .with_label_values(&[meter.as_str(), result])
                    .inc_by(now[i].saturating_sub(before[i]));
            }
            *before = now;
            latency
                .with_label_values(&[meter.as_str()])
                .set(h.last_latency_us.load(Ordering::Relaxed) as f64 / 1e6);
        }
    })
}

/// Ready while at least one meter answers.
pub fn readiness(health: std::sync::Arc<Health>) -> crate::metrics::http::Check {
    use std::sync::atomic::Ordering;
    crate::sources::health::readiness("modbus", "meters", move || {
        health
            .devices
            .iter()
            .map(|(m, h)| (m.clone(), h.up.load(Ordering::Relaxed)))
            .collect()
    })
}
