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
    site_ids: Vec<String>,
    site_electricity_kwh: CounterVec,
    site_co2_kg: CounterVec,
    site_hydrogen_kg: CounterVec,
    site_charging_kwh: CounterVec,
    site_charging_sessions: CounterVec,
    electricity_kwh: CounterVec,
    co2_kg: CounterVec,
    standard_coal_kgce: CounterVec,
    output_cny: CounterVec,
    hydrogen_kg: CounterVec,
    charging_kwh: CounterVec,
    natural_gas_nm3: CounterVec,
    fuel_kg: CounterVec,
    heat_gj: CounterVec,
    /// The latest instantaneous power of every configured power channel, kW.
    pub power_kw: super::power::PowerGauges,
    /// Per counter channel: the highest confirmed rate over the configured `max_rate_per_hour`
    /// (1.05 = 5 % above; 0 while within it). Labels are configured ids.
    counter_over_limit_ratio: GaugeVec,
    /// Per counter channel: 1 while a reading is held (quarantined jump or held drop).
    counter_held: GaugeVec,
}

/// Fuels kept by mass, and steam, for the per-firm fuel counter.
const FUELS_KG: &[(Metric, &str)] = &[
    (Metric::DieselKg, "diesel"),
    (Metric::GasolineKg, "gasoline"),
    (Metric::LpgKg, "lpg"),
    (Metric::LngKg, "lng"),
    (Metric::CoalKg, "coal"),
    (Metric::SteamKg, "steam"),
];

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
    pub fn register(registry: &Registry, config: &std::sync::Arc<Config>) -> AccountMetrics {
        let power_kw = super::power::PowerGauges::new(config.clone());
        registry
            .register(Box::new(power_kw.clone()))
            .expect("registered once");
        let counter_over_limit_ratio = GaugeVec::new(
            Opts::new(
                "ecogate_register_over_limit_ratio",
                "Highest confirmed rate of a counter channel divided by its configured max_rate_per_hour; 0 while within it. Above 1: readings were counted in full; raise the limit.",
            ),
            &["meter", "channel"],
        )
        .expect("valid metric");
        let counter_held = GaugeVec::new(
            Opts::new(
                "ecogate_register_held",
                "1 while a counter channel holds a reading (a quarantined jump or a held drop) that the next reading decides.",
            ),
            &["meter", "channel"],
        )
        .expect("valid metric");
        for g in [&counter_over_limit_ratio, &counter_held] {
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
        }
        let m = AccountMetrics {
            counter_over_limit_ratio,
            counter_held,
            natural_gas_nm3: counter(registry, "ecogate_firm_natural_gas_nm3_total", "Natural gas, Nm3.", &["firm"]),
            fuel_kg: counter(
                registry,
                "ecogate_firm_fuel_kg_total",
                "Fuels kept by mass (diesel, gasoline, LPG, LNG, coal) and steam, kg.",
                &["firm", "fuel"],
            ),
            heat_gj: counter(registry, "ecogate_firm_heat_gj_total", "Purchased heat, GJ.", &["firm"]),
            power_kw,
            firm_ids: config.firms.iter().map(|f| f.id.clone()).collect(),
            site_ids: config.sites.iter().map(|s| s.id.clone()).collect(),
            site_electricity_kwh: counter(
                registry,
                "ecogate_site_electricity_kwh_total",
                "Electricity by flow per site, kWh.",
                &["site", "flow"],
            ),
            site_co2_kg: counter(registry, "ecogate_site_co2_kg_total", "CO2 by scope per site, kg.", &["site", "scope"]),
            site_hydrogen_kg: counter(
                registry,
                "ecogate_site_hydrogen_kg_total",
                "Hydrogen produced and dispensed per site, kg.",
                &["site", "flow"],
            ),
            site_charging_kwh: counter(
                registry,
                "ecogate_site_charging_delivered_kwh_total",
                "Energy delivered to vehicles per site, kWh.",
                &["site"],
            ),
            site_charging_sessions: counter(
                registry,
                "ecogate_site_charging_sessions_total",
                "Charging sessions per site.",
                &["site"],
            ),
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
        let energy_threshold = GaugeVec::new(
            Opts::new(
                "ecogate_firm_energy_intensity_threshold_tce_per_10k_cny",
                "Configured energy-intensity benchmark, tce per 10,000 CNY of output.",
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
            if let Some(t) = f.stats.energy_intensity_threshold_tce_per_10k_cny {
                energy_threshold.with_label_values(&[&f.id]).set(t);
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
        for site in &config.sites {
            let id = site.id.as_str();
            for (_, flow) in ELECTRICITY {
                m.site_electricity_kwh.with_label_values(&[id, flow]);
            }
            for (_, scope) in CO2 {
                m.site_co2_kg.with_label_values(&[id, scope]);
            }
            match site.kind {
                crate::config::SiteKind::HydrogenSite => {
                    for flow in ["produced", "dispensed"] {
                        m.site_hydrogen_kg.with_label_values(&[id, flow]);
                    }
                }
                crate::config::SiteKind::ChargingStation => {
                    m.site_charging_kwh.with_label_values(&[id]);
                    m.site_charging_sessions.with_label_values(&[id]);
                }
                _ => {}
            }
        }
        for g in [land, threshold, energy_threshold, budget] {
            registry.register(Box::new(g)).expect("registered once");
        }
        m
    }

    /// Copies the counter states a committed batch changed into the per-channel gauges.
    pub fn observe_counters(&self, acct: &crate::accounting::Accountant, batch: &Batch) {
        for (r, state) in &batch.states {
            let Some(limit) = acct.counter_limit_micro_per_h(*r) else {
                continue;
            };
            let (meter, channel) = acct.channel_ids(*r);
            if state.over_limit_micro_per_h > 0 && limit > 0.0 {
                self.counter_over_limit_ratio
                    .with_label_values(&[meter, channel])
                    .set(state.over_limit_micro_per_h as f64 / limit);
            }
            let held = self
                .counter_held
                .get_metric_with_label_values(&[meter, channel]);
            match (state.pending.is_some(), held) {
                (true, Ok(g)) => g.set(1.0),
                (false, Ok(g)) if g.get() != 0.0 => g.set(0.0),
                _ => {}
            }
        }
    }

    /// Adds a committed batch's firm-level sums (from its largest window kind, which holds every
    /// delta exactly once).
    pub fn observe(&self, batch: &Batch, config: &Config) {
        let Some(window) = config.accounting.windows.last().copied() else {
            return;
        };
        for (entity, sums) in &batch.totals(config, window) {
            if let Entity::Site(i) = *entity {
                if let Some(site) = self.site_ids.get(i as usize) {
                    self.observe_site(site, sums);
                }
                continue;
            }
            let Entity::Firm(i) = *entity else {
                continue;
            };
            let Some(firm) = self.firm_ids.get(i as usize) else {
                continue;
            };
            let add = |c: &CounterVec, labels: &[&str], metric: Metric| {
                add_positive(c, labels, sums, metric)
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
            add(&self.natural_gas_nm3, &[firm], Metric::NaturalGasNm3);
            add(&self.heat_gj, &[firm], Metric::HeatGj);
            for (metric, fuel) in FUELS_KG {
                add(&self.fuel_kg, &[firm, fuel], *metric);
            }
        }
        // Latest power per channel, in time order within the batch (skipped on the hot path when
        // no channel measures power).
        if self.power_kw.is_empty() {
            return;
        }
        for a in &batch.accepted {
            self.power_kw
                .set(a.channel.meter, a.channel.channel, a.base_amount);
        }
    }

    fn observe_site(&self, site: &str, sums: &crate::accounting::metric::Sums) {
        let add =
            |c: &CounterVec, labels: &[&str], metric: Metric| add_positive(c, labels, sums, metric);
        for (metric, flow) in ELECTRICITY {
            add(&self.site_electricity_kwh, &[site, flow], *metric);
        }
        for (metric, scope) in CO2 {
            add(&self.site_co2_kg, &[site, scope], *metric);
        }
        add(
            &self.site_hydrogen_kg,
            &[site, "produced"],
            Metric::HydrogenProducedKg,
        );
        add(
            &self.site_hydrogen_kg,
            &[site, "dispensed"],
            Metric::HydrogenDispensedKg,
        );
        add(
            &self.site_charging_kwh,
            &[site],
            Metric::ChargingDeliveredKwh,
        );
        add(
            &self.site_charging_sessions,
            &[site],
            Metric::ChargingSessions,
        );
    }
}

/// Counters only go up: a negative sum (PV self-consumption in a short window where export was
/// read first) is left for the store and the reports.
fn add_positive(
    c: &CounterVec,
    labels: &[&str],
    sums: &crate::accounting::metric::Sums,
    metric: Metric,
) {
    let v = sums.get(metric);
    if v > 0.0 {
        c.with_label_values(labels).inc_by(v);
    }
}
