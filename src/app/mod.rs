//! The application: the one place that knows every component and wires them together.
//!
//! - [`config`]: the whole configuration file, assembled from the park model's sections and each
//!   component's.
//! - [`daemon`]: `ecogate run`: build every component from its config, start it, wait for a
//!   signal, drain sources, then the pipeline, then sinks.
//! - [`replay`]: `ecogate replay`: a file of readings through the same pipeline and sinks.
//! - [`probe`]: `ecogate probe`: one meter read once (Modbus) or listened to (MQTT).
//! - [`reports`]: `ecogate report`, `evaluate` and `stats import`: the store's figures and the
//!   firms' statistics through the evaluation into report tables.
//!
//! A new source or sink is a folder of its own under `sources/` or `sinks/`, plus its section
//! in [`config`] and its start in [`daemon`]: see docs/architecture.md.

pub mod central;
pub mod config;
pub mod daemon;
pub mod probe;
pub mod replay;
pub mod reports;
pub mod scraped;
pub mod status;

pub use config::AppConfig;

/// Now, for reports and status pages: `ECOGATE_NOW` when set.
pub fn now_ms(config: &crate::config::Config) -> i64 {
    // Reports can be made as of another time (golden files, reproducing a past report).
    std::env::var("ECOGATE_NOW")
        .ok()
        .and_then(|v| crate::util::timestamp::parse(&v, config.park.timezone).ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis())
}
