//! The configuration file as written: serde structs that mirror the TOML one to one.
//!
//! Parsing happens in two stages (as in ripgrep's flags): this raw form only checks syntax, types
//! and unknown keys (`deny_unknown_fields`, so a typo never passes silently); `validate` then turns
//! it into the checked `Config`. Values that can be wrong for semantic reasons are `Spanned`, so
//! the error can point at the line and column.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub type S<T> = Spanned<T>;

/// The park model's sections of the file. The file's top level, which also names every
/// component's section, is assembled by the application module (`app/config.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCore {
    pub park: RawPark,
    #[serde(default)]
    pub firms: Vec<RawFirm>,
    #[serde(default)]
    pub sites: Vec<RawSite>,
    #[serde(default)]
    pub meters: Vec<RawMeter>,
    #[serde(default)]
    pub factors: RawFactors,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub accounting: RawAccounting,
    #[serde(default)]
    pub evaluation: super::evaluation::RawEvaluation,
    pub tariff: Option<super::tariff::RawTariff>,
    pub shard: Option<RawShard>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPark {
    pub name: S<String>,
    pub timezone: Option<S<String>>,
    pub grid_region: Option<S<String>>,
    pub grid_factor_year: Option<S<i32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirm {
    pub id: S<String>,
    pub name: S<String>,
    pub land_mu: Option<S<f64>>,
    pub land_m2: Option<S<f64>>,
    pub sector: Option<S<String>>,
    #[serde(default)]
    pub stats: RawStats,
    /// 标准地 commitments.
    #[serde(default)]
    pub commitments: super::evaluation::RawCommitments,
    /// Energy quotas per unit of product.
    #[serde(default)]
    pub products: Vec<super::evaluation::RawProduct>,
    /// Pins the firm to one shard instead of its id's hash (docs/scale-out.md).
    pub shard: Option<S<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStats {
    pub tax_cny: Option<S<f64>>,
    pub revenue_cny: Option<S<f64>>,
    pub value_added_cny: Option<S<f64>>,
    pub output_value_cny: Option<S<f64>>,
    pub employees: Option<S<f64>>,
    pub rd_spend_cny: Option<S<f64>>,
    pub carbon_budget_tco2: Option<S<f64>>,
    pub intensity_threshold_tco2_per_10k_cny: Option<S<f64>>,
    pub energy_intensity_threshold_tce_per_10k_cny: Option<S<f64>>,
    pub green_certificates: Option<S<f64>>,
    /// Pollutant emissions where the city scores them (t of pollutant equivalent a year).
    pub pollutant_t: Option<S<f64>>,
    /// Energy bought off the meters (coal or diesel by the tonne), tce a year.
    pub off_meter_tce: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub id: S<String>,
    pub firm: S<String>,
    pub kind: S<String>,
    pub name: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMeter {
    pub id: S<String>,
    pub site: S<String>,
    pub description: Option<S<String>>,
    #[serde(default)]
    pub channels: Vec<RawChannel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    pub id: S<String>,
    pub carrier: Option<S<String>>,
    pub kind: S<String>,
    pub unit: S<String>,
    pub rollover: Option<S<f64>>,
    pub max_rate_per_hour: Option<S<f64>>,
    pub integrate: Option<S<bool>>,
    pub unit_value_cny: Option<S<f64>>,
    /// For an integrated signed power gauge: the carrier its negative values feed (for example
    /// `grid_export` on a grid connection's import gauge). Without it negatives are refused.
    pub negative_carrier: Option<S<String>>,
    /// Declared meter replacements of a counter.
    #[serde(default)]
    pub replacements: Vec<RawReplacement>,
    /// The time-of-use band a meter's own tariff register counts (sharp, peak, flat, valley),
    /// compared in reports with the band energy ecogate computes.
    pub tariff_band: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplacement {
    /// When the new meter was installed (RFC 3339 with offset).
    pub at: S<String>,
    /// The old meter's last value, in the channel's unit, when it was read at removal.
    pub old_final: Option<S<f64>>,
    /// The new meter's value at installation, in the channel's unit.
    pub new_start: S<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFactors {
    #[serde(default)]
    pub co2: BTreeMap<String, S<RawFactor>>,
    #[serde(default)]
    pub tce: BTreeMap<String, S<RawFactor>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFactor {
    pub value: S<f64>,
    pub unit: S<String>,
    pub year: S<i32>,
    pub source: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub path: Option<S<String>>,
    pub commit_interval_ms: Option<S<u64>>,
    pub max_batch_readings: Option<S<u64>>,
    pub inbox: Option<S<bool>>,
    #[serde(default)]
    pub retention: RawRetention,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub readings_days: Option<S<u32>>,
    pub minute_days: Option<S<u32>>,
    pub quarter_hour_days: Option<S<u32>>,
    pub hour_days: Option<S<u32>>,
    pub events_days: Option<S<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccounting {
    pub windows: Option<Vec<S<String>>>,
    pub gauge_max_gap_s: Option<S<f64>>,
    pub max_future_s: Option<S<f64>>,
}

/// `[shard]`: how many instances the park's firms are split over (docs/scale-out.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShard {
    pub count: S<u32>,
}
