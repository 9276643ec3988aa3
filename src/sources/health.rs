//! Every meter's health, whichever source reads it: one set of metric families
//! (`ecogate_meter_up`, `ecogate_meter_last_success_timestamp_seconds`,
//! `ecogate_meter_consecutive_failures`, `ecogate_meter_last_failure{reason}`) that the
//! staleness and meter-down alerts and the status page read, fed by each source in its own terms:
//! a Modbus meter is up when its last poll succeeded; a meter that publishes (MQTT, Sparkplug B,
//! OCPP over MQTT) is up while a reading arrived within its subscription's `stale_after_s`.
//!
//! Label values are meter ids from the configuration and each source's fixed [`Reason`] codes,
//! never input.

use prometheus::{GaugeVec, Opts, Registry};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a meter is down (or its last attempt failed): its metric label value and its words on
/// the status page. Each source declares its own (the registry lists them).
#[derive(Debug, PartialEq, Eq)]
pub struct Reason {
    /// The `reason` label of `ecogate_meter_last_failure`: fixed text, never input.
    pub code: &'static str,
    pub en: &'static str,
    pub zh: &'static str,
}

/// One meter's health at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterStatus {
    pub meter: String,
    /// `modbus` or `mqtt`.
    pub source: &'static str,
    pub up: bool,
    /// Epoch milliseconds of the last reading (0: none since start).
    pub last_success_ms: i64,
    pub consecutive_failures: u64,
    /// Why the meter is down or its last attempt failed.
    pub last_failure: Option<&'static Reason>,
    /// The last failure in words, for the status page (no secret, no raw payload).
    pub detail: Option<String>,
}

/// Something about a source as a whole that its user must act on (not one meter's health),
/// in both languages of the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub en: String,
    pub zh: String,
}

/// A source's notices as of now (none while all is well).
pub type Notices = Arc<dyn Fn() -> Vec<Notice> + Send + Sync>;

/// A source's meters, as of `now_ms`.
pub type Statuses = Arc<dyn Fn(i64) -> Vec<MeterStatus> + Send + Sync>;

/// The shared families; registered once per registry through `Metrics::component`.
#[derive(Debug, Clone)]
pub struct MeterHealthMetrics {
    up: GaugeVec,
    last_success: GaugeVec,
    failures: GaugeVec,
    reason: GaugeVec,
    /// The reason each meter's `ecogate_meter_last_failure` series now carries: one series per
    /// failing meter, not one per meter and reason (at 50,000 meters those were 350,000 series
    /// and a 37 MB scrape).
    shown: Arc<Mutex<HashMap<(String, &'static str), &'static str>>>,
}

impl MeterHealthMetrics {
    pub fn register(registry: &Registry) -> MeterHealthMetrics {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        MeterHealthMetrics {
            up: gauge(
                "ecogate_meter_up",
                "1 while the meter delivers: its last Modbus poll succeeded, or a published reading arrived within its subscription's stale_after_s.",
                &["meter", "source"],
            ),
            last_success: gauge(
                "ecogate_meter_last_success_timestamp_seconds",
                "Unix time of the meter's last reading (0: none since ecogate started).",
                &["meter", "source"],
            ),
            failures: gauge(
                "ecogate_meter_consecutive_failures",
                "Polls failed, or payloads refused, in a row.",
                &["meter", "source"],
            ),
            reason: gauge(
                "ecogate_meter_last_failure",
                "1, labelled with the reason the meter is down or its last attempt failed (Modbus: timeout, exception, transport_error, bad_response, connect_error; publishing meters: refused_payload, silent); no series while it delivers.",
                &["meter", "source", "reason"],
            ),
            shown: Arc::default(),
        }
    }

    pub fn observe(&self, statuses: &[MeterStatus]) {
        for s in statuses {
            let labels = [s.meter.as_str(), s.source];
            self.up
                .with_label_values(&labels)
                .set(f64::from(u8::from(s.up)));
            self.last_success
                .with_label_values(&labels)
                .set(s.last_success_ms as f64 / 1000.0);
            self.failures
                .with_label_values(&labels)
                .set(s.consecutive_failures as f64);
        }
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        for s in statuses {
            let key = (s.meter.clone(), s.source);
            let before = shown.get(&key).copied();
            let now = s.last_failure.map(|r| r.code);
            if before == now {
                continue;
            }
            if let Some(old) = before {
                let _ = self
                    .reason
                    .remove_label_values(&[s.meter.as_str(), s.source, old]);
            }
            match now {
                Some(r) => {
                    self.reason
                        .with_label_values(&[s.meter.as_str(), s.source, r])
                        .set(1.0);
                    shown.insert(key, r);
                }
                None => {
                    shown.remove(&key);
                }
            }
        }
    }
}

/// A refresher that copies a source's statuses into the shared families before a scrape.
pub fn refresh(
    metrics: &crate::metrics::Metrics,
    statuses: Statuses,
) -> crate::metrics::http::Refresh {
    let m = metrics.component(MeterHealthMetrics::register);
    Arc::new(move || m.observe(&statuses(chrono::Utc::now().timestamp_millis())))
}

/// A polled source's readiness (`/readyz`): ready while at least one meter answers. One dead
/// meter is an alert (`ecogate_meter_up`), not a reason to call the gateway unready; every meter
/// silent is (a cut line, a dead gateway). `up` lists each meter with whether it answers;
/// `what` names them in the message ("DL/T 645 meters").
pub fn readiness(
    name: &'static str,
    what: &'static str,
    up: impl Fn() -> Vec<(String, bool)> + Send + Sync + 'static,
) -> crate::metrics::http::Check {
    crate::metrics::http::Check::new(name, move || {
        let meters = up();
        let total = meters.len();
        let down: Vec<&str> = meters
            .iter()
            .filter(|(_, up)| !up)
            .map(|(m, _)| m.as_str())
            .collect();
        let answer = format!("{} of {total} {what} answer", total - down.len());
        if total > 0 && down.len() == total {
            Err(format!("{answer} (no meter answers)"))
        } else if down.is_empty() {
            Ok(answer)
        } else {
            Ok(format!("{answer}; down: {}", down.join(", ")))
        }
    })
}
