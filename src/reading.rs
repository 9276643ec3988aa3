//! The one reading type every source produces and the pipeline consumes.
//!
//! Sources (Modbus, MQTT, replay) translate their protocol's values into `Reading`s and nothing of
//! the protocol crosses this line: the accounting core only ever sees meter and channel ids, an
//! amount with its unit, a timestamp and a quality.

use crate::units::Unit;

/// How far a source trusts a value. `Bad` readings are counted and never reach the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Quality {
    #[default]
    Good,
    /// The device flagged the value (e.g. a communication warning) but it is still a measurement.
    Uncertain,
    /// The source knows the value is wrong (device error, decode failure).
    Bad,
}

impl Quality {
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Uncertain => "uncertain",
            Quality::Bad => "bad",
        }
    }

    pub fn parse(text: &str) -> Option<Quality> {
        match text.trim().to_ascii_lowercase().as_str() {
            "good" | "" => Some(Quality::Good),
            "uncertain" => Some(Quality::Uncertain),
            "bad" => Some(Quality::Bad),
            _ => None,
        }
    }
}

/// One value read from one channel of one meter.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub meter: String,
    pub channel: String,
    /// The amount as the device reported it, in `unit`.
    pub amount: f64,
    pub unit: Unit,
    /// When the value was measured (or, failing that, received), milliseconds since the Unix epoch.
    pub ts_ms: i64,
    pub quality: Quality,
    /// `ts_ms` is the gateway's clock when the value arrived (a Modbus poll, an MQTT payload
    /// without a time of its own), not a time the device gave. Such readings of one channel
    /// arrive in order, so one stamped before the last means the clock was stepped back
    /// (docs/accounting.md, "The gateway's clock"), and none can be in the future.
    pub stamped_on_arrival: bool,
}
