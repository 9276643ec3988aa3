//! Per-firm accounting figures as Prometheus series, for dashboards and alert rules.
//!
//! Series exist only for configured firms (created at start, labelled by firm id): no label
//! value ever comes from input. Counters grow by what each committed batch added; after a
//! restart they start from zero again, which Prometheus' `increase()` and `rate()` handle as a
//! counter reset. Configured thresholds are exported as gauges so that one alert rule serves
//! every firm.

use crate::accounting::ledger::{Batch, Entity};
use crate::accounting::metric::Metric;
use crate::config::Config;
use prometheus::{CounterVec, GaugeVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct AccountMetrics {
    firm_ids: Vec<String>,
    electricity_kwh: CounterVec,
    co2_kg: CounterVec,
    standard_coal_kgce: CounterVec,
    output_cny: CounterVec,
    hydrogen_kg: CounterVec,
    charging_kwh: CounterVec,
}

const ELECTRICITY: &[(Metric, &str)] = &[
    (Metric::GridImportKwh, "grid_import"),
    (Metric::GridExportKwh, "grid_export"),
    (Metric::PvGenerationKwh, "pv_generation"),
    (Metric::PvSelfConsumedKwh, "pv_self_consumed"),
    (Metric::GreenPowerKwh, "green_power"),
    (Metric::ElectricityConsumedKwh, "consumed"),
];
const CO2: &[(Metric, &str)] = &[
    (Metric::Co2Scope1Kg, "scope1"),
    (Metric::Co2Scope2LocationKg, "scope2_location"),
    (Metric::Co2Scope2MarketGrossKg, "scope2_market_gross"),
];
const COAL: &[(Metric, &str)] = &[
    (Metric::EnergyEquivalentKgce, "equivalent"),
    (Metric::EnergyCoalConsumptionKgce, "coal_consumption"),
];

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let c = CounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

impl AccountMetrics {
    pub fn register(registry: &Registry, config: &Config) -> AccountMetrics {
        let m = AccountMetrics {
            firm_ids: config.firms.iter().map(|f| f.id.clone()).collect(),
            electricity_kwh: counter(
                registry,
                "ecogate_firm_electricity_kwh_total",
                "Electricity by flow (grid import, export, PV generation, PV self-consumed, green power, consumed), kWh.",
                &["firm", "flow"],
            ),
            co2_kg: counter(
                registry,
                "ecogate_firm_co2_kg_total",
                "CO2 by scope, kg (market-based Scope 2 before green power is netted off).",
                &["firm", "scope"],
            ),
            standard_coal_kgce: counter(
                registry,
                "ecogate_firm_standard_coal_kgce_total",
                "Energy in kg of standard coal equivalent (GB/T 2589), by electricity valuation basis.",
                &["firm", "basis"],
            ),
            output_cny: counter(registry, "ecogate_firm_output_cny_total", "Output value from production counters, CNY.", &["firm"]),
            hydrogen_kg: counter(registry, "ecogate_firm_hydrogen_kg_total", "Hydrogen produced and dispensed, kg.", &["firm", "flow"]),
            charging_kwh: counter(registry, "ecogate_firm_charging_delivered_kwh_total", "Energy delivered to vehicles, kWh.", &["firm"]),
        };
        let land = GaugeVec::new(
            Opts::new("ecogate_firm_land_mu", "Configured land area, mu."),
            &["firm"],
        )
        .expect("valid metric");
        let threshold = GaugeVec::new(
            Opts::new(
                "ecogate_firm_carbon_intensity_threshold_tco2_per_10k_cny",
                "Configured carbon-intensity alert threshold, tCO2 per 10,000 CNY of output.",
            ),
            &["firm"],
        )
        .expect("valid metric");
        let budget = GaugeVec::new(
            Opts::new(
                "ecogate_firm_carbon_budget_tco2",
                "Configured annual carbon budget, tCO2.",
            ),
            &["firm"],
        )
        .expect("valid metric");
        for f in &config.firms {
            land.with_label_values(&[&f.id]).set(f.land_mu);
            if let Some(t) = f.stats.intensity_threshold_tco2_per_10k_cny {
                threshold.with_label_values(&[&f.id]).set(t);
            }
            if let Some(b) = f.stats.carbon_budget_tco2 {
                budget.with_label_values(&[&f.id]).set(b);
            }
            for (_, flow) in ELECTRICITY {
                m.electricity_kwh.with_label_values(&[f.id.as_str(), flow]);
            }
            for (_, scope) in CO2 {
                m.co2_kg.with_label_values(&[f.id.as_str(), scope]);
            }
            for (_, basis) in COAL {
                m.standard_coal_kgce
                    .with_label_values(&[f.id.as_str(), basis]);
            }
            m.output_cny.with_label_values(&[&f.id]);
            m.charging_kwh.with_label_values(&[&f.id]);
            for flow in ["produced", "dispensed"] {
                m.hydrogen_kg.with_label_values(&[f.id.as_str(), flow]);
            }
        }
        for g in [land, threshold, budget] {
            registry.register(Box::new(g)).expect("registered once");
        }
        m
    }

    /// Adds a committed batch's firm-level sums (from its largest window kind, which holds every
    /// delta exactly once).
    pub fn observe(&self, batch: &Batch, config: &Config) {
        let Some(window) = config.accounting.windows.last().copied() else {
            return;
        };
        for (key, sums) in &batch.aggregates {
            let Entity::Firm(i) = key.entity else {
                continue;
            };
            if key.window != window {
                continue;
            }
            let Some(firm) = self.firm_ids.get(i as usize) else {
                continue;
            };
            // Counters only go up: a negative sum (PV self-consumption in a short window where
            // export was read first) is left for the store and the reports.
            let add = |c: &CounterVec, labels: &[&str], metric: Metric| {
                let v = sums.get(metric);
                if v > 0.0 {
                    c.with_label_values(labels).inc_by(v);
                }
            };
            for (metric, flow) in ELECTRICITY {
                add(&self.electricity_kwh, &[firm, flow], *metric);
            }
            for (metric, scope) in CO2 {
                add(&self.co2_kg, &[firm, scope], *metric);
            }
            for (metric, basis) in COAL {
                add(&self.standard_coal_kgce, &[firm, basis], *metric);
            }
            add(&self.output_cny, &[firm], Metric::OutputCny);
            add(&self.charging_kwh, &[firm], Metric::ChargingDeliveredKwh);
            add(
                &self.hydrogen_kg,
                &[firm, "produced"],
                Metric::HydrogenProducedKg,
            );
            add(
                &self.hydrogen_kg,
                &[firm, "dispensed"],
                Metric::HydrogenDispensedKg,
            );
        }
    }
}
