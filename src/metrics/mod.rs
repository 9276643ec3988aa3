//! Internal metrics for every pipeline stage, registered once with fixed label sets.
//!
//! Label values come only from fixed enums (reasons, event kinds), never from input, so no
//! reading can create a series. The HTTP `/metrics` endpoint and per-firm figures join here.

use crate::accounting::ledger::{Batch, EventKind, RejectReason};
pub mod accounts;
pub mod config;
pub mod http;
pub mod power;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub readings_accepted: IntCounter,
    pub readings_rejected: IntCounterVec,
    pub counter_events: IntCounterVec,
    pub store_commits: IntCounter,
    /// Commits made at once because a source could get nothing more until they were made.
    pub group_commits: IntCounter,
    pub store_commit_errors: IntCounter,
    pub store_commit_seconds: Histogram,
    /// 1 after a commit succeeded (or the store opened), 0 after one failed: what /readyz reads.
    pub store_writable: IntGauge,
    /// Per-firm figures, registered once the configuration is known.
    pub accounts: std::sync::OnceLock<accounts::AccountMetrics>,
    /// Each component's own metric families, registered by the component once per registry.
    components: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
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
        let group_commits = IntCounter::new(
            "ecogate_store_group_commits_total",
            "Commits made at once, without waiting for more readings, because a source could receive nothing more until they were made (an MQTT broker's full in-flight window).",
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
        let store_writable = IntGauge::new(
            "ecogate_store_writable",
            "1 while the embedded store takes commits (the last one succeeded), 0 after one failed.",
        )
        .expect("valid metric");
        store_writable.set(1);
        let build_info = IntGaugeVec::new(
            Opts::new(
                "ecogate_build_info",
                "Always 1; the labels say which ecogate runs, built for which target.",
            ),
            &["version", "arch", "os"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH,
                std::env::consts::OS,
            ])
            .set(1);
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
            Box::new(group_commits.clone()),
            Box::new(store_commit_errors.clone()),
            Box::new(store_commit_seconds.clone()),
            Box::new(store_writable.clone()),
            Box::new(build_info),
        ] {
            registry.register(c).expect("each metric registered once");
        }
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds and the
        // rest, read from /proc at each scrape.
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics registered once");
        Metrics {
            registry,
            readings_accepted,
            readings_rejected,
            counter_events,
            store_commits,
            group_commits,
            store_commit_errors,
            store_commit_seconds,
            store_writable,
            accounts: std::sync::OnceLock::new(),
            components: Arc::default(),
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

    /// A component's metric families: registered by `register` the first time a component of
    /// this kind asks, the same ones after. Components own their families (names, labels, help);
    /// this registry only keeps them.
    pub fn component<T: Any + Send + Sync>(&self, register: impl FnOnce(&Registry) -> T) -> Arc<T> {
        let mut map = self.components.lock().expect("metrics components");
        if let Some(found) = map.get(&TypeId::of::<T>()) {
            return found.clone().downcast::<T>().expect("keyed by its type");
        }
        let made = Arc::new(register(&self.registry));
        map.insert(TypeId::of::<T>(), made.clone());
        made
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
