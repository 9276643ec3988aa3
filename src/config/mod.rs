//! The park model (firms, sites, meters, channels, factors, the store and the accounting
//! windows) and the validation machinery every section of the configuration uses.
//!
//! This is core: it imports no source, sink, metrics or alerting. Each component validates its
//! own section with the [`Validator`] from here; the application module assembles the file. One
//! path serves `check`, `run` and `replay`: TOML text -> raw sections (syntax, types, unknown
//! keys) -> [`Config`] and each component's config (references, units, factors, ranges). Every
//! error names the file, line:column and key path. Nothing here panics on any input.

pub mod carrier;
pub mod error;
pub mod evaluation;
pub mod factors;
pub mod raw;
pub mod window;

use crate::units::{Dimension, Unit};
use carrier::Carrier;
use chrono_tz::Tz;
pub use error::{ConfigError, ConfigErrors, Locator};
use factors::{Factor, FactorKind};
use raw::{RawCore, RawFactor, S};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
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
    /// Settings that work but are probably not what was meant, located like errors.
    pub warnings: Vec<String>,
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

/// Keys whose values are secrets: an error about one never repeats its value.
const SECRET_KEYS: &[&str] = &["password", "token"];

/// Parses TOML into `T`, locating any syntax, type or unknown-key error (file, line, key).
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    locator: &Locator<'_>,
) -> Result<T, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| ConfigError {
        line_col: e.span().map(|s| locator.line_col(&s)),
        key: String::new(),
        message: format!("not valid TOML: {}", e.message()),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "");
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        // serde repeats a wrongly typed value in its message: not for a secret.
        let secret = SECRET_KEYS
            .iter()
            .any(|k| key == *k || key.ends_with(&format!(".{k}")));
        let message = if secret {
            "must be a string in quotes (the value is not repeated here: it is a secret)"
                .to_string()
        } else {
            inner.message().to_string()
        };
        ConfigError {
            line_col: inner.span().map(|s| locator.line_col(&s)),
            key,
            message,
        }
    })
}

/// Collects located errors and warnings while the park model and every component validate
/// their sections, so that one run reports every problem of a file.
pub struct Validator<'a> {
    locator: &'a Locator<'a>,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    file: PathBuf,
    config_dir: PathBuf,
}

/// Characters allowed in ids: they become store keys, metric labels and line-protocol tags.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl<'a> Validator<'a> {
    pub fn new(file: &Path, locator: &'a Locator<'a>) -> Validator<'a> {
        Validator {
            locator,
            errors: Vec::new(),
            warnings: Vec::new(),
            file: file.to_path_buf(),
            config_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        }
    }

    /// A problem that is not at one place in the file.
    pub fn err_unlocated(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            line_col: None,
            key: key.into(),
            message: message.into(),
        });
    }

    /// Ends validation: the warnings, or every error found.
    pub fn finish(self) -> Result<Vec<String>, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(self.warnings)
        } else {
            Err(ConfigErrors {
                file: self.file,
                errors: self.errors,
            })
        }
    }

    /// A path from the configuration, taken relative to the configuration file's folder.
    pub fn relative_to_config(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.config_dir.join(p)
        }
    }

    /// A component's view of the file (its own section, other keys ignored), deserialized with
    /// locations kept; a wrongly typed or unknown key in it is recorded, located, and `None`
    /// returned.
    pub fn section<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        match parse_toml(self.locator.text(), self.locator) {
            Ok(t) => Some(t),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// A setting that works but is probably not what was meant: `check` prints it, `run` logs it.
    pub fn warn<T>(&mut self, at: &S<T>, key: impl Into<String>, message: impl Into<String>) {
        let line_col = self.locator.line_col(&at.span());
        self.warnings.push(format!(
            "{}:{}:{}: {}: {}",
            self.file.display(),
            line_col.0,
            line_col.1,
            key.into(),
            message.into()
        ));
    }

    pub fn err<T>(&mut self, at: &S<T>, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            line_col: Some(self.locator.line_col(&at.span())),
            key: key.into(),
            message: message.into(),
        });
    }

    fn check_id(&mut self, id: &S<String>, key: &str, seen: &mut HashMap<String, String>) {
        if !valid_id(id.get_ref()) {
            self.err(
                id,
                key,
                format!(
                    "id `{}` must be 1-64 characters of A-Z a-z 0-9 _ - . (ids become store keys and metric labels)",
                    id.get_ref()
                ),
            );
        }
        if let Some(first) = seen.get(id.get_ref()) {
            let msg = format!("duplicate id `{}`: already used at {first}", id.get_ref());
            self.err(id, key, msg);
        } else {
            seen.insert(id.get_ref().clone(), key.to_string());
        }
    }

    pub fn non_negative(&mut self, v: &Option<S<f64>>, key: &str) -> Option<f64> {
        let s = v.as_ref()?;
        let x = *s.get_ref();
        if !x.is_finite() || x < 0.0 {
            self.err(s, key, format!("must be a finite number >= 0, got {x}"));
            return None;
        }
        Some(x)
    }

    pub fn positive(&mut self, s: &S<f64>, key: &str) -> Option<f64> {
        let x = *s.get_ref();
        if !x.is_finite() || x <= 0.0 {
            self.err(s, key, format!("must be a finite number > 0, got {x}"));
            return None;
        }
        Some(x)
    }

    /// Validates the park model's sections.
    pub fn core(&mut self, raw: &RawCore) -> Config {
        let park = self.park(raw);
        let firms = self.firms(raw);
        let sites = self.sites(raw, &firms);
        let meters = self.meters(raw, &sites);
        let mut firms = firms;
        for m in &meters {
            let counts_production = m
                .channels
                .iter()
                .any(|c| c.carrier == Some(Carrier::Production));
            if let Some(f) = sites.get(m.site).and_then(|s| firms.get_mut(s.firm)) {
                f.has_production_counters |= counts_production;
            }
        }
        self.products(raw, &mut firms, &sites, &meters);
        let factors = self.factors(raw, &park, &meters);
        let store = self.store(raw);
        let accounting = self.accounting(raw);
        let evaluation = self.evaluation(&raw.evaluation, &store.path);
        Config {
            warnings: Vec::new(),
            file: self.file.clone(),
            park,
            firms,
            sites,
            meters,
            factors,
            store,
            accounting,
            evaluation,
        }
    }

    /// Each firm's product quotas, once the meters are known: the meter must be the firm's and
    /// count one product.
    fn products(&mut self, raw: &RawCore, firms: &mut [Firm], sites: &[Site], meters: &[Meter]) {
        for (fi, f) in raw.firms.iter().enumerate() {
            for (pi, p) in f.products.iter().enumerate() {
                let key = format!("firms[{fi}].products[{pi}]");
                let Some(mi) = meters.iter().position(|m| &m.id == p.meter.get_ref()) else {
                    self.err(
                        &p.meter,
                        format!("{key}.meter"),
                        format!("unknown meter `{}`", p.meter.get_ref()),
                    );
                    continue;
                };
                let meter = &meters[mi];
                if sites.get(meter.site).map(|s| s.firm) != Some(fi) {
                    self.err(
                        &p.meter,
                        format!("{key}.meter"),
                        "the meter is not on one of this firm's sites",
                    );
                    continue;
                }
                let production: Vec<&Channel> = meter
                    .channels
                    .iter()
                    .filter(|c| c.carrier == Some(Carrier::Production))
                    .collect();
                let [channel] = production.as_slice() else {
                    self.err(&p.meter, format!("{key}.meter"), "the meter must have exactly one production channel: its output value, divided by the unit value, is the quantity produced");
                    continue;
                };
                let Some(per) = crate::units::Unit::parse(p.per.get_ref()) else {
                    self.err(
                        &p.per,
                        format!("{key}.per"),
                        format!("unknown unit `{}`", p.per.get_ref()),
                    );
                    continue;
                };
                if per.dimension != channel.unit.dimension {
                    self.err(
                        &p.per,
                        format!("{key}.per"),
                        format!(
                            "the quota is per {}, but the counter counts in {}",
                            per.symbol, channel.unit.symbol
                        ),
                    );
                    continue;
                }
                let Some(quota) = self.positive(&p.quota_kgce, &format!("{key}.quota_kgce")) else {
                    continue;
                };
                firms[fi].products.push(evaluation::ProductQuota {
                    name: p.name.get_ref().clone(),
                    meter: mi,
                    quota_kgce_per_unit: quota,
                    unit: per.symbol.to_string(),
                    unit_in_base: per.to_base,
                    unit_value_cny_per_base: channel.unit_value_cny_per_base.unwrap_or(f64::NAN),
                    source: p.source.get_ref().clone(),
                });
            }
        }
    }

    fn park(&mut self, raw: &RawCore) -> Park {
        let p = &raw.park;
        if p.name.get_ref().trim().is_empty() {
            self.err(&p.name, "park.name", "must not be empty");
        }
        let timezone = match &p.timezone {
            None => chrono_tz::Asia::Shanghai,
            Some(tz) => tz.get_ref().parse::<Tz>().unwrap_or_else(|_| {
                self.err(
                    tz,
                    "park.timezone",
                    format!(
                        "unknown time zone `{}`: use an IANA name such as Asia/Shanghai",
                        tz.get_ref()
                    ),
                );
                chrono_tz::Asia::Shanghai
            }),
        };
        let grid_region = match &p.grid_region {
            None => "national".to_string(),
            Some(r) => {
                if !factors::GRID_REGIONS.contains(&r.get_ref().as_str()) {
                    self.err(
                        r,
                        "park.grid_region",
                        format!(
                            "unknown grid region `{}`: built-in factors exist for {}; for another region keep `national` and give [factors.co2.grid_location]",
                            r.get_ref(),
                            factors::GRID_REGIONS.join(", ")
                        ),
                    );
                }
                r.get_ref().clone()
            }
        };
        let grid_factor_year = p
            .grid_factor_year
            .as_ref()
            .map_or(factors::DEFAULT_GRID_YEAR, |y| *y.get_ref());
        Park {
            name: p.name.get_ref().clone(),
            timezone,
            grid_region,
            grid_factor_year,
        }
    }

    fn firms(&mut self, raw: &RawCore) -> Vec<Firm> {
        let mut seen = HashMap::new();
        let mut firms = Vec::new();
        for (i, f) in raw.firms.iter().enumerate() {
            let key = format!("firms[{i}]");
            self.check_id(&f.id, &format!("{key}.id"), &mut seen);
            let land_mu = match (&f.land_mu, &f.land_m2) {
                (Some(mu), None) => self.positive(mu, &format!("{key}.land_mu")),
                (None, Some(m2)) => self
                    .positive(m2, &format!("{key}.land_m2"))
                    .map(|m2| m2 / M2_PER_MU),
                (Some(mu), Some(_)) => {
                    self.err(
                        mu,
                        format!("{key}.land_mu"),
                        "give land_mu or land_m2, not both",
                    );
                    None
                }
                (None, None) => {
                    self.err(
                        &f.id,
                        format!("{key}.land_mu"),
                        "missing land area: give land_mu (mu, 亩) or land_m2",
                    );
                    None
                }
            };
            let st = &f.stats;
            let sk = format!("{key}.stats");
            let stats = FirmStats {
                tax_cny: self.non_negative(&st.tax_cny, &format!("{sk}.tax_cny")),
                revenue_cny: self.non_negative(&st.revenue_cny, &format!("{sk}.revenue_cny")),
                value_added_cny: self
                    .non_negative(&st.value_added_cny, &format!("{sk}.value_added_cny")),
                output_value_cny: self
                    .non_negative(&st.output_value_cny, &format!("{sk}.output_value_cny")),
                employees: self.non_negative(&st.employees, &format!("{sk}.employees")),
                rd_spend_cny: self.non_negative(&st.rd_spend_cny, &format!("{sk}.rd_spend_cny")),
                carbon_budget_tco2: self
                    .non_negative(&st.carbon_budget_tco2, &format!("{sk}.carbon_budget_tco2")),
                intensity_threshold_tco2_per_10k_cny: self.non_negative(
                    &st.intensity_threshold_tco2_per_10k_cny,
                    &format!("{sk}.intensity_threshold_tco2_per_10k_cny"),
                ),
                energy_intensity_threshold_tce_per_10k_cny: self.non_negative(
                    &st.energy_intensity_threshold_tce_per_10k_cny,
                    &format!("{sk}.energy_intensity_threshold_tce_per_10k_cny"),
                ),
                green_certificates: self
                    .non_negative(&st.green_certificates, &format!("{sk}.green_certificates")),
                pollutant_t: self.non_negative(&st.pollutant_t, &format!("{sk}.pollutant_t")),
                off_meter_tce: self.non_negative(&st.off_meter_tce, &format!("{sk}.off_meter_tce")),
            };
            let commitments = self.commitments(&f.commitments, &format!("{key}.commitments"));
            firms.push(Firm {
                id: f.id.get_ref().clone(),
                name: f.name.get_ref().clone(),
                land_mu: land_mu.unwrap_or(f64::NAN),
                sector: f.sector.as_ref().map(|s| s.get_ref().clone()),
                stats,
                // Set once the meters are known (`core`).
                has_production_counters: false,
                commitments,
                products: Vec::new(),
            });
        }
        firms
    }

    fn sites(&mut self, raw: &RawCore, firms: &[Firm]) -> Vec<Site> {
        let mut seen = HashMap::new();
        let mut sites = Vec::new();
        for (i, s) in raw.sites.iter().enumerate() {
            let key = format!("sites[{i}]");
            self.check_id(&s.id, &format!("{key}.id"), &mut seen);
            let firm = firms.iter().position(|f| &f.id == s.firm.get_ref());
            if firm.is_none() {
                self.err(
                    &s.firm,
                    format!("{key}.firm"),
                    format!(
                        "unknown firm `{}`: no [[firms]] has this id",
                        s.firm.get_ref()
                    ),
                );
            }
            let kind = SiteKind::ALL
                .iter()
                .find(|(n, _)| n == s.kind.get_ref())
                .map(|(_, k)| *k);
            if kind.is_none() {
                let names: Vec<_> = SiteKind::ALL.iter().map(|(n, _)| *n).collect();
                self.err(
                    &s.kind,
                    format!("{key}.kind"),
                    format!(
                        "unknown site kind `{}`: expected one of {}",
                        s.kind.get_ref(),
                        names.join(", ")
                    ),
                );
            }
            sites.push(Site {
                id: s.id.get_ref().clone(),
                name: s.name.as_ref().map(|n| n.get_ref().clone()),
                firm: firm.unwrap_or(0),
                kind: kind.unwrap_or(SiteKind::Factory),
            });
        }
        sites
    }

    fn meters(&mut self, raw: &RawCore, sites: &[Site]) -> Vec<Meter> {
        let mut seen = HashMap::new();
        let mut meters = Vec::new();
        for (i, m) in raw.meters.iter().enumerate() {
            let key = format!("meters[{i}]");
            self.check_id(&m.id, &format!("{key}.id"), &mut seen);
            let site = sites.iter().position(|s| &s.id == m.site.get_ref());
            if site.is_none() {
                self.err(
                    &m.site,
                    format!("{key}.site"),
                    format!(
                        "unknown site `{}`: no [[sites]] has this id",
                        m.site.get_ref()
                    ),
                );
            }
            if m.channels.is_empty() {
                self.err(
                    &m.id,
                    format!("{key}.channels"),
                    "a meter needs at least one channel",
                );
            }
            let mut seen_channels = HashMap::new();
            let channels = m
                .channels
                .iter()
                .enumerate()
                .filter_map(|(j, c)| {
                    let ck = format!("{key}.channels[{j}]");
                    self.check_id(&c.id, &format!("{ck}.id"), &mut seen_channels);
                    self.channel(c, &ck)
                })
                .collect();
            meters.push(Meter {
                id: m.id.get_ref().clone(),
                site: site.unwrap_or(0),
                description: m.description.as_ref().map(|d| d.get_ref().clone()),
                channels,
            });
        }
        meters
    }

    fn channel(&mut self, c: &raw::RawChannel, key: &str) -> Option<Channel> {
        let errors_before = self.errors.len();
        let carrier = match &c.carrier {
            None => None,
            Some(name) => {
                let parsed = Carrier::parse(name.get_ref());
                if parsed.is_none() {
                    let names: Vec<_> = Carrier::ALL.iter().map(|c| c.name()).collect();
                    self.err(
                        name,
                        format!("{key}.carrier"),
                        format!(
                            "unknown carrier `{}`: expected one of {}",
                            name.get_ref(),
                            names.join(", ")
                        ),
                    );
                }
                parsed
            }
        };
        let unit = Unit::parse(c.unit.get_ref());
        if unit.is_none() {
            self.err(
                &c.unit,
                format!("{key}.unit"),
                format!("unknown unit `{}`", c.unit.get_ref()),
            );
        }
        let is_counter = match c.kind.get_ref().as_str() {
            "counter" => true,
            "gauge" => false,
            other => {
                self.err(
                    &c.kind,
                    format!("{key}.kind"),
                    format!("unknown channel kind `{other}`: expected `counter` (cumulative register) or `gauge` (instantaneous value)"),
                );
                return None;
            }
        };
        let integrate = c.integrate.as_ref().map(|s| *s.get_ref()).unwrap_or(false);
        if let (Some(unit), Some(carrier)) = (unit, carrier) {
            let wanted = carrier.dimensions();
            let fits = if is_counter || !integrate {
                wanted.contains(&unit.dimension)
            } else {
                unit.dimension
                    .integrates_to()
                    .is_some_and(|d| wanted.contains(&d))
            };
            if !fits {
                let mut accepted: Vec<&str> = Vec::new();
                for d in wanted {
                    if is_counter || !integrate {
                        accepted.extend(Unit::symbols_for(*d));
                    } else {
                        for rate in [Dimension::Power, Dimension::VolumeFlow, Dimension::MassFlow] {
                            if rate.integrates_to() == Some(*d) {
                                accepted.extend(Unit::symbols_for(rate));
                            }
                        }
                    }
                }
                let what = if is_counter {
                    "a counter"
                } else {
                    "an integrated gauge"
                };
                self.err(
                    &c.unit,
                    format!("{key}.unit"),
                    format!(
                        "unit `{}` ({}) does not fit carrier `{carrier}` as {what}: use one of {}",
                        unit.symbol,
                        unit.dimension,
                        accepted.join(", ")
                    ),
                );
            }
        }
        let kind = if is_counter {
            if c.carrier.is_none() {
                self.err(
                    &c.id,
                    format!("{key}.carrier"),
                    "a counter needs a carrier: what does it count?",
                );
            }
            if let Some(i) = &c.integrate {
                self.err(
                    i,
                    format!("{key}.integrate"),
                    "only gauges are integrated; a counter already accumulates",
                );
            }
            let to_base = unit.map_or(1.0, |u| u.to_base);
            let rollover_base = c
                .rollover
                .as_ref()
                .and_then(|r| self.positive(r, &format!("{key}.rollover")))
                .map(|r| r * to_base);
            let max_rate = match &c.max_rate_per_hour {
                Some(r) => self.positive(r, &format!("{key}.max_rate_per_hour")),
                None => {
                    self.err(
                        &c.id,
                        format!("{key}.max_rate_per_hour"),
                        "a counter needs max_rate_per_hour (highest plausible increase per hour, in the channel's unit): it is how ecogate tells a meter reset or a glitch from real consumption",
                    );
                    None
                }
            };
            if let (Some(r), Some(base)) = (&c.rollover, rollover_base) {
                // The modulus is a power of ten (or of two); "largest value shown" ends in 9s.
                let shown = format!("{}", r.get_ref());
                if shown.contains('.') && shown.ends_with('9') {
                    self.warn(
                        r,
                        format!("{key}.rollover"),
                        {
                            let decimals = shown.split('.').nth(1).map_or(0, str::len) as i32;
                            let step = 10f64.powi(-decimals);
                            let _ = base;
                            format!(
                                "rollover {shown} looks like the largest value the register shows, but rollover is the modulus (the register wraps to zero at this value): {shown} loses {step} per wrap; write {}",
                                (r.get_ref() + step).round()
                            )
                        },
                    );
                }
            }
            let mut replacements = Vec::new();
            for (ri, rep) in c.replacements.iter().enumerate() {
                let rkey = format!("{key}.replacements[{ri}]");
                let at = chrono::DateTime::parse_from_rfc3339(rep.at.get_ref().trim());
                let at_ms = match at {
                    Ok(t) => Some(t.timestamp_millis()),
                    Err(e) => {
                        self.err(
                            &rep.at,
                            format!("{rkey}.at"),
                            format!(
                                "not an RFC 3339 time with offset (2026-10-01T10:00:00+08:00): {e}"
                            ),
                        );
                        None
                    }
                };
                let old_final = self.non_negative(&rep.old_final, &format!("{rkey}.old_final"));
                let new_start =
                    self.non_negative(&Some(rep.new_start.clone()), &format!("{rkey}.new_start"));
                if let (Some(at_ms), Some(new_start)) = (at_ms, new_start) {
                    let micro = |v: f64| crate::units::to_micro(v * to_base);
                    match (micro(new_start), old_final.map(micro)) {
                        (Some(new_start_micro), None) => replacements.push(Replacement {
                            at_ms,
                            old_final_micro: None,
                            new_start_micro,
                        }),
                        (Some(new_start_micro), Some(Some(f))) => replacements.push(Replacement {
                            at_ms,
                            old_final_micro: Some(f),
                            new_start_micro,
                        }),
                        _ => self.err(&rep.new_start, rkey, "value out of range"),
                    }
                }
            }
            replacements.sort_by_key(|r| r.at_ms);
            ChannelKind::Counter {
                rollover_base,
                max_rate_base_per_h: max_rate.unwrap_or(1.0) * to_base,
                replacements,
            }
        } else {
            if let Some(r) = &c.rollover {
                self.err(r, format!("{key}.rollover"), "only counters roll over");
            }
            if let Some(r) = &c.max_rate_per_hour {
                self.err(
                    r,
                    format!("{key}.max_rate_per_hour"),
                    "only counters have a maximum rate",
                );
            }
            if integrate && c.carrier.is_none() {
                self.err(
                    &c.id,
                    format!("{key}.carrier"),
                    "an integrated gauge needs a carrier to add its energy to",
                );
            }
            if let Some(r) = c.replacements.first() {
                self.err(
                    &r.at,
                    format!("{key}.replacements"),
                    "only counters are replaced",
                );
            }
            let negative_carrier = match &c.negative_carrier {
                None => None,
                Some(n) if !integrate => {
                    self.err(
                        n,
                        format!("{key}.negative_carrier"),
                        "only an integrated gauge has a negative carrier",
                    );
                    None
                }
                Some(n) => {
                    match Carrier::parse(n.get_ref()) {
                        Some(k) if carrier.is_some_and(|c| c.dimensions() == k.dimensions()) => {
                            Some(k)
                        }
                        Some(k) => {
                            self.err(n, format!("{key}.negative_carrier"), format!("carrier `{k}` does not measure what the channel's carrier does"));
                            None
                        }
                        None => {
                            self.err(
                                n,
                                format!("{key}.negative_carrier"),
                                format!("unknown carrier `{}`", n.get_ref()),
                            );
                            None
                        }
                    }
                }
            };
            ChannelKind::Gauge {
                integrate,
                negative_carrier,
            }
        };
        let unit_value_cny_per_base = match (&c.unit_value_cny, carrier) {
            (Some(v), Some(Carrier::Production)) => self
                .non_negative(&Some(v.clone()), &format!("{key}.unit_value_cny"))
                .map(|cny| cny / unit.map_or(1.0, |u| u.to_base)),
            (None, Some(Carrier::Production)) => {
                self.err(
                    &c.id,
                    format!("{key}.unit_value_cny"),
                    "a production channel needs unit_value_cny (output value per unit counted)",
                );
                None
            }
            (Some(v), _) => {
                self.err(
                    v,
                    format!("{key}.unit_value_cny"),
                    "only production channels have a unit value",
                );
                None
            }
            (None, _) => None,
        };
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Channel {
            id: c.id.get_ref().clone(),
            carrier,
            unit: unit?,
            kind,
            unit_value_cny_per_base,
        })
    }

    fn factors(&mut self, raw: &RawCore, park: &Park, meters: &[Meter]) -> Factors {
        let mut overrides: HashMap<(FactorKind, &'static str), Factor> = HashMap::new();
        for (kind, table) in [
            (FactorKind::Co2, &raw.factors.co2),
            (FactorKind::Tce, &raw.factors.tce),
        ] {
            for (name, f) in table {
                let key = format!("factors.{}.{name}", kind.section());
                match factors::find_slot(kind, name) {
                    None => {
                        let names: Vec<_> = factors::SLOTS
                            .iter()
                            .filter(|s| s.kind == kind)
                            .map(|s| s.name)
                            .collect();
                        self.err(
                            f,
                            key,
                            format!(
                                "unknown factor `{name}`: expected one of {}",
                                names.join(", ")
                            ),
                        );
                    }
                    Some(slot) => {
                        if let Some(factor) = self.factor(f.get_ref(), slot, &key) {
                            overrides.insert((kind, slot.name), factor);
                        }
                    }
                }
            }
        }
        // Which factors the configured channels need, and the first channel that needs each.
        let mut needed: Vec<(FactorKind, &'static str, String, Carrier)> = Vec::new();
        let mut seen = HashSet::new();
        for (i, m) in meters.iter().enumerate() {
            for (j, c) in m.channels.iter().enumerate() {
                let Some(carrier) = c.carrier else { continue };
                for (kind, name) in carrier.required_factors() {
                    if seen.insert((*kind, *name)) {
                        needed.push((
                            *kind,
                            name,
                            format!("meters[{i}].channels[{j}].carrier"),
                            carrier,
                        ));
                    }
                }
            }
        }
        let mut out = Factors::default();
        for slot in factors::SLOTS {
            let chosen = overrides.remove(&(slot.kind, slot.name)).or_else(|| {
                factors::builtin(
                    slot.kind,
                    slot.name,
                    &park.grid_region,
                    park.grid_factor_year,
                )
            });
            if let Some(f) = chosen {
                match slot.kind {
                    FactorKind::Co2 => out.co2.insert(slot.name, f),
                    FactorKind::Tce => out.tce.insert(slot.name, f),
                };
            }
        }
        for (kind, name, key, carrier) in needed {
            let present = match kind {
                FactorKind::Co2 => out.co2.contains_key(name),
                FactorKind::Tce => out.tce.contains_key(name),
            };
            if !present {
                let section = kind.section();
                let why = if name.starts_with("grid_") {
                    format!(
                        " for grid region `{}` and year {}",
                        park.grid_region, park.grid_factor_year
                    )
                } else {
                    String::new()
                };
                self.errors.push(ConfigError {
                    line_col: raw_line_col(raw, &key, self.locator),
                    key,
                    message: format!(
                        "carrier `{carrier}` needs the factor {section}.{name}, and ecogate ships none{why}: add [factors.{section}.{name}] with value, unit, year and source"
                    ),
                });
            }
        }
        out
    }

    fn factor(&mut self, f: &RawFactor, slot: &factors::FactorSlot, key: &str) -> Option<Factor> {
        let value = self.positive(&f.value, &format!("{key}.value"))?;
        if f.source.get_ref().trim().is_empty() {
            self.err(
                &f.source,
                format!("{key}.source"),
                "must name where the figure comes from (an auditor will ask)",
            );
            return None;
        }
        let year = *f.year.get_ref();
        if !(1990..=2100).contains(&year) {
            self.err(
                &f.year,
                format!("{key}.year"),
                format!("year {year} is not a plausible data year"),
            );
            return None;
        }
        match factors::per_base(slot.kind, slot.per, value, f.unit.get_ref()) {
            Ok(per_base) => Some(Factor {
                value,
                unit: f.unit.get_ref().clone(),
                year: Some(year),
                source: f.source.get_ref().clone(),
                per_base,
            }),
            Err(msg) => {
                self.err(
                    &f.unit,
                    format!("{key}.unit"),
                    format!("`{}`: {msg}", f.unit.get_ref()),
                );
                None
            }
        }
    }

    fn store(&mut self, raw: &RawCore) -> StoreConfig {
        let s = &raw.store;
        let r = &s.retention;
        let days = |v: &Option<S<u32>>, default: u32| v.as_ref().map_or(default, |d| *d.get_ref());
        let commit_interval_ms = s.commit_interval_ms.as_ref().map_or(1000, |v| *v.get_ref());
        if let Some(v) = &s.commit_interval_ms {
            if *v.get_ref() == 0 || *v.get_ref() > 60_000 {
                self.err(v, "store.commit_interval_ms", "must be between 1 and 60000");
            }
        }
        let max_batch = s
            .max_batch_readings
            .as_ref()
            .map_or(10_000, |v| *v.get_ref());
        if let Some(v) = &s.max_batch_readings {
            if *v.get_ref() == 0 || *v.get_ref() > 1_000_000 {
                self.err(
                    v,
                    "store.max_batch_readings",
                    "must be between 1 and 1000000",
                );
            }
        }
        let path = PathBuf::from(
            s.path
                .as_ref()
                .map_or("data/ecogate.db".to_string(), |p| p.get_ref().clone()),
        );
        // What `run` would fail on at once, said by `check` with what to do.
        if let Some(problem) = store_path_problem(&path) {
            match &s.path {
                Some(at) => self.err(at, "store.path", problem),
                None => self.err_unlocated("store.path", problem),
            }
        }
        StoreConfig {
            path,
            commit_interval_ms,
            max_batch_readings: max_batch as usize,
            retention: Retention {
                readings_days: days(&r.readings_days, 400),
                minute_days: days(&r.minute_days, 14),
                quarter_hour_days: days(&r.quarter_hour_days, 800),
                hour_days: days(&r.hour_days, 800),
                events_days: days(&r.events_days, 0),
            },
        }
    }

    fn accounting(&mut self, raw: &RawCore) -> AccountingConfig {
        let a = &raw.accounting;
        let windows = match &a.windows {
            None => WindowKind::ALL.to_vec(),
            Some(list) => {
                let mut out = Vec::new();
                for (i, w) in list.iter().enumerate() {
                    let key = format!("accounting.windows[{i}]");
                    match WindowKind::parse(w.get_ref()) {
                        Some(k) if out.contains(&k) => {
                            self.err(w, key, format!("window `{}` listed twice", w.get_ref()))
                        }
                        Some(k) => out.push(k),
                        None => {
                            let names: Vec<_> = WindowKind::ALL.iter().map(|w| w.name()).collect();
                            self.err(
                                w,
                                key,
                                format!(
                                    "unknown window `{}`: expected one of {}",
                                    w.get_ref(),
                                    names.join(", ")
                                ),
                            )
                        }
                    }
                }
                out.sort();
                if out.is_empty() && list.is_empty() {
                    self.errors.push(ConfigError {
                        line_col: None,
                        key: "accounting.windows".into(),
                        message: "at least one window is needed".into(),
                    });
                }
                out
            }
        };
        let gauge_max_gap_s = a
            .gauge_max_gap_s
            .as_ref()
            .and_then(|g| self.positive(g, "accounting.gauge_max_gap_s"))
            .unwrap_or(300.0);
        let max_future_s = a
            .max_future_s
            .as_ref()
            .and_then(|g| self.positive(g, "accounting.max_future_s"))
            .unwrap_or(300.0);
        AccountingConfig {
            windows,
            gauge_max_gap_s,
            max_future_s,
        }
    }
}

/// Finds the line of a `meters[i].channels[j].carrier` key in the raw config.
fn raw_line_col(raw: &RawCore, key: &str, locator: &Locator<'_>) -> Option<(usize, usize)> {
    let rest = key.strip_prefix("meters[")?;
    let (i, rest) = rest.split_once("].channels[")?;
    let (j, _) = rest.split_once(']')?;
    let channel = raw
        .meters
        .get(i.parse::<usize>().ok()?)?
        .channels
        .get(j.parse::<usize>().ok()?)?;
    channel
        .carrier
        .as_ref()
        .map(|c| locator.line_col(&c.span()))
}
