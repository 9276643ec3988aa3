//! ecogate: an energy-meter gateway daemon for industrial parks.
//!
//! Data flows one way: sources (`sources::{modbus, mqtt}`, replay) produce [`reading::Reading`]s;
//! the pipeline runs them through the pure accounting core (`accounting`: counters, carbon and
//! standard-coal accounting, windows) and commits the results to the sinks (`sinks::store`, the
//! embedded SQLite default); `metrics` watches every stage.

#![forbid(unsafe_code)]

pub mod accounting;
pub mod alerting;
pub mod app;
pub mod component;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod evaluation;
pub mod figures;
pub mod metrics;
pub mod pipeline;
pub mod reading;
pub mod replay;
pub mod report;
pub mod sinks;
pub mod sources;
pub mod statistics;
pub mod status;
pub mod units;
pub mod util;
