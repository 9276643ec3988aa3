//! Derived figures: ratios and classes computed from additive sums, never stored.
//!
//! Because every stored figure is a sum, the results of several windows, sites or gateways can
//! be added first and the ratios derived once, which is the only correct way to combine ratios.

use super::metric::{Metric, Sums};
use crate::config::FirmStats;

/// The stretch of time a set of sums covers, for prorating annual statistics and annualising.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    /// Days the sums cover (for year-to-date: days elapsed in the year).
    pub days: f64,
    /// Days in the year the period falls in (365 or 366).
    pub year_days: f64,
    /// Whether annual holdings such as green certificates apply (year-level figures only).
    pub whole_year_holdings: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputSource {
    /// Production counters x unit value.
    Counters,
    /// The firm's configured annual output value (or revenue), prorated to the period.
    AnnualStatistics,
    None,
}

impl OutputSource {
    pub fn name(self) -> &'static str {
        match self {
            OutputSource::Counters => "production counters",
            OutputSource::AnnualStatistics => "annual statistics, prorated",
            OutputSource::None => "none",
        }
    }
}

/// Hydrogen classes of T/CAB 0078-2020 by kgCO2e per kg H2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HydrogenClass {
    /// <= 4.9: clean hydrogen (清洁氢). It is renewable hydrogen (可再生氢) only when its input
    /// energy is wholly renewable, which [`Hydrogen::renewable`] tells from the meters.
    Clean,
    /// <= 14.51
    LowCarbon,
    Conventional,
}

impl HydrogenClass {
    pub const CLEAN_MAX_KGCO2_PER_KG: f64 = 4.9;
    pub const LOW_CARBON_MAX_KGCO2_PER_KG: f64 = 14.51;

    /// Boundaries are inclusive. A relative tolerance of 1e-9 keeps a figure that is exactly on
    /// a boundary in decimal (e.g. 145.1 kg / 10 kg) from falling out through binary rounding.
    pub fn classify(kgco2_per_kg: f64) -> HydrogenClass {
        let within = |limit: f64| kgco2_per_kg <= limit * (1.0 + 1e-9);
        if within(Self::CLEAN_MAX_KGCO2_PER_KG) {
            HydrogenClass::Clean
        } else if within(Self::LOW_CARBON_MAX_KGCO2_PER_KG) {
            HydrogenClass::LowCarbon
        } else {
            HydrogenClass::Conventional
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HydrogenClass::Clean => "clean",
            HydrogenClass::LowCarbon => "low-carbon",
            HydrogenClass::Conventional => "conventional",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hydrogen {
    pub produced_kg: f64,
    pub dispensed_kg: f64,
    pub kwh_per_kg: Option<f64>,
    pub kgco2_per_kg: Option<f64>,
    pub class: Option<HydrogenClass>,
    /// Clean, and every input wholly renewable (no fuel burned, all grid electricity covered
    /// by green power or certificates, no purchased heat or steam): renewable hydrogen (可再生氢).
    pub renewable: bool,
}

impl Hydrogen {
    /// The class as reports name it: renewable hydrogen is clean hydrogen with renewable inputs.
    pub fn class_name(&self) -> &'static str {
        match self.class {
            Some(HydrogenClass::Clean) if self.renewable => "renewable",
            Some(c) => c.name(),
            None => "n/a",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Charging {
    pub delivered_kwh: f64,
    pub sessions: f64,
    pub green_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Indicators {
    pub electricity_consumed_kwh: f64,
    pub grid_import_kwh: f64,
    pub pv_self_consumed_kwh: f64,
    pub green_electricity_kwh: f64,
    pub energy_equivalent_tce: f64,
    pub energy_coal_consumption_tce: f64,
    pub co2_scope1_t: f64,
    pub co2_scope2_location_t: f64,
    pub co2_scope2_market_t: f64,
    /// Scope 1 + Scope 2 location-based: the figure intensities use.
    pub co2_total_t: f64,
    pub output_cny: Option<f64>,
    pub output_source: OutputSource,
    pub output_per_mu_cny: Option<f64>,
    pub output_per_mu_annualised_cny: Option<f64>,
    pub carbon_intensity_tco2_per_10k_cny: Option<f64>,
    pub energy_intensity_tce_per_10k_cny: Option<f64>,
    pub green_share: Option<f64>,
    pub tax_per_mu_cny: Option<f64>,
    pub value_added_per_tce_cny: Option<f64>,
    pub hydrogen: Option<Hydrogen>,
    pub charging: Option<Charging>,
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0 && numerator.is_finite()).then(|| numerator / denominator)
}

/// Land and statistics of the entity the sums belong to (a firm; `None` for a site or the park).
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub land_mu: f64,
    pub stats: &'a FirmStats,
    /// The firm meters its production: its output is what the counters say, zero included;
    /// the annual statistics stand in only for firms without production counters.
    pub has_production_counters: bool,
}

/// Derives every indicator from sums over `period`. `residual_kg_per_kwh` is the market-based
/// residual grid factor, used to net green electricity off market-based Scope 2.
pub fn derive(
    sums: &Sums,
    period: Period,
    owner: Option<Owner<'_>>,
    residual_kg_per_kwh: f64,
) -> Indicators {
    let grid = sums.get(Metric::GridImportKwh);
    let consumed = sums.get(Metric::ElectricityConsumedKwh);
    let pv_self = sums.get(Metric::PvSelfConsumedKwh).max(0.0);
    let certificates_kwh = match owner {
        Some(o) if period.whole_year_holdings => o.stats.green_certificates.unwrap_or(0.0) * 1000.0,
        _ => 0.0,
    };
    // Green electricity can only cover grid electricity actually bought.
    let green_kwh = (sums.get(Metric::GreenPowerKwh) + certificates_kwh).min(grid.max(0.0));
    let scope2_market_kg =
        sums.get(Metric::Co2Scope2MarketGrossKg) - green_kwh * residual_kg_per_kwh;
    let co2_scope1_t = sums.get(Metric::Co2Scope1Kg) / 1000.0;
    let co2_scope2_location_t = sums.get(Metric::Co2Scope2LocationKg) / 1000.0;
    let co2_total_t = co2_scope1_t + co2_scope2_location_t;
    let energy_equivalent_tce = sums.get(Metric::EnergyEquivalentKgce) / 1000.0;

    let counted_output = sums.get(Metric::OutputCny);
    let metered = owner.is_none_or(|o| o.has_production_counters);
    let (output_cny, output_source) =
        if sums.micro(Metric::OutputCny) != 0 || (metered && owner.is_some()) {
            (Some(counted_output), OutputSource::Counters)
        } else if let Some(annual) =
            owner.and_then(|o| o.stats.output_value_cny.or(o.stats.revenue_cny))
        {
            (
                Some(annual * period.days / period.year_days),
                OutputSource::AnnualStatistics,
            )
        } else {
            (None, OutputSource::None)
        };
    let land_mu = owner.map(|o| o.land_mu);
    let output_per_mu_cny = output_cny.zip(land_mu).and_then(|(o, mu)| ratio(o, mu));
    let annualise = |x: f64| ratio(x * period.year_days, period.days);
    let output_per_mu_annualised_cny = output_per_mu_cny.and_then(annualise);
    let per_10k = |x: f64| output_cny.and_then(|o| ratio(x, o / 10_000.0));

    let hydrogen_kg = sums.get(Metric::HydrogenProducedKg);
    let dispensed_kg = sums.get(Metric::HydrogenDispensedKg);
    let hydrogen = (hydrogen_kg > 0.0 || dispensed_kg > 0.0).then(|| {
        let kgco2_per_kg = ratio(co2_total_t * 1000.0, hydrogen_kg);
        Hydrogen {
            produced_kg: hydrogen_kg,
            dispensed_kg,
            kwh_per_kg: ratio(consumed, hydrogen_kg),
            kgco2_per_kg,
            class: kgco2_per_kg.map(HydrogenClass::classify),
            renewable: kgco2_per_kg.map(HydrogenClass::classify) == Some(HydrogenClass::Clean)
                && co2_scope1_t <= 0.0
                && scope2_market_kg <= 1e-6,
        }
    });
    let delivered = sums.get(Metric::ChargingDeliveredKwh);
    let charging = (delivered > 0.0).then(|| Charging {
        delivered_kwh: delivered,
        sessions: sums.get(Metric::ChargingSessions),
        green_share: ratio(pv_self + green_kwh, delivered).map(|s| s.clamp(0.0, 1.0)),
    });
    let annual_share = period.days / period.year_days;
    Indicators {
        electricity_consumed_kwh: consumed,
        grid_import_kwh: grid,
        pv_self_consumed_kwh: pv_self,
        green_electricity_kwh: green_kwh,
        energy_equivalent_tce,
        energy_coal_consumption_tce: sums.get(Metric::EnergyCoalConsumptionKgce) / 1000.0,
        co2_scope1_t,
        co2_scope2_location_t,
        co2_scope2_market_t: scope2_market_kg.max(0.0) / 1000.0,
        co2_total_t,
        output_cny,
        output_source,
        output_per_mu_cny,
        output_per_mu_annualised_cny,
        carbon_intensity_tco2_per_10k_cny: per_10k(co2_total_t),
        energy_intensity_tce_per_10k_cny: per_10k(energy_equivalent_tce),
        green_share: ratio(pv_self + green_kwh, consumed).map(|s| s.clamp(0.0, 1.0)),
        tax_per_mu_cny: owner
            .and_then(|o| o.stats.tax_cny.zip(Some(o.land_mu)))
            .and_then(|(t, mu)| ratio(t, mu)),
        value_added_per_tce_cny: owner
            .and_then(|o| o.stats.value_added_cny)
            .and_then(|va| ratio(va * annual_share, energy_equivalent_tce)),
        hydrogen,
        charging,
    }
}
