//! Helpers shared by the integration tests: a configuration from text, a pipeline on a
//! temporary store, readings from short literals.

#![allow(dead_code)]

use ecogate::config::Config;
use ecogate::metrics::Metrics;
use ecogate::pipeline::Pipeline;
use ecogate::reading::{Quality, Reading};
use ecogate::sinks::store::Store;
use ecogate::units::Unit;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn config(text: &str) -> Arc<Config> {
    ecogate::app::AppConfig::parse(Path::new("test.toml"), text)
        .unwrap_or_else(|e| panic!("config should be valid:\n{e}"))
        .core
}

pub fn store_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("store.db")
}

pub fn pipeline(config: &Arc<Config>, path: &Path) -> Pipeline {
    Pipeline::open(
        config.clone(),
        Store::open(path).unwrap(),
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

/// Epoch milliseconds of an RFC 3339 time.
pub fn ts(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

pub fn reading(meter: &str, channel: &str, amount: f64, unit: &str, at: &str) -> Reading {
    Reading {
        meter: meter.into(),
        channel: channel.into(),
        amount,
        unit: Unit::parse(unit).unwrap(),
        ts_ms: ts(at),
        quality: Quality::Good,
    }
}

/// A park with one firm (50 mu) and one factory site, metering grid import/export, PV, gas and
/// a production line; national 2022 grid factors.
pub const FACTORY: &str = r#"
[park]
name = "Test Park"
grid_region = "national"
grid_factor_year = 2022

[[firms]]
id = "f1"
name = "Firm One"
land_mu = 50

[[sites]]
id = "s1"
firm = "f1"
kind = "factory"

[[meters]]
id = "grid"
site = "s1"
channels = [
  { id = "import", carrier = "grid_import", kind = "counter", unit = "kWh", max_rate_per_hour = 5000, rollover = 100000 },
  { id = "export", carrier = "grid_export", kind = "counter", unit = "kWh", max_rate_per_hour = 5000 },
]

[[meters]]
id = "pv"
site = "s1"
channels = [{ id = "gen", carrier = "pv_generation", kind = "counter", unit = "kWh", max_rate_per_hour = 2000 }]

[[meters]]
id = "gas"
site = "s1"
channels = [{ id = "vol", carrier = "natural_gas", kind = "counter", unit = "Nm3", max_rate_per_hour = 500 }]

[[meters]]
id = "line"
site = "s1"
channels = [{ id = "pcs", carrier = "production", kind = "counter", unit = "pcs", max_rate_per_hour = 100, unit_value_cny = 250 }]
"#;

/// Kills a child process (a server or `ecogate run`) when the test ends, however it ends.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the `ecogate` binary to completion: (exit code, stdout, stderr).
pub fn ecogate(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ecogate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
