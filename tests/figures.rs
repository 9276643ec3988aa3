//! One reader of stored figures: in-daemon alerting and `/metrics` read a firm's last 24 hours
//! and year to date the same way, with the same fallbacks.

mod common;

use common::*;
use ecogate::accounting::ledger::Entity;
use ecogate::alerting::rules::Condition;

/// A firm with no production counter and an annual output of 3,650,000 CNY (10,000 CNY a day)
/// whose grid import is 10,000 kWh over the last hour: 10,000 x 0.5366 = 5,366 kg = 5.366 t for
/// one day's output of 1 x 10,000 CNY: 5.366 tCO2 per 10,000 CNY, over its 1.0 threshold.
const NO_COUNTER: &str = r#"
[park]
name = "P"
grid_factor_year = 2022

[[firms]]
id = "f1"
name = "F1"
land_mu = 10

[firms.stats]
output_value_cny = 3_650_000
intensity_threshold_tco2_per_10k_cny = 1.0

[[sites]]
id = "plant"
firm = "f1"
kind = "factory"

[[meters]]
id = "grid"
site = "plant"
channels = [{ id = "v", carrier = "grid_import", kind = "counter", unit = "kWh", max_rate_per_hour = 1e9 }]
"#;

#[test]
fn a_firm_without_production_counters_fires_the_intensity_alert_and_metrics_agree() {
    let dir = tempfile::tempdir().unwrap();
    // /metrics opens the configuration's store: point it at this test's.
    let cfg = config(&format!(
        "{NO_COUNTER}\n[store]\npath = \"{}\"\n",
        store_path(&dir).display()
    ));
    let mut p = pipeline(&cfg, &store_path(&dir));
    let now = chrono::Utc::now();
    let at = |minutes_ago: i64| (now - chrono::Duration::minutes(minutes_ago)).to_rfc3339();
    p.ingest(&[reading("grid", "v", 0.0, "kWh", &at(60))])
        .unwrap();
    p.ingest(&[reading("grid", "v", 10_000.0, "kWh", &at(1))])
        .unwrap();
    let now_ms = now.timestamp_millis();
    let observations = ecogate::alerting::observe(p.store(), &cfg, now_ms);
    let intensity = observations
        .iter()
        .find(|o| o.condition == Condition::CarbonIntensity)
        .expect("an intensity observation for a firm with annual statistics");
    assert_eq!(intensity.entity, "f1");
    assert!(
        (intensity.value - 5.366).abs() < 1e-9,
        "{}",
        intensity.value
    );
    assert!(intensity.value > intensity.threshold);
    let mut state = ecogate::alerting::rules::State::default();
    let fired = state.update(&observations, now_ms);
    assert!(fired
        .iter()
        .any(|n| n.firing && n.condition == Condition::CarbonIntensity));

    // /metrics reads through the same reader: the same figure.
    let registry = prometheus::Registry::new();
    let refresh = ecogate::app::scraped::year_to_date(&registry, cfg.clone());
    drop(p); // the refresh opens the store itself
    refresh();
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("ecogate_firm_carbon_intensity_tco2_per_10k_cny{firm=\"f1\"}"))
        .unwrap_or_else(|| panic!("{text}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((value - intensity.value).abs() < 1e-12, "{value}\n{text}");
    let _ = Entity::Park;
}
