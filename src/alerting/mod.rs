//! In-daemon alerting for gateways without Prometheus: the high-emission conditions evaluated by
//! ecogate itself from its store, sent as Alertmanager-compatible webhook events with firing and
//! resolved states and no repeats.
//!
//! `rules` is pure (figures and state in, notifications out) and tested exhaustively; `run`
//! reads the figures from the store every interval and posts what `rules` decides.

pub mod rules;
pub mod webhook;

use crate::accounting::indicators::HydrogenClass;
use crate::accounting::ledger::Entity;
use crate::accounting::metric::{Metric, Sums};
use crate::accounting::window::{year_progress, WindowKind};
use crate::accounting::Accountant;
use crate::config::{Config, SiteKind};
use crate::sinks::store::Store;
use rules::{Condition, Observation, State};
use std::sync::Arc;
use std::time::Duration;

/// `[alerting]`: where events go and how often conditions are evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertingConfig {
    /// `http://host:port/path` of an Alertmanager-compatible receiver.
    pub webhook_url: String,
    pub interval_s: u64,
}

/// Reads the figures every condition needs for `now_ms` from the store.
pub fn observe(store: &Store, acct: &Accountant, config: &Config, now_ms: i64) -> Vec<Observation> {
    let mut out = Vec::new();
    let day_ago = now_ms - 86_400_000;
    let hour_ms = 3_600_000;
    // Sums over the last 24 hours, from hour windows (whole hours; the current one included).
    let last_day = |e: Entity| -> Sums {
        store
            .sums(
                acct,
                WindowKind::Hour,
                e,
                day_ago - hour_ms,
                now_ms + hour_ms,
            )
            .unwrap_or_default()
    };
    let tz = config.park.timezone;
    let (year_days, elapsed_days) = year_progress(now_ms, tz).unwrap_or((365.0, 1.0));
    let year_start = now_ms - (elapsed_days * 86_400_000.0) as i64;
    for (i, firm) in config.firms.iter().enumerate() {
        let e = Entity::Firm(i as u32);
        let day = last_day(e);
        let co2_t = (day.get(Metric::Co2Scope1Kg) + day.get(Metric::Co2Scope2LocationKg)) / 1000.0;
        let output = day.get(Metric::OutputCny);
        if let Some(threshold) = firm.stats.intensity_threshold_tco2_per_10k_cny {
            if output > 0.0 {
                out.push(Observation {
                    condition: Condition::CarbonIntensity,
                    entity: firm.id.clone(),
                    value: co2_t / (output / 10_000.0),
                    threshold,
                });
            }
        }
        if let Some(budget) = firm.stats.carbon_budget_tco2 {
            let ytd = store
                .sums(
                    acct,
                    WindowKind::Year,
                    e,
                    year_start - 86_400_000,
                    now_ms + 1,
                )
                .unwrap_or_default();
            let ytd_t =
                (ytd.get(Metric::Co2Scope1Kg) + ytd.get(Metric::Co2Scope2LocationKg)) / 1000.0;
            out.push(Observation {
                condition: Condition::BudgetAtRisk,
                entity: firm.id.clone(),
                value: ytd_t,
                threshold: budget * elapsed_days / year_days,
            });
        }
    }
    for (i, site) in config.sites.iter().enumerate() {
        if site.kind != SiteKind::HydrogenSite {
            continue;
        }
        let day = last_day(Entity::Site(i as u32));
        let kg = day.get(Metric::HydrogenProducedKg);
        if kg > 0.0 {
            let co2_kg = day.get(Metric::Co2Scope1Kg) + day.get(Metric::Co2Scope2LocationKg);
            out.push(Observation {
                condition: Condition::HydrogenAboveLowCarbon,
                entity: site.id.clone(),
                value: co2_kg / kg,
                threshold: HydrogenClass::LOW_CARBON_MAX_KGCO2_PER_KG,
            });
        }
    }
    out
}

/// Evaluates every `interval_s` until shutdown. Notifications that cannot be delivered are kept
/// and sent again at the next evaluation, so a receiver that was down still learns the state.
pub async fn run(
    config: Arc<Config>,
    alerting: AlertingConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut state = State::default();
    let mut undelivered: Vec<rules::Notification> = Vec::new();
    loop {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let path = config.store.path.clone();
        let cfg = config.clone();
        let observations = tokio::task::spawn_blocking(move || match Store::open(&path) {
            Ok(store) => observe(&store, &Accountant::new(cfg.clone()), &cfg, now_ms),
            Err(e) => {
                tracing::error!("alerting cannot read the store: {e}");
                Vec::new()
            }
        })
        .await
        .unwrap_or_default();
        undelivered.extend(state.update(&observations, now_ms));
        if !undelivered.is_empty() {
            match webhook::post(&alerting.webhook_url, &webhook::payload(&undelivered)).await {
                Ok(()) => undelivered.clear(),
                Err(e) => tracing::warn!(
                    pending = undelivered.len(),
                    "alert webhook failed, retrying next round: {e}"
                ),
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(alerting.interval_s)) => {}
        }
    }
}
