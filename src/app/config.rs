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
use crate::sources::modbus::config::{ModbusConfig, RawModbus};
use crate::sources::mqtt::config::{MqttConfig, RawMqtt};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// The file's top level, as written. Unknown keys are errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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
    #[serde(default)]
    modbus: RawModbus,
    #[serde(default)]
    mqtt: RawMqtt,
    #[serde(default)]
    metrics: RawMetrics,
    alerting: Option<RawAlerting>,
    influx: Option<RawInflux>,
}

/// The checked configuration: the park model every part reads, and each component's settings.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub core: Arc<Config>,
    pub modbus: ModbusConfig,
    pub mqtt: MqttConfig,
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
        AppConfig::parse(path, &text)
    }

    /// Validates configuration text; `file` is used in messages.
    pub fn parse(file: &Path, text: &str) -> Result<AppConfig, ConfigErrors> {
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
        };
        let mut v = Validator::new(file, &locator);
        let mut core = v.core(&core_raw);
        let modbus = crate::sources::modbus::config::validate(&mut v, &raw.modbus, &core.meters);
        let mqtt = crate::sources::mqtt::config::validate(&mut v, &raw.mqtt, &core.meters);
        let listener = crate::metrics::config::validate(&mut v, &raw.metrics);
        let alerting = crate::alerting::config::validate(
            &mut v,
            raw.alerting.as_ref(),
            mqtt.broker.is_some(),
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
            modbus,
            mqtt,
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
            "{} firms, {} sites, {} meters, {} channels",
            c.firms.len(),
            c.sites.len(),
            c.meters.len(),
            channels
        );
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
        for bus in &self.modbus.buses {
            let _ = writeln!(
                out,
                "modbus bus {} ({}): {} device(s)",
                bus.id,
                bus.transport.describe(),
                bus.devices.len()
            );
        }
        if let Some(b) = &self.mqtt.broker {
            let _ = writeln!(
                out,
                "mqtt {}:{} as {}{}: {} subscription(s)",
                b.host,
                b.port,
                b.client_id,
                if b.tls.is_some() { " over TLS" } else { "" },
                self.mqtt.subscriptions.len()
            );
            for s in &self.mqtt.subscriptions {
                let _ = writeln!(out, "  {} (qos {})", s.topic, s.qos);
            }
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
