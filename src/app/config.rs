//! The whole configuration file: the park model's sections and every component's, assembled.
//!
//! This is the one place that knows every section. The park model validates its own
//! (`crate::config`), each component validates its own with the same [`Validator`], and an error
//! anywhere is reported with all the others, located by file, line and key.

use crate::alerting::config::{AlertingConfig, RawAlerting};
use crate::config::raw::{
    RawAccounting, RawCore, RawFactors, RawFirm, RawMeter, RawPark, RawSite, RawStore,
};
use crate::config::{parse_toml, Config, ConfigError, ConfigErrors, Locator, Validator};
use crate::metrics::config::RawMetrics;
use crate::sinks::influx::config::{InfluxConfig, RawInflux};
use crate::sources::SourceConfig;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The file's top level, as written. A section no one reads is an error (checked against the
/// source registry: each source reads its own section).
#[derive(Debug, Deserialize)]
struct RawFile {
    park: RawPark,
    #[serde(default)]
    firms: Vec<RawFirm>,
    #[serde(default)]
    sites: Vec<RawSite>,
    #[serde(default)]
    meters: Vec<RawMeter>,
    #[serde(default)]
    factors: RawFactors,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    accounting: RawAccounting,
    #[serde(default)]
    evaluation: crate::config::evaluation::RawEvaluation,
    tariff: Option<crate::config::tariff::RawTariff>,
    shard: Option<crate::config::raw::RawShard>,
    #[serde(default)]
    metrics: RawMetrics,
    alerting: Option<RawAlerting>,
    influx: Option<RawInflux>,
}

/// Every top-level key, where it stands: one no part reads is an error. (The sources' sections
/// are read by each source from the text; serde's `flatten` would lose the locations.)
type TopKeys = std::collections::BTreeMap<toml::Spanned<String>, serde::de::IgnoredAny>;

/// Stands for the instance's shard number anywhere in the file (`run --shard`).
pub const SHARD_PLACEHOLDER: &str = "{shard}";

/// The top-level keys of the file besides the sources' sections.
const KEYS: &[&str] = &[
    "park",
    "firms",
    "sites",
    "meters",
    "factors",
    "store",
    "accounting",
    "evaluation",
    "tariff",
    "shard",
    "metrics",
    "alerting",
    "influx",
];

/// The checked configuration: the park model every part reads, and each component's settings.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub core: Arc<Config>,
    /// Every source's settings, in the registry's order (one for each kind, enabled or not).
    pub sources: Vec<Box<dyn SourceConfig>>,
    /// Where `/metrics`, the probes and the status page are served; `None` when switched off.
    pub listener: Option<crate::metrics::config::Listener>,
    pub alerting: Option<AlertingConfig>,
    pub influx: Option<InfluxConfig>,
}

/// The park model's fields read through the application config (`app.meters`, `app.park`).
impl std::ops::Deref for AppConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.core
    }
}

impl AppConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<AppConfig, ConfigErrors> {
        AppConfig::load_shard(path, None)
    }

    /// Reads and validates a configuration file, cut to shard `shard` of a split park
    /// (docs/scale-out.md): every `{shard}` in the text is that number, and only the shard's
    /// firms, their sites and meters, and the lines and devices that read them are kept.
    pub fn load_shard(path: &Path, shard: Option<u32>) -> Result<AppConfig, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single(
                path,
                ConfigError {
                    line_col: None,
                    key: String::new(),
                    message: format!("cannot read the configuration file: {e}"),
                },
            )
        })?;
        AppConfig::parse_shard(path, &text, shard)
    }

    /// Validates configuration text; `file` is used in messages.
    pub fn parse(file: &Path, text: &str) -> Result<AppConfig, ConfigErrors> {
        AppConfig::parse_shard(file, text, None)
    }

    /// As [`AppConfig::parse`], cut to one shard (see [`AppConfig::load_shard`]).
    pub fn parse_shard(
        file: &Path,
        text: &str,
        shard: Option<u32>,
    ) -> Result<AppConfig, ConfigErrors> {
        // Text in, so the store path, client id, topics and listen address can all differ by
        // instance while the park model stays one file. Without a shard (`check`, `shards`,
        // `report --central` over the whole park) it reads as 0, so that the file validates.
        // Columns after a `{shard}` on its line shift by its length in messages; lines stay
        // exact.
        let substituted;
        let text = if text.contains(SHARD_PLACEHOLDER) {
            substituted = text.replace(SHARD_PLACEHOLDER, &shard.unwrap_or(0).to_string());
            substituted.as_str()
        } else {
            text
        };
        let mut app = AppConfig::parse_whole(file, text)?;
        if let Some(k) = shard {
            let count = app.core.sharding.count;
            if count < 2 || k >= count {
                let message = if count < 2 {
                    format!("--shard {k} given, but the park is not split: add [shard] count = N (N >= 2) to run N instances")
                } else {
                    format!("--shard {k} does not exist: this park has shards 0 to {} ([shard] count = {count})", count - 1)
                };
                return Err(ConfigErrors::single(
                    file,
                    ConfigError {
                        line_col: None,
                        key: "shard".into(),
                        message,
                    },
                ));
            }
            let core = app.core.for_shard(k);
            let others = core.sharding.other_shard_meters.clone();
            for s in &mut app.sources {
                s.retain_meters(&|m| !others.contains(m));
            }
            app.core = Arc::new(core);
        }
        Ok(app)
    }

    /// What `check` refuses in a split park, seen by cutting the file to every shard: two
    /// instances with one MQTT client id (the broker would keep one connected at a time),
    /// and, as notes, one store path or listen address for two shards (fine only on separate
    /// machines). An invalid cut is a problem too.
    pub fn shard_problems(file: &Path, text: &str, count: u32) -> (Vec<String>, Vec<String>) {
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        let mut seen: HashMap<String, u32> = HashMap::new();
        let mut stores: HashMap<std::path::PathBuf, u32> = HashMap::new();
        let mut listens: HashMap<String, u32> = HashMap::new();
        for k in 0..count {
            let cut = match AppConfig::parse_shard(file, text, Some(k)) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(format!("shard {k}: {e}"));
                    continue;
                }
            };
            for id in cut.sources.iter().flat_map(|s| s.identities()) {
                if let Some(first) = seen.insert(id.clone(), k) {
                    problems.push(format!(
                        "shards {first} and {k} would both connect with {id}: put {SHARD_PLACEHOLDER} in it"
                    ));
                }
            }
            if let Some(first) = stores.insert(cut.core.store.path.clone(), k) {
                notes.push(format!(
                    "shards {first} and {k} use one store path `{}`: fine only on separate machines (put {SHARD_PLACEHOLDER} in store.path otherwise)",
                    cut.core.store.path.display()
                ));
            }
            if let Some(l) = &cut.listener {
                if let Some(first) = listens.insert(l.listen.to_string(), k) {
                    notes.push(format!(
                        "shards {first} and {k} listen on {}: fine only on separate machines",
                        l.listen
                    ));
                }
            }
        }
        (problems, notes)
    }

    fn parse_whole(file: &Path, text: &str) -> Result<AppConfig, ConfigErrors> {
        let locator = Locator::new(text);
        let raw: RawFile = parse_toml(text, &locator).map_err(|e| ConfigErrors::single(file, e))?;
        let park_name = raw.park.name.clone();
        let core_raw = RawCore {
            park: raw.park,
            firms: raw.firms,
            sites: raw.sites,
            meters: raw.meters,
            factors: raw.factors,
            store: raw.store,
            accounting: raw.accounting,
            evaluation: raw.evaluation,
            tariff: raw.tariff,
            shard: raw.shard,
        };
        let mut v = Validator::new(file, &locator);
        let mut core = v.core(&core_raw);
        let keys: TopKeys =
            parse_toml(text, &locator).map_err(|e| ConfigErrors::single(file, e))?;
        for key in keys.keys() {
            if !KEYS.contains(&key.get_ref().as_str())
                && crate::sources::registry::kind(key.get_ref()).is_none()
            {
                let mut known: Vec<&str> = KEYS.to_vec();
                known.extend(crate::sources::registry::kinds().iter().map(|k| k.name()));
                v.err(
                    key,
                    key.get_ref().as_str(),
                    format!(
                        "unknown field `{}`, expected one of {}",
                        key.get_ref(),
                        known
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        let sources: Vec<Box<dyn SourceConfig>> = crate::sources::registry::kinds()
            .iter()
            .map(|k| k.configure(&mut v, &core.meters))
            .collect();
        let broker = sources.iter().find_map(|s| s.broker_options()).is_some();
        let listener = crate::metrics::config::validate(&mut v, &raw.metrics);
        let alerting = crate::alerting::config::validate(
            &mut v,
            raw.alerting.as_ref(),
            broker,
            &core.accounting.windows,
        );
        let influx = crate::sinks::influx::config::validate(
            &mut v,
            raw.influx.as_ref(),
            &park_name,
            &core.store.path,
            &core.accounting.windows,
        );
        core.warnings = v.finish()?;
        Ok(AppConfig {
            core: Arc::new(core),
            sources,
            listener,
            alerting,
            influx,
        })
    }

    /// What `run` would refuse in the files already on disk, beyond the configuration itself:
    /// an outbox that holds another store's records. Each problem in one line.
    pub fn check_files(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(influx) = &self.influx {
            let store = &self.core.store.path;
            match crate::sinks::store::Store::peek_store_id(store) {
                Ok(Some(id)) => {
                    if let Err(e) =
                        crate::sinks::outbox::Outbox::check_owner(&influx.outbox.dir, &id, store)
                    {
                        problems.push(e.to_string());
                    }
                }
                Ok(None) => {}
                Err(e) => problems.push(e.to_string()),
            }
        }
        problems
    }

    /// The settings of the source of type `T` (tests and tools that know the concrete type).
    pub fn source<T: 'static>(&self) -> Option<&T> {
        self.sources.iter().find_map(|s| s.as_any().downcast_ref())
    }

    /// The sources that have something to run.
    pub fn live_sources(&self) -> impl Iterator<Item = &dyn SourceConfig> {
        self.sources
            .iter()
            .filter(|s| s.enabled())
            .map(|s| s.as_ref())
    }

    /// A copy that shares no allocation with `self` (the park model included).
    pub fn deep_clone(&self) -> AppConfig {
        AppConfig {
            core: Arc::new((*self.core).clone()),
            ..self.clone()
        }
    }

    /// What `ecogate check` prints: the park, every factor in force with its source, and each
    /// component's settings.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let c = &self.core;
        let mut out = String::new();
        let channels: usize = c.meters.iter().map(|m| m.channels.len()).sum();
        let _ = writeln!(out, "{}: valid", c.file.display());
        for w in &c.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        let _ = writeln!(
            out,
            "park {} ({}), grid region {}, factor year {}",
            c.park.name, c.park.timezone, c.park.grid_region, c.park.grid_factor_year
        );
        let _ = writeln!(
            out,
            "{} firms, {} sites, {} meters, {} channels{}",
            c.firms.len(),
            c.sites.len(),
            c.meters.len(),
            channels,
            match c.sharding.index {
                Some(k) => format!(" (shard {k} of {})", c.sharding.count),
                None => String::new(),
            }
        );
        if c.sharding.index.is_none() {
            for line in c.sharding_summary() {
                let _ = writeln!(out, "{line}");
            }
        }
        for f in &c.firms {
            let sites = c
                .sites
                .iter()
                .filter(|s| c.firm_index(&f.id) == Some(s.firm))
                .count();
            let _ = writeln!(
                out,
                "  firm {} ({}): {} mu, {} site(s)",
                f.id,
                f.name,
                crate::report::num(f.land_mu, 2),
                sites
            );
        }
        let _ = writeln!(out, "factors in force:");
        for (section, table) in [("co2", &c.factors.co2), ("tce", &c.factors.tce)] {
            for (name, f) in table {
                let _ = writeln!(
                    out,
                    "  {section}.{name} = {} {} ({}): {}",
                    f.value,
                    f.unit,
                    f.year.map_or("-".to_string(), |y| y.to_string()),
                    f.source
                );
            }
        }
        for s in &self.sources {
            for line in s.summary() {
                let _ = writeln!(out, "{line}");
            }
        }
        if let Some(t) = &c.tariff {
            let _ = writeln!(
                out,
                "tariff: {}{}; prices {}; contracted demand {}",
                t.name,
                if t.source.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", t.source)
                },
                t.prices_cny_per_kwh.map_or("not given".to_string(), |p| {
                    format!(
                        "sharp {} / peak {} / flat {} / valley {} CNY/kWh",
                        p[0], p[1], p[2], p[3]
                    )
                }),
                t.demand
                    .and_then(|d| d.contract_kw)
                    .map_or("not given".to_string(), |kw| format!("{kw} kW")),
            );
        }
        let windows: Vec<_> = c.accounting.windows.iter().map(|w| w.name()).collect();
        let _ = writeln!(out, "windows: {}", windows.join(", "));
        let _ = writeln!(out, "store: {}", c.store.path.display());
        if let Some(i) = &self.influx {
            let _ = writeln!(
                out,
                "influx: {} org {} bucket {}; outbox {} (cap {} bytes, fsync {:?}, when full {:?})",
                i.url,
                i.org,
                i.bucket,
                i.outbox.dir.display(),
                i.outbox.max_bytes,
                i.outbox.fsync,
                i.outbox.when_full
            );
        }
        out
    }
}
