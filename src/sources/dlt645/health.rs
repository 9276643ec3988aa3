//! The DL/T 645 meters' health, in the shared terms (sources/health.rs), and their metrics.

use crate::sources::health::{MeterStatus, Reason, Statuses};
use prometheus::{IntCounterVec, Opts, Registry};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// Why a DL/T 645 read fails. A meter's `last_failure` holds an index here plus one.
pub const REASONS: &[Reason] = &[
    Reason {
        code: "timeout",
        en: "timeout",
        zh: "超时无应答",
    },
    Reason {
        code: "error_reply",
        en: "meter refused the read",
        zh: "电表异常应答",
    },
    Reason {
        code: "bad_response",
        en: "answer did not decode",
        zh: "应答无法解析",
    },
    Reason {
        code: "transport_error",
        en: "connection failed",
        zh: "通信中断",
    },
    Reason {
        code: "connect_error",
        en: "cannot connect",
        zh: "无法连接网关或串口",
    },
];

/// The index of `code` in [`REASONS`].
pub fn reason(code: &str) -> u8 {
    REASONS
        .iter()
        .position(|r| r.code == code)
        .map_or(0, |i| i as u8 + 1)
}

/// One meter, updated by its line's task and read at a scrape.
#[derive(Debug, Default)]
pub struct MeterHealth {
    pub up: AtomicBool,
    pub last_success_ms: AtomicI64,
    pub consecutive_failures: AtomicU64,
    pub last_failure: AtomicU8,
    /// The last failure in words (no secret: a frame's bytes, a meter's error bits).
    pub detail: Mutex<Option<String>>,
}

impl MeterHealth {
    pub fn ok(&self, now_ms: i64) {
        self.up.store(true, Ordering::Relaxed);
        self.last_success_ms.store(now_ms, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.last_failure.store(0, Ordering::Relaxed);
        *self.detail.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn failed(&self, code: &str, detail: String) {
        self.up.store(false, Ordering::Relaxed);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        self.last_failure.store(reason(code), Ordering::Relaxed);
        *self.detail.lock().unwrap_or_else(|e| e.into_inner()) = Some(detail);
    }
}

/// Every configured meter, by meter id.
#[derive(Debug, Default)]
pub struct Health {
    pub meters: BTreeMap<String, Arc<MeterHealth>>,
}

pub fn statuses(health: Arc<Health>) -> Statuses {
    Arc::new(move |_now_ms| {
        health
            .meters
            .iter()
            .map(|(meter, h)| {
                let reason = (h.last_failure.load(Ordering::Relaxed) as usize)
                    .checked_sub(1)
                    .and_then(|i| REASONS.get(i));
                MeterStatus {
                    meter: meter.clone(),
                    source: "dlt645",
                    up: h.up.load(Ordering::Relaxed),
                    last_success_ms: h.last_success_ms.load(Ordering::Relaxed),
                    consecutive_failures: h.consecutive_failures.load(Ordering::Relaxed),
                    last_failure: reason,
                    detail: h.detail.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                }
            })
            .collect()
    })
}

/// Ready while at least one meter answers.
pub fn readiness(health: Arc<Health>) -> crate::metrics::http::Check {
    crate::sources::health::readiness("dlt645", "DL/T 645 meters", move || {
        health
            .meters
            .iter()
            .map(|(m, h)| (m.clone(), h.up.load(Ordering::Relaxed)))
            .collect()
    })
}

/// The source's own families: requests by result, and bytes on a line that were no frame.
#[derive(Debug, Clone)]
pub struct Dlt645Metrics {
    pub requests: IntCounterVec,
    pub discarded: IntCounterVec,
}

impl Dlt645Metrics {
    pub fn register(registry: &Registry) -> Dlt645Metrics {
        let requests = IntCounterVec::new(
            Opts::new(
                "ecogate_dlt645_requests_total",
                "DL/T 645 read requests, by result (ok, timeout, error_reply, bad_response, transport_error).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let discarded = IntCounterVec::new(
            Opts::new(
                "ecogate_dlt645_frames_discarded_total",
                "Frames (or noise) on a DL/T 645 line that were not the awaited reply, by why: noise (no frame, a bad checksum), stale (another meter's or an earlier request's reply).",
            ),
            &["why"],
        )
        .expect("valid metric");
        for r in [
            "ok",
            "timeout",
            "error_reply",
            "bad_response",
            "transport_error",
        ] {
            requests.with_label_values(&[r]);
        }
        for w in ["noise", "stale"] {
            discarded.with_label_values(&[w]);
        }
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(discarded.clone()))
            .expect("registered once");
        Dlt645Metrics {
            requests,
            discarded,
        }
    }
}
