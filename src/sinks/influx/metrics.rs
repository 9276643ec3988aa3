//! Metrics of the InfluxDB sink and its outbox (registered only when `[influx]` is configured).

use crate::sinks::outbox::{Outbox, OutboxStats};
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use std::sync::{Arc, Mutex};

/// HTTP statuses with a policy of their own; anything else is `other`. A fixed set, so a server
/// cannot create series.
pub const STATUSES: &[&str] = &[
    "204", "400", "401", "403", "404", "413", "422", "429", "500", "502", "503", "504", "other",
    "network",
];
pub const RETRY_REASONS: &[&str] = &[
    "network",
    "server_error",
    "throttled",
    "auth",
    "refusing",
    "other_status",
];

#[derive(Debug, Clone)]
pub struct InfluxMetrics {
    pub requests: IntCounterVec,
    pub retries: IntCounterVec,
    pub splits: IntCounter,
    pub lines_written: IntCounter,
    pub lines_coalesced: IntCounter,
    pub dead_letter_lines: IntCounter,
    pub auth_failing: IntGauge,
    pub refusing: IntGauge,
    pub request_seconds: Histogram,
    pub outbox_pending_bytes: IntGauge,
    pub outbox_pending_lines: IntGauge,
    pub outbox_oldest_seconds: Gauge,
    pub outbox_full: IntGauge,
    pub outbox_max_bytes: IntGauge,
    pub outbox_dropped_lines: IntCounterVec,
    pub outbox_torn_bytes: IntCounter,
    pub outbox_uncommitted_records: IntCounter,
    last: Arc<Mutex<OutboxStats>>,
}

impl InfluxMetrics {
    pub fn register(registry: &Registry) -> InfluxMetrics {
        let requests = IntCounterVec::new(
            Opts::new(
                "ecogate_influx_requests_total",
                "Write requests to InfluxDB by response status (`network`: no response).",
            ),
            &["status"],
        )
        .expect("valid metric");
        let retries = IntCounterVec::new(
            Opts::new(
                "ecogate_influx_retries_total",
                "Write requests retried, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for s in STATUSES {
            requests.with_label_values(&[s]);
        }
        for r in RETRY_REASONS {
            retries.with_label_values(&[r]);
        }
        let splits = IntCounter::new("ecogate_influx_batch_splits_total", "Batches split in two after a 400, 413 or 422, to isolate bad lines or fit the server's limit.").expect("valid metric");
        let lines_written = IntCounter::new(
            "ecogate_influx_lines_written_total",
            "Line-protocol lines InfluxDB accepted (204).",
        )
        .expect("valid metric");
        let lines_coalesced = IntCounter::new(
            "ecogate_influx_lines_coalesced_total",
            "Window lines not sent because a later commit's line for the same point was sent in the same request (merged field by field).",
        )
        .expect("valid metric");
        let dead_letter_lines = IntCounter::new(
            "ecogate_influx_dead_letter_lines_total",
            "Lines InfluxDB refused on their own (400/413/422), written to the dead-letter file.",
        )
        .expect("valid metric");
        let auth_failing = IntGauge::new("ecogate_influx_auth_failing", "1 while InfluxDB answers 401, 403 or 404 (token, permission or bucket): data is kept and retried slowly.").expect("valid metric");
        let refusing = IntGauge::new("ecogate_influx_refusing", "1 while InfluxDB refuses every line (100 in a row dead-lettered, none delivered): data is kept and retried slowly instead of dead-lettered.").expect("valid metric");
        let request_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ecogate_influx_request_seconds",
                "Time of one write request to InfluxDB.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )
        .expect("valid metric");
        let outbox_pending_bytes = IntGauge::new(
            "ecogate_outbox_pending_bytes",
            "Bytes in the outbox waiting for delivery.",
        )
        .expect("valid metric");
        let outbox_pending_lines = IntGauge::new(
            "ecogate_outbox_pending_lines",
            "Lines in the outbox waiting for delivery.",
        )
        .expect("valid metric");
        let outbox_oldest_seconds = Gauge::new(
            "ecogate_outbox_oldest_seconds",
            "Age of the oldest undelivered outbox record (0 when empty).",
        )
        .expect("valid metric");
        let outbox_full = IntGauge::new("ecogate_outbox_full", "1 while the outbox is at its size cap (with when_full = block, the pipeline is held back).").expect("valid metric");
        let outbox_max_bytes = IntGauge::new("ecogate_outbox_max_bytes", "The outbox's size cap.")
            .expect("valid metric");
        let outbox_dropped_lines = IntCounterVec::new(
            Opts::new("ecogate_outbox_dropped_lines_total", "Outbox lines lost: `full` (when_full = drop_oldest), `corrupt` (checksum mismatch found on reading)."),
            &["reason"],
        )
        .expect("valid metric");
        for r in ["full", "corrupt"] {
            outbox_dropped_lines.with_label_values(&[r]);
        }
        let outbox_torn_bytes = IntCounter::new(
            "ecogate_outbox_torn_bytes_total",
            "Bytes of torn records cut from the outbox's tail on start.",
        )
        .expect("valid metric");
        let outbox_uncommitted_records = IntCounter::new("ecogate_outbox_uncommitted_records_total", "Outbox records cut on start because the store never committed them (their readings are read again).").expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(retries.clone()),
            Box::new(splits.clone()),
            Box::new(lines_written.clone()),
            Box::new(lines_coalesced.clone()),
            Box::new(dead_letter_lines.clone()),
            Box::new(auth_failing.clone()),
            Box::new(refusing.clone()),
            Box::new(request_seconds.clone()),
            Box::new(outbox_pending_bytes.clone()),
            Box::new(outbox_pending_lines.clone()),
            Box::new(outbox_oldest_seconds.clone()),
            Box::new(outbox_full.clone()),
            Box::new(outbox_max_bytes.clone()),
            Box::new(outbox_dropped_lines.clone()),
            Box::new(outbox_torn_bytes.clone()),
            Box::new(outbox_uncommitted_records.clone()),
        ] {
            registry.register(c).expect("each metric registered once");
        }
        InfluxMetrics {
            requests,
            retries,
            splits,
            lines_written,
            lines_coalesced,
            dead_letter_lines,
            auth_failing,
            refusing,
            request_seconds,
            outbox_pending_bytes,
            outbox_pending_lines,
            outbox_oldest_seconds,
            outbox_full,
            outbox_max_bytes,
            outbox_dropped_lines,
            outbox_torn_bytes,
            outbox_uncommitted_records,
            last: Arc::new(Mutex::new(OutboxStats::default())),
        }
    }

    pub fn status(&self, status: u16) {
        let code = status.to_string();
        let label = if STATUSES.contains(&code.as_str()) {
            code.as_str()
        } else {
            "other"
        };
        self.requests.with_label_values(&[label]).inc();
    }

    /// Copies the outbox's state into the gauges and counters.
    pub fn observe_outbox(&self, outbox: &Outbox) {
        let s = outbox.stats();
        self.outbox_pending_bytes.set(s.pending_bytes as i64);
        self.outbox_pending_lines.set(s.pending_lines as i64);
        self.outbox_full.set(i64::from(s.full));
        self.outbox_max_bytes.set(outbox.config().max_bytes as i64);
        let age = s.oldest_pending_ms.map_or(0.0, |t| {
            (chrono::Utc::now().timestamp_millis() - t).max(0) as f64 / 1000.0
        });
        self.outbox_oldest_seconds.set(age);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        self.outbox_dropped_lines
            .with_label_values(&["full"])
            .inc_by(s.dropped_lines_full.saturating_sub(last.dropped_lines_full));
        self.outbox_dropped_lines
            .with_label_values(&["corrupt"])
            .inc_by(s.corrupt_lines.saturating_sub(last.corrupt_lines));
        self.outbox_torn_bytes
            .inc_by(s.torn_bytes.saturating_sub(last.torn_bytes));
        self.outbox_uncommitted_records.inc_by(
            s.uncommitted_records
                .saturating_sub(last.uncommitted_records),
        );
        *last = s;
    }
}

/// Ready while the outbox is below its size cap (at the cap, new figures wait or push the
/// oldest out, as `when_full` says).
pub fn readiness(outbox: Arc<Outbox>) -> crate::metrics::http::Check {
    crate::metrics::http::Check::new("influx", move || {
        let s = outbox.stats();
        let what = format!(
            "outbox {} of {} bytes, {} lines pending",
            s.pending_bytes,
            outbox.config().max_bytes,
            s.pending_lines
        );
        if s.full {
            Err(format!("{what}: at its cap"))
        } else {
            Ok(what)
        }
    })
}
