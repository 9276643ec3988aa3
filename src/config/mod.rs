//! The park model (firms, sites, meters, channels, factors, the store and the accounting
//! windows) and the validation machinery every section of the configuration uses.
//!
//! This is core: it imports no source, sink, metrics or alerting. Each component validates its
//! own section with the [`Validator`] from here; the application module assembles the file. One
//! path serves `check`, `run` and `replay`: TOML text -> raw sections (syntax, types, unknown
//! keys) -> [`Config`] and each component's config (references, units, factors, ranges). Every
//! error names the file, line:column and key path. Nothing here panics on any input.

pub mod carrier;
mod channels;
pub mod error;
pub mod evaluation;
pub mod factors;
mod park;
pub mod raw;
pub mod shard;
pub mod tariff;
mod validator;
pub mod window;

use crate::units::{Dimension, Unit};
use carrier::Carrier;
use chrono_tz::Tz;
pub use error::{ConfigError, ConfigErrors, Locator};
use factors::{Factor, FactorKind};
use raw::{RawCore, RawFactor, S};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
pub use validator::{parse_toml, Validator};
pub use window::WindowKind;

/// Square metres in one mu (亩): 10,000 / 15.
pub const M2_PER_MU: f64 = 10_000.0 / 15.0;

/// A meter replacement declared in configuration: the old meter's final value (if known) and
/// the new meter's value when it was installed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replacement {
    pub at_ms: i64,
    pub old_final_micro: Option<i64>,
    pub new_start_micro: i64,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub park: Park,
    pub firms: Vec<Firm>,
    pub sites: Vec<Site>,
    pub meters: Vec<Meter>,
    pub factors: Factors,
    pub store: StoreConfig,
    pub accounting: AccountingConfig,
    pub evaluation: evaluation::EvaluationConfig,
    /// The time-of-use tariff, when configured.
    pub tariff: Option<tariff::Tariff>,
    /// Settings that work but are probably not what was meant, located like errors.
    pub warnings: Vec<String>,
    /// How the park's firms are split over instances, and which part this is.
    pub sharding: shard::Sharding,
}

#[derive(Debug, Clone)]
pub struct Park {
    pub name: String,
    pub timezone: Tz,
    pub grid_region: String,
    pub grid_factor_year: i32,
}

#[derive(Debug, Clone)]
pub struct Firm {
    pub id: String,
    pub name: String,
    pub land_mu: f64,
    pub sector: Option<String>,
    pub stats: FirmStats,
    /// A meter of one of its sites counts production: its output value comes from the counters
    /// (zero included), never from the annual statistics.
    pub has_production_counters: bool,
    pub commitments: evaluation::Commitments,
    pub products: Vec<evaluation::ProductQuota>,
    /// The instance that accounts this firm when the park is split (0 when it is not).
    pub shard: u32,
}

/// Annual statistics fed from outside the meters (tax office, statistics bureau, the firm).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FirmStats {
    pub tax_cny: Option<f64>,
    pub revenue_cny: Option<f64>,
    pub value_added_cny: Option<f64>,
    /// Annual output value; used for intensities when the firm has no production counters.
    pub output_value_cny: Option<f64>,
    pub employees: Option<f64>,
    pub rd_spend_cny: Option<f64>,
    pub carbon_budget_tco2: Option<f64>,
    pub intensity_threshold_tco2_per_10k_cny: Option<f64>,
    pub energy_intensity_threshold_tce_per_10k_cny: Option<f64>,
    /// Green electricity certificates (GEC) held for the year; 1 certificate = 1,000 kWh.
    pub green_certificates: Option<f64>,
    /// Pollutant emissions, t of pollutant equivalent a year.
    pub pollutant_t: Option<f64>,
    /// Energy bought off the meters, tce a year (added to comprehensive energy consumption).
    pub off_meter_tce: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiteKind {
    Factory,
    ChargingStation,
    HydrogenSite,
    Pv,
    Storage,
}

impl SiteKind {
    const ALL: &'static [(&'static str, SiteKind)] = &[
        ("factory", SiteKind::Factory),
        ("charging_station", SiteKind::ChargingStation),
        ("hydrogen_site", SiteKind::HydrogenSite),
        ("pv", SiteKind::Pv),
        ("storage", SiteKind::Storage),
    ];

    pub fn name(self) -> &'static str {
        SiteKind::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }
}

#[derive(Debug, Clone)]
pub struct Site {
    pub id: String,
    pub name: Option<String>,
    /// Index into `Config::firms`.
    pub firm: usize,
    pub kind: SiteKind,
}

#[derive(Debug, Clone)]
pub struct Meter {
    pub id: String,
    /// Index into `Config::sites`.
    pub site: usize,
    pub description: Option<String>,
    pub channels: Vec<Channel>,
    /// Its firm's shard (0 when the park is not split): a line or device reading it belongs to
    /// that instance.
    pub shard: u32,
}

#[derive(Debug, Clone)]
pub struct Channel {
    pub id: String,
    pub carrier: Option<Carrier>,
    /// The unit the channel is configured in; readings in any unit of the same dimension are
    /// accepted and normalised.
    pub unit: Unit,
    pub kind: ChannelKind,
    /// Output value per base unit (per piece or per kg) for production counters.
    pub unit_value_cny_per_base: Option<f64>,
    /// The band this channel's meter register counts (a DL/T 645 tariff register).
    pub tariff_band: Option<tariff::Band>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChannelKind {
    /// A cumulative register.
    Counter {
        /// The value after which the register wraps to zero, in base units.
        rollover_base: Option<f64>,
        /// Highest plausible increase per hour, in base units.
        max_rate_base_per_h: f64,
        /// Declared meter replacements, by time, in micro base units.
        replacements: Vec<Replacement>,
    },
    /// An instantaneous value; integrated over time into the carrier when `integrate` is set.
    /// `negative_carrier` takes the integral of negative values (a signed grid gauge's export);
    /// without it negative samples of an integrated gauge are refused.
    Gauge {
        integrate: bool,
        negative_carrier: Option<Carrier>,
    },
}

/// The factors in force, by key, with their provenance.
#[derive(Debug, Clone, Default)]
pub struct Factors {
    pub co2: BTreeMap<&'static str, Factor>,
    pub tce: BTreeMap<&'static str, Factor>,
}

impl Factors {
    pub fn co2_per_base(&self, key: &str) -> Option<f64> {
        self.co2.get(key).map(|f| f.per_base)
    }
    pub fn tce_per_base(&self, key: &str) -> Option<f64> {
        self.tce.get(key).map(|f| f.per_base)
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub commit_interval_ms: u64,
    pub max_batch_readings: usize,
    /// Readings a source acknowledges (MQTT QoS 1) are made durable in the inbox
    /// (`<path>.inbox`) and acknowledged before they are accounted (src/sinks/inbox.rs).
    pub inbox: bool,
    pub retention: Retention,
}

/// Days to keep each table; 0 keeps forever. Day, month and year aggregates are always kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub readings_days: u32,
    pub minute_days: u32,
    pub quarter_hour_days: u32,
    pub hour_days: u32,
    pub events_days: u32,
}

impl Config {
    /// Whether any meter of the firm's sites counts production (output value comes from it).
    pub fn firm_has_production_counters(&self, firm: usize) -> bool {
        self.firms
            .get(firm)
            .is_some_and(|f| f.has_production_counters)
    }
}

impl Retention {
    /// The oldest window start of `kind` kept when the newest data is at `ref_ms`;
    /// `i64::MIN` when windows of that kind are kept forever.
    pub fn cutoff_ms(&self, kind: WindowKind, ref_ms: i64) -> i64 {
        let days = match kind {
            WindowKind::Minute => self.minute_days,
            WindowKind::QuarterHour => self.quarter_hour_days,
            WindowKind::Hour => self.hour_days,
            WindowKind::Day | WindowKind::Month | WindowKind::Year => 0,
        };
        if days == 0 {
            i64::MIN
        } else {
            ref_ms.saturating_sub(days as i64 * 86_400_000)
        }
    }
}

#[derive(Debug, Clone)]
pub struct AccountingConfig {
    pub windows: Vec<WindowKind>,
    /// Gauges are integrated only across gaps up to this long; longer gaps are recorded events.
    pub gauge_max_gap_s: f64,
    /// Readings stamped further ahead of the clock than this are refused.
    pub max_future_s: f64,
}

impl Config {
    /// Validates a file that holds only the park model's sections (no component's): for the
    /// core's own tests and tools. The daemon reads whole files through the application module.
    pub fn parse_core(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let locator = Locator::new(text);
        let raw: RawCore = parse_toml(text, &locator).map_err(|e| ConfigErrors::single(file, e))?;
        let mut v = Validator::new(file, &locator);
        let mut config = v.core(&raw);
        config.warnings = v.finish()?;
        Ok(config)
    }

    pub fn firm_index(&self, id: &str) -> Option<usize> {
        self.firms.iter().position(|f| f.id == id)
    }
}

/// Why the store could not be opened for writing at `path`, if it could not: a folder where
/// the file should be, a file where a folder should be, or a folder that cannot be made or
/// written. Probes by creating (and removing) a small file, as the store would.
fn store_path_problem(path: &Path) -> Option<String> {
    let shown = path.display();
    if path.is_dir() {
        return Some(format!(
            "`{shown}` is a folder: give the store's file, such as {shown}/ecogate.db"
        ));
    }
    if path.is_file() {
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .err()
            .map(|e| {
                format!("`{shown}` cannot be written ({e}): check its owner and permissions")
            });
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut existing = parent;
    while !existing.exists() {
        match existing.parent() {
            Some(up) if !up.as_os_str().is_empty() => existing = up,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    if !existing.is_dir() {
        return Some(format!(
            "`{}` is a file, so the store's folder `{}` cannot be made: give another store path",
            existing.display(),
            parent.display()
        ));
    }
    let probe = existing.join(format!(".ecogate-check-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) => Some(format!(
            "the store's folder `{}` cannot be {} ({e}): check the owner and permissions of `{}`, or give another store path",
            parent.display(),
            if existing == parent { "written" } else { "made" },
            existing.display()
        )),
    }
}
