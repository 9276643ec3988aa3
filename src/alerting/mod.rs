//! In-daemon alerting for gateways without Prometheus: the high-emission conditions evaluated by
//! ecogate itself from its store, sent as Alertmanager-compatible webhook events with firing and
//! resolved states and no repeats.
//!
//! `rules` is pure (figures and state in, notifications out) and tested exhaustively; `run`
//! reads the figures from the store every interval and posts what `rules` decides.

pub mod config;
pub mod rules;
pub mod webhook;

use crate::accounting::indicators::HydrogenClass;
use crate::accounting::ledger::Entity;
use crate::config::{Config, SiteKind};
use crate::figures::Figures;
use crate::sinks::store::Store;
pub use config::AlertingConfig;
use rules::{Condition, Observation, State};
use std::sync::Arc;
use std::time::Duration;

/// Reads the figures every condition needs for `now_ms` from the store, through the same
/// reader as `/metrics` and the reports ([`crate::figures`]): the last 24 hours for intensities
/// and hydrogen, the year to date for budgets.
pub fn observe(store: &Store, config: &Config, now_ms: i64) -> Vec<Observation> {
    let figures = Figures { store, config };
    let mut out = Vec::new();
    for (i, firm) in config.firms.iter().enumerate() {
        let e = Entity::Firm(i as u32);
        if let Some(threshold) = firm.stats.intensity_threshold_tco2_per_10k_cny {
            let value = figures.last_24h(e, now_ms).ok().and_then(|span| {
                figures
                    .indicators(e, &span)
                    .carbon_intensity_tco2_per_10k_cny
            });
            if let Some(value) = value {
                out.push(Observation {
                    condition: Condition::CarbonIntensity,
                    entity: firm.id.clone(),
                    value,
                    threshold,
                });
            }
        }
        if let Some(budget) = firm.stats.carbon_budget_tco2 {
            if let Ok(span) = figures.year_to_date(e, now_ms) {
                out.push(Observation {
                    condition: Condition::BudgetAtRisk,
                    entity: firm.id.clone(),
                    value: figures.indicators(e, &span).co2_total_t,
                    threshold: budget * span.period.days / span.period.year_days,
                });
            }
        }
    }
    for (i, site) in config.sites.iter().enumerate() {
        if site.kind != SiteKind::HydrogenSite {
            continue;
        }
        let e = Entity::Site(i as u32);
        let kgco2_per_kg = figures
            .last_24h(e, now_ms)
            .ok()
            .and_then(|span| figures.indicators(e, &span).hydrogen)
            .and_then(|h| h.kgco2_per_kg);
        if let Some(value) = kgco2_per_kg {
            out.push(Observation {
                condition: Condition::HydrogenAboveLowCarbon,
                entity: site.id.clone(),
                value,
                threshold: HydrogenClass::LOW_CARBON_MAX_KGCO2_PER_KG,
            });
        }
    }
    out
}

/// How to connect to the broker alerts are published on: the options of a client whose id ends
/// in the given suffix. A source that connects to a broker offers it (the application passes it
/// on), so alerting reads no source's settings.
pub type BrokerOptions = Arc<
    dyn Fn(&str) -> Result<rumqttc::MqttOptions, Box<dyn std::error::Error + Send + Sync>>
        + Send
        + Sync,
>;

/// A publishing client with its own connection, its event loop driven by a task of its own.
fn mqtt_publisher(
    broker: &BrokerOptions,
) -> Result<rumqttc::AsyncClient, Box<dyn std::error::Error + Send + Sync>> {
    let options = broker("alerts")?;
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
    tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            match eventloop.poll().await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    if failures <= 3 {
                        tracing::warn!("alert publisher: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(crate::util::backoff_ms(
                        250.0, failures, 30_000.0,
                    )))
                    .await;
                }
            }
        }
    });
    Ok(client)
}

/// Evaluates every `interval_s` until shutdown. Notifications that cannot be delivered are kept
/// and sent again at the next evaluation, so a receiver that was down still learns the state.
pub async fn run(
    config: Arc<Config>,
    alerting: AlertingConfig,
    broker: Option<BrokerOptions>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut state = State::default();
    let mut undelivered: Vec<rules::Notification> = Vec::new();
    let mqtt = match (&alerting.mqtt_topic, &broker) {
        (Some(topic), Some(broker)) => match mqtt_publisher(broker) {
            Ok(client) => Some((client, topic.clone())),
            Err(e) => {
                tracing::error!(
                    "alert events over MQTT are off: {}",
                    crate::util::error_chain(e.as_ref())
                );
                None
            }
        },
        _ => None,
    };
    let http = match alerting.webhook_url.as_ref().map(|_| webhook::client()) {
        Some(Err(e)) => {
            tracing::error!("alert webhook is off: {}", crate::util::error_chain(&e));
            None
        }
        Some(Ok(c)) => Some(c),
        None => None,
    };
    loop {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let path = config.store.path.clone();
        let cfg = config.clone();
        let observations = tokio::task::spawn_blocking(move || match Store::open(&path) {
            Ok(store) => observe(&store, &cfg, now_ms),
            Err(e) => {
                tracing::error!("alerting cannot read the store: {e}");
                Vec::new()
            }
        })
        .await
        .unwrap_or_default();
        let fresh = state.update(&observations, now_ms);
        // MQTT events are queued by rumqttc, which keeps QoS 1 publishes until the broker has
        // them, across reconnects: each is handed over once.
        if let Some((client, topic)) = &mqtt {
            for n in &fresh {
                let body = webhook::payload(std::slice::from_ref(n));
                if let Err(e) =
                    client.try_publish(topic.clone(), rumqttc::QoS::AtLeastOnce, false, body)
                {
                    tracing::warn!("alert event not queued for MQTT: {e}");
                }
            }
        }
        // The webhook is retried next round when it fails, with everything not yet delivered.
        if let (Some(url), Some(http)) = (&alerting.webhook_url, &http) {
            undelivered.extend(fresh);
            if !undelivered.is_empty() {
                match webhook::post(http, url, &webhook::payload(&undelivered)).await {
                    Ok(()) => undelivered.clear(),
                    Err(e) => tracing::warn!(
                        pending = undelivered.len(),
                        "alert webhook failed, retrying next round: {}",
                        crate::util::error_chain(&e)
                    ),
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(alerting.interval_s)) => {}
        }
    }
}
