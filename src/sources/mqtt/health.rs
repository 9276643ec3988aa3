//! Health of the meters that publish: a meter is up while a reading arrived within its
//! subscription's `stale_after_s`; a refused payload from a meter is its last failure.
//!
//! Which meters are expected: every meter a subscription names, and, where a subscription's
//! topic has a `{meter}` segment, every configured meter no other live source reads. A meter
//! outside both shows up once it publishes.

use super::decode::Reject;
use crate::sources::health::{MeterStatus, Reason};

/// A meter's payloads refused in a row.
pub const REFUSED_PAYLOAD: Reason = Reason {
    code: "refused_payload",
    en: "payload refused",
    zh: "报文被拒收",
};
/// No reading within its subscription's `stale_after_s`.
pub const SILENT: Reason = Reason {
    code: "silent",
    en: "no data",
    zh: "数据中断",
};
/// Why a publishing meter is down.
pub const REASONS: &[&Reason] = &[&REFUSED_PAYLOAD, &SILENT];
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct PublishedMeter {
    /// Shown in the metrics and on the status page.
    expected: AtomicBool,
    last_success_ms: AtomicI64,
    refused_in_row: AtomicU64,
    /// Index in `Reject::ALL` plus one; 0 none.
    last_refused: AtomicU8,
    stale_after_ms: AtomicI64,
}

impl PublishedMeter {
    pub fn delivered(&self, now_ms: i64, stale_after_ms: i64) {
        self.expected.store(true, Ordering::Relaxed);
        self.last_success_ms.store(now_ms, Ordering::Relaxed);
        self.stale_after_ms.store(stale_after_ms, Ordering::Relaxed);
        self.refused_in_row.store(0, Ordering::Relaxed);
        self.last_refused.store(0, Ordering::Relaxed);
    }

    pub fn refused(&self, reason: Reject) {
        self.expected.store(true, Ordering::Relaxed);
        self.refused_in_row.fetch_add(1, Ordering::Relaxed);
        let i = Reject::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.last_refused.store(i as u8 + 1, Ordering::Relaxed);
    }
}

/// Every configured meter's entry (created up front: the message loop looks one up per
/// message without a lock).
#[derive(Debug, Default)]
pub struct PublishedHealth {
    meters: HashMap<String, Arc<PublishedMeter>, crate::util::FastHash>,
}

impl PublishedHealth {
    pub fn new(
        config: &crate::config::Config,
        mqtt: &super::config::MqttConfig,
        read_elsewhere: &[String],
    ) -> PublishedHealth {
        let wildcard_stale = mqtt
            .subscriptions
            .iter()
            .filter(|s| s.meter.is_none())
            .map(|s| s.stale_after_ms)
            .max();
        let mut meters = HashMap::default();
        for m in &config.meters {
            let named = mqtt
                .subscriptions
                .iter()
                .filter(|s| s.meter.as_deref() == Some(m.id.as_str()))
                .map(|s| s.stale_after_ms)
                .max();
            let by_wildcard = wildcard_stale.filter(|_| !read_elsewhere.contains(&m.id));
            let entry = PublishedMeter::default();
            if let Some(stale) = named.or(by_wildcard) {
                entry.expected.store(true, Ordering::Relaxed);
                entry.stale_after_ms.store(stale, Ordering::Relaxed);
            }
            meters.insert(m.id.clone(), Arc::new(entry));
        }
        PublishedHealth { meters }
    }

    pub fn get(&self, meter: &str) -> Option<&PublishedMeter> {
        self.meters.get(meter).map(|m| &**m)
    }

    pub fn statuses(&self, now_ms: i64) -> Vec<MeterStatus> {
        let mut out: Vec<MeterStatus> = self
            .meters
            .iter()
            .filter(|(_, h)| h.expected.load(Ordering::Relaxed))
            .map(|(meter, h)| status(meter, h, now_ms))
            .collect();
        out.sort_by(|a, b| a.meter.cmp(&b.meter));
        out
    }
}

fn status(meter: &str, h: &PublishedMeter, now_ms: i64) -> MeterStatus {
    let last = h.last_success_ms.load(Ordering::Relaxed);
    let stale_ms = h.stale_after_ms.load(Ordering::Relaxed);
    let up = last > 0 && now_ms - last <= stale_ms;
    let refused = h.refused_in_row.load(Ordering::Relaxed);
    let refused_by = (h.last_refused.load(Ordering::Relaxed) as usize)
        .checked_sub(1)
        .and_then(|i| Reject::ALL.get(i));
    let (last_failure, detail) = match refused_by {
        Some(r) if refused > 0 => (
            Some(&REFUSED_PAYLOAD),
            Some(format!(
                "{refused} payload(s) refused in a row, the last as {}",
                r.name()
            )),
        ),
        _ if !up => (
            Some(&SILENT),
            Some(if last == 0 {
                format!(
                    "no reading since ecogate started (down after {} s of silence)",
                    stale_ms / 1000
                )
            } else {
                format!(
                    "no reading for {} s (down after {} s)",
                    (now_ms - last) / 1000,
                    stale_ms / 1000
                )
            }),
        ),
        _ => (None, None),
    };
    MeterStatus {
        meter: meter.to_string(),
        source: "mqtt",
        up,
        last_success_ms: last,
        consecutive_failures: refused,
        last_failure,
        detail,
    }
}
