//! Modbus configuration: buses, devices, register points and the shipped meter profiles.
//!
//! ```toml
//! [[modbus.buses]]              # an RS-485 line, or a serial device server (RTU over TCP)
//! id = "line1"
//! transport = "rtu"             # rtu | rtu_over_tcp
//! device = "/dev/ttyUSB0"
//! baud = 9600
//!
//! [[modbus.devices]]
//! meter = "hd-main"             # the configured meter this device feeds
//! bus = "line1"                 # or tcp = "192.0.2.10:502" for Modbus TCP
//! unit_id = 1
//! profile = "chint-dtsu666"
//! channels = { import = "import_kwh", power = "power_total_w" }   # meter channel = profile point
//! ```
//!
//! Devices given by `tcp` address share one connection per address (a Modbus TCP gateway in
//! front of several unit ids is one bus).

use super::decode::{DataType, WordOrder};
use super::plan::{Function, Limits, Span};
mod validate;
pub use super::profiles::{
    parse_profile, profile, profile_names, Profile, ProfilePoint, Ratio, PROFILES,
};
use crate::config::raw::S;
use crate::config::{Meter, Validator};
use crate::units::Unit;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
pub use validate::validate;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModbus {
    /// A folder of the user's own profiles (`*.toml`, same form as config/profiles/), relative
    /// to the configuration file.
    pub profiles_dir: Option<S<String>>,
    #[serde(default)]
    pub buses: Vec<RawBus>,
    #[serde(default)]
    pub devices: Vec<RawDevice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBus {
    pub id: S<String>,
    pub transport: S<String>,
    pub device: Option<S<String>>,
    pub baud: Option<S<u32>>,
    pub parity: Option<S<String>>,
    pub data_bits: Option<S<u8>>,
    pub stop_bits: Option<S<u8>>,
    pub address: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub meter: S<String>,
    pub bus: Option<S<String>>,
    pub tcp: Option<S<String>>,
    pub unit_id: Option<S<u8>>,
    pub profile: Option<S<String>>,
    pub function: Option<S<String>>,
    #[serde(default)]
    pub channels: BTreeMap<String, S<String>>,
    #[serde(default)]
    pub registers: Vec<RawRegister>,
    pub poll_interval_ms: Option<S<u64>>,
    pub timeout_ms: Option<S<u64>>,
    pub retries: Option<S<u32>>,
    pub max_registers_per_request: Option<S<u16>>,
    pub max_gap_registers: Option<S<u16>>,
    pub single_register_requests: Option<S<bool>>,
    pub apply_ratios: Option<S<bool>>,
    pub ct_ratio: Option<S<f64>>,
    pub pt_ratio: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegister {
    pub channel: S<String>,
    pub function: S<String>,
    pub address: S<u32>,
    /// 0 if `address` is as on the wire, 1 if it is a documented register number counted from 1.
    pub address_base: S<u8>,
    #[serde(rename = "type")]
    pub data_type: S<String>,
    pub word_order: Option<S<String>>,
    pub scale: Option<S<f64>>,
    pub offset: Option<S<f64>>,
    pub unit: S<String>,
    pub ratio: Option<S<String>>,
    pub min: Option<S<f64>>,
    pub max: Option<S<f64>>,
}

/// The shipped profiles plus those in `profiles_dir`; a problem is reported at `profiles_dir`.
fn all_profiles(v: &mut Validator<'_>, raw: &RawModbus) -> HashMap<String, Profile> {
    let mut out: HashMap<String, Profile> = PROFILES
        .iter()
        .filter_map(|(_, text)| parse_profile(text).ok())
        .map(|p| (p.name.clone(), p))
        .collect();
    let Some(dir) = &raw.profiles_dir else {
        return out;
    };
    let path = v.relative_to_config(dir.get_ref());
    let entries = match std::fs::read_dir(&path) {
        Ok(e) => e,
        Err(e) => {
            v.err(
                dir,
                "modbus.profiles_dir",
                format!("cannot read {}: {e}", path.display()),
            );
            return out;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for file in files {
        let parsed = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_profile(&t));
        match parsed {
            Err(e) => v.err(
                dir,
                "modbus.profiles_dir",
                format!("profile {}: {e}", file.display()),
            ),
            Ok(p) if out.contains_key(&p.name) => v.err(
                dir,
                "modbus.profiles_dir",
                format!(
                    "profile {}: name `{}` is already taken by another profile",
                    file.display(),
                    p.name
                ),
            ),
            Ok(p) => {
                out.insert(p.name.clone(), p);
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serial {
    pub path: PathBuf,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Tcp(SocketAddr),
    RtuOverTcp(SocketAddr),
    Rtu(Serial),
}

impl Transport {
    /// Whether a late reply can be told from the next one by its transaction id (TCP) or not
    /// (RTU framing has none, so the connection must be dropped after a timeout).
    pub fn is_serial_framing(&self) -> bool {
        !matches!(self, Transport::Tcp(_))
    }
}

#[derive(Debug, Clone, Default)]
pub struct ModbusConfig {
    pub buses: Vec<Bus>,
}

impl ModbusConfig {
    pub fn device_count(&self) -> usize {
        self.buses.iter().map(|b| b.devices.len()).sum()
    }

    /// The meters the Modbus source reads.
    pub fn meters(&self) -> Vec<String> {
        self.buses
            .iter()
            .flat_map(|b| b.devices.iter().map(|d| d.meter.clone()))
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Bus {
    pub id: String,
    pub transport: Transport,
    /// Shared with the bus's poller, which needs them for the life of the daemon: a thousand
    /// devices' points are megabytes, not worth a second copy.
    pub devices: Vec<std::sync::Arc<Device>>,
}

#[derive(Debug, Clone)]
pub struct Device {
    /// The meter id; also names the device in logs and metrics.
    pub meter: String,
    pub unit_id: u8,
    pub poll_interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub limits: Limits,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone)]
pub struct Point {
    pub channel: String,
    pub span: Span,
    pub data_type: DataType,
    pub word_order: WordOrder,
    /// value = raw x scale + offset, then x the CT/PT multiplier.
    pub scale: f64,
    pub offset: f64,
    pub multiplier: f64,
    pub unit: Unit,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

fn parse_addr(v: &mut Validator<'_>, text: &S<String>, key: &str) -> Option<SocketAddr> {
    match text.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            v.err(
                text,
                key,
                format!(
                    "`{}` is not an address such as 192.0.2.10:502 or [::1]:502",
                    text.get_ref()
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests;
