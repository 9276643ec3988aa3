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
use crate::config::raw::S;
use crate::config::{Meter, Validator};
use crate::units::Unit;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;

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

/// A profile file as shipped in config/profiles/.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    description: String,
    source: String,
    function: String,
    word_order: String,
    address_base: u8,
    points: BTreeMap<String, RawProfilePoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfilePoint {
    address: u32,
    #[serde(rename = "type")]
    data_type: String,
    #[serde(default)]
    scale: Option<f64>,
    unit: String,
    #[serde(default)]
    ratio: Option<String>,
}

/// The profiles shipped with ecogate, compiled in so that a gateway needs no extra files.
pub const PROFILES: &[(&str, &str)] = &[
    (
        "chint-dtsu666",
        include_str!("../../../config/profiles/chint-dtsu666.toml"),
    ),
    (
        "chint-dtsu666-4000",
        include_str!("../../../config/profiles/chint-dtsu666-4000.toml"),
    ),
    (
        "chint-ddsu666",
        include_str!("../../../config/profiles/chint-ddsu666.toml"),
    ),
    (
        "eastron-sdm630",
        include_str!("../../../config/profiles/eastron-sdm630.toml"),
    ),
    (
        "eastron-sdm120",
        include_str!("../../../config/profiles/eastron-sdm120.toml"),
    ),
    (
        "acrel-adl400",
        include_str!("../../../config/profiles/acrel-adl400.toml"),
    ),
];

/// Which of the device's ratios multiply a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ratio {
    #[default]
    None,
    Ct,
    Pt,
    CtPt,
}

impl Ratio {
    fn parse(text: &str) -> Option<Ratio> {
        match text {
            "none" => Some(Ratio::None),
            "ct" => Some(Ratio::Ct),
            "pt" => Some(Ratio::Pt),
            "ct_pt" => Some(Ratio::CtPt),
            _ => None,
        }
    }
}

/// A profile, parsed.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub source: String,
    pub points: BTreeMap<String, ProfilePoint>,
}

#[derive(Debug, Clone)]
pub struct ProfilePoint {
    pub function: Function,
    pub address: u16,
    pub data_type: DataType,
    pub word_order: WordOrder,
    pub scale: f64,
    pub unit: Unit,
    pub ratio: Ratio,
}

/// Parses a shipped profile. Errors are bugs in the shipped file (a test parses them all).
pub fn parse_profile(text: &str) -> Result<Profile, String> {
    let raw: RawProfile = toml::from_str(text).map_err(|e| e.to_string())?;
    let function = Function::parse(&raw.function).ok_or(format!("function `{}`", raw.function))?;
    let word_order =
        WordOrder::parse(&raw.word_order).ok_or(format!("word_order `{}`", raw.word_order))?;
    let mut points = BTreeMap::new();
    for (name, p) in raw.points {
        let address = p
            .address
            .checked_sub(raw.address_base as u32)
            .and_then(|a| u16::try_from(a).ok())
            .ok_or(format!("point {name}: address out of range"))?;
        points.insert(
            name.clone(),
            ProfilePoint {
                function,
                address,
                data_type: DataType::parse(&p.data_type)
                    .ok_or(format!("point {name}: type `{}`", p.data_type))?,
                word_order,
                scale: p.scale.unwrap_or(1.0),
                unit: Unit::parse(&p.unit).ok_or(format!("point {name}: unit `{}`", p.unit))?,
                ratio: match p.ratio {
                    None => Ratio::None,
                    Some(r) => Ratio::parse(&r).ok_or(format!("point {name}: ratio `{r}`"))?,
                },
            },
        );
    }
    Ok(Profile {
        name: raw.name,
        description: raw.description,
        source: raw.source,
        points,
    })
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

/// The shipped profiles' names.
pub fn profile_names() -> Vec<&'static str> {
    PROFILES.iter().map(|(n, _)| *n).collect()
}

pub fn profile(name: &str) -> Option<Profile> {
    PROFILES
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, text)| parse_profile(text).ok())
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

/// Validates the `[modbus]` section against the configured meters.
pub fn validate(v: &mut Validator<'_>, raw: &RawModbus, meters: &[Meter]) -> ModbusConfig {
    let mut buses: Vec<Bus> = Vec::new();
    let mut bus_index: HashMap<String, usize> = HashMap::new();
    for (i, b) in raw.buses.iter().enumerate() {
        let key = format!("modbus.buses[{i}]");
        if bus_index.contains_key(b.id.get_ref()) {
            v.err(
                &b.id,
                format!("{key}.id"),
                format!("duplicate bus id `{}`", b.id.get_ref()),
            );
            continue;
        }
        let transport = match b.transport.get_ref().as_str() {
            "rtu" => match &b.device {
                None => {
                    v.err(
                        &b.transport,
                        format!("{key}.device"),
                        "an RTU bus needs `device`, the serial port (e.g. /dev/ttyUSB0)",
                    );
                    None
                }
                Some(path) => {
                    let parity = match b.parity.as_ref().map(|p| p.get_ref().as_str()) {
                        None | Some("none") => Parity::None,
                        Some("even") => Parity::Even,
                        Some("odd") => Parity::Odd,
                        Some(other) => {
                            v.err(
                                b.parity.as_ref().unwrap(),
                                format!("{key}.parity"),
                                format!("parity `{other}`: expected none, even or odd"),
                            );
                            Parity::None
                        }
                    };
                    let data_bits = b.data_bits.as_ref().map_or(8, |d| *d.get_ref());
                    if !(5..=8).contains(&data_bits) {
                        v.err(
                            b.data_bits.as_ref().unwrap(),
                            format!("{key}.data_bits"),
                            "must be 5 to 8",
                        );
                    }
                    let stop_bits = b.stop_bits.as_ref().map_or(1, |d| *d.get_ref());
                    if !(1..=2).contains(&stop_bits) {
                        v.err(
                            b.stop_bits.as_ref().unwrap(),
                            format!("{key}.stop_bits"),
                            "must be 1 or 2",
                        );
                    }
                    Some(Transport::Rtu(Serial {
                        path: PathBuf::from(path.get_ref()),
                        baud: b.baud.as_ref().map_or(9600, |d| *d.get_ref()),
                        parity,
                        data_bits,
                        stop_bits,
                    }))
                }
            },
            "rtu_over_tcp" => match &b.address {
                None => {
                    v.err(&b.transport, format!("{key}.address"), "an RTU-over-TCP bus needs `address` (host:port of the serial device server)");
                    None
                }
                Some(a) => parse_addr(v, a, &format!("{key}.address")).map(Transport::RtuOverTcp),
            },
            "tcp" => match &b.address {
                None => {
                    v.err(
                        &b.transport,
                        format!("{key}.address"),
                        "a TCP bus needs `address` (host:port)",
                    );
                    None
                }
                Some(a) => parse_addr(v, a, &format!("{key}.address")).map(Transport::Tcp),
            },
            other => {
                v.err(
                    &b.transport,
                    format!("{key}.transport"),
                    format!("transport `{other}`: expected rtu, rtu_over_tcp or tcp"),
                );
                None
            }
        };
        if let Some(transport) = transport {
            bus_index.insert(b.id.get_ref().clone(), buses.len());
            buses.push(Bus {
                id: b.id.get_ref().clone(),
                transport,
                devices: Vec::new(),
            });
        }
    }
    let profiles = all_profiles(v, raw);
    let mut seen_meters: HashMap<String, String> = HashMap::new();
    for (i, d) in raw.devices.iter().enumerate() {
        let key = format!("modbus.devices[{i}]");
        let Some(meter) = meters.iter().find(|m| &m.id == d.meter.get_ref()) else {
            v.err(
                &d.meter,
                format!("{key}.meter"),
                format!(
                    "unknown meter `{}`: no [[meters]] has this id",
                    d.meter.get_ref()
                ),
            );
            continue;
        };
        if let Some(first) = seen_meters.insert(meter.id.clone(), key.clone()) {
            v.err(
                &d.meter,
                format!("{key}.meter"),
                format!("meter `{}` is already polled by {first}", meter.id),
            );
        }
        let bus = match (&d.bus, &d.tcp) {
            (Some(b), None) => match bus_index.get(b.get_ref()) {
                Some(i) => Some(*i),
                None => {
                    v.err(
                        b,
                        format!("{key}.bus"),
                        format!(
                            "unknown bus `{}`: no [[modbus.buses]] has this id",
                            b.get_ref()
                        ),
                    );
                    None
                }
            },
            (None, Some(addr)) => parse_addr(v, addr, &format!("{key}.tcp")).map(|a| {
                let id = format!("tcp://{a}");
                *bus_index.entry(id.clone()).or_insert_with(|| {
                    buses.push(Bus {
                        id,
                        transport: Transport::Tcp(a),
                        devices: Vec::new(),
                    });
                    buses.len() - 1
                })
            }),
            (Some(b), Some(_)) => {
                v.err(b, format!("{key}.bus"), "give `bus` or `tcp`, not both");
                None
            }
            (None, None) => {
                v.err(
                    &d.meter,
                    format!("{key}.bus"),
                    "a device needs `bus` (a [[modbus.buses]] id) or `tcp` (host:port)",
                );
                None
            }
        };
        let device = device(v, d, meter, &key, &profiles);
        if let (Some(bus), Some(device)) = (bus, device) {
            let b = &mut buses[bus];
            if let Some(other) = b.devices.iter().find(|o| o.unit_id == device.unit_id) {
                let msg = format!(
                    "unit id {} is already used on bus `{}` by meter `{}`",
                    device.unit_id, b.id, other.meter
                );
                match &d.unit_id {
                    Some(u) => v.err(u, format!("{key}.unit_id"), msg),
                    None => v.err(&d.meter, format!("{key}.unit_id"), msg),
                }
            }
            b.devices.push(std::sync::Arc::new(device));
        }
    }
    buses.retain(|b| !b.devices.is_empty());
    ModbusConfig { buses }
}

fn device(
    v: &mut Validator<'_>,
    d: &RawDevice,
    meter: &Meter,
    key: &str,
    profiles: &HashMap<String, Profile>,
) -> Option<Device> {
    let before = v.error_count();
    let unit_id = d.unit_id.as_ref().map_or(1, |u| *u.get_ref());
    if unit_id == 0 || unit_id > 247 {
        v.err(
            d.unit_id.as_ref().unwrap(),
            format!("{key}.unit_id"),
            "must be 1 to 247 (0 is broadcast)",
        );
    }
    let poll_interval_ms = d.poll_interval_ms.as_ref().map_or(1000, |p| *p.get_ref());
    if !(100..=86_400_000).contains(&poll_interval_ms) {
        v.err(
            d.poll_interval_ms.as_ref().unwrap(),
            format!("{key}.poll_interval_ms"),
            "must be 100 ms to 1 day",
        );
    }
    let timeout_ms = d.timeout_ms.as_ref().map_or(1000, |p| *p.get_ref());
    if timeout_ms == 0 || timeout_ms > 60_000 {
        v.err(
            d.timeout_ms.as_ref().unwrap(),
            format!("{key}.timeout_ms"),
            "must be 1 to 60000",
        );
    }
    let retries = d.retries.as_ref().map_or(1, |r| *r.get_ref());
    if retries > 10 {
        v.err(
            d.retries.as_ref().unwrap(),
            format!("{key}.retries"),
            "at most 10",
        );
    }
    let max_per_request = d
        .max_registers_per_request
        .as_ref()
        .map_or(125, |m| *m.get_ref());
    if max_per_request == 0 || max_per_request > 125 {
        v.err(
            d.max_registers_per_request.as_ref().unwrap(),
            format!("{key}.max_registers_per_request"),
            "must be 1 to 125",
        );
    }
    let limits = Limits {
        max_per_request,
        max_gap: d.max_gap_registers.as_ref().map_or(10, |m| *m.get_ref()),
        single: d
            .single_register_requests
            .as_ref()
            .is_some_and(|s| *s.get_ref()),
    };
    let ct = d
        .ct_ratio
        .as_ref()
        .and_then(|r| v.positive(r, &format!("{key}.ct_ratio")))
        .unwrap_or(1.0);
    let pt = d
        .pt_ratio
        .as_ref()
        .and_then(|r| v.positive(r, &format!("{key}.pt_ratio")))
        .unwrap_or(1.0);
    let apply_ratios = d.apply_ratios.as_ref().is_some_and(|a| *a.get_ref());
    let multiplier = |r: Ratio| {
        if !apply_ratios {
            return 1.0;
        }
        match r {
            Ratio::None => 1.0,
            Ratio::Ct => ct,
            Ratio::Pt => pt,
            Ratio::CtPt => ct * pt,
        }
    };
    let function_override = d.function.as_ref().and_then(|f| {
        let parsed = Function::parse(f.get_ref());
        if parsed.is_none() {
            v.err(
                f,
                format!("{key}.function"),
                format!(
                    "function `{}`: expected holding, input, coil or discrete_input",
                    f.get_ref()
                ),
            );
        }
        parsed
    });
    let mut points: Vec<Point> = Vec::new();
    let channel_unit = |name: &str| meter.channels.iter().find(|c| c.id == name).map(|c| c.unit);
    let check_channel = |v: &mut Validator<'_>, at: &S<String>, ckey: String, unit: Unit| -> bool {
        match channel_unit(at.get_ref()) {
            None => {
                v.err(
                    at,
                    ckey,
                    format!("meter `{}` has no channel `{}`", meter.id, at.get_ref()),
                );
                false
            }
            Some(cu) if cu.dimension != unit.dimension => {
                v.err(
                    at,
                    ckey,
                    format!(
                        "the register's unit {unit} ({}) does not fit channel `{}` in {cu} ({})",
                        unit.dimension,
                        at.get_ref(),
                        cu.dimension
                    ),
                );
                false
            }
            Some(_) => true,
        }
    };
    if let Some(name) = &d.profile {
        match profiles.get(name.get_ref()) {
            None => {
                let mut names: Vec<_> = profiles.keys().map(|n| n.as_str()).collect();
                names.sort();
                v.err(
                    name,
                    format!("{key}.profile"),
                    format!(
                        "unknown profile `{}`: known profiles are {}",
                        name.get_ref(),
                        names.join(", ")
                    ),
                );
            }
            Some(p) => {
                // Without `channels`, every meter channel named like a profile point reads it.
                let by_name: BTreeMap<String, S<String>> = meter
                    .channels
                    .iter()
                    .filter(|c| p.points.contains_key(&c.id))
                    .map(|c| (c.id.clone(), S::new(name.span(), c.id.clone())))
                    .collect();
                let mapping = if d.channels.is_empty() {
                    &by_name
                } else {
                    &d.channels
                };
                if mapping.is_empty() {
                    let names: Vec<_> = p.points.keys().map(|k| k.as_str()).collect();
                    v.err(
                        name,
                        format!("{key}.channels"),
                        format!(
                            "no channel of meter `{}` is named after a point of profile `{}` ({}): name them so, or map them with channels = {{ import = \"import_kwh\" }}",
                            meter.id,
                            p.name,
                            names.join(", ")
                        ),
                    );
                }
                for (channel, point_name) in mapping {
                    let ckey = format!("{key}.channels.{channel}");
                    let Some(pp) = p.points.get(point_name.get_ref()) else {
                        let names: Vec<_> = p.points.keys().map(|k| k.as_str()).collect();
                        v.err(
                            point_name,
                            ckey,
                            format!(
                                "profile `{}` has no point `{}`: it has {}",
                                p.name,
                                point_name.get_ref(),
                                names.join(", ")
                            ),
                        );
                        continue;
                    };
                    let at = S::new(point_name.span(), channel.clone());
                    if !check_channel(v, &at, ckey, pp.unit) {
                        continue;
                    }
                    points.push(Point {
                        channel: channel.clone(),
                        span: Span {
                            function: function_override.unwrap_or(pp.function),
                            address: pp.address,
                            width: pp.data_type.width(),
                        },
                        data_type: pp.data_type,
                        word_order: pp.word_order,
                        scale: pp.scale,
                        offset: 0.0,
                        multiplier: multiplier(pp.ratio),
                        unit: pp.unit,
                        min: None,
                        max: None,
                    });
                }
            }
        }
    } else if !d.channels.is_empty() {
        let (_, first) = d.channels.iter().next().unwrap();
        v.err(
            first,
            format!("{key}.channels"),
            "`channels` maps to profile points: give `profile`, or use [[registers]]",
        );
    }
    for (j, r) in d.registers.iter().enumerate() {
        let rkey = format!("{key}.registers[{j}]");
        let Some(function) = Function::parse(r.function.get_ref()) else {
            v.err(
                &r.function,
                format!("{rkey}.function"),
                format!(
                    "function `{}`: expected holding, input, coil or discrete_input",
                    r.function.get_ref()
                ),
            );
            continue;
        };
        let base = *r.address_base.get_ref();
        if base > 1 {
            v.err(&r.address_base, format!("{rkey}.address_base"), "must be 0 (address as on the wire) or 1 (documented register number counted from 1)");
            continue;
        }
        let Some(address) = r
            .address
            .get_ref()
            .checked_sub(base as u32)
            .and_then(|a| u16::try_from(a).ok())
        else {
            v.err(
                &r.address,
                format!("{rkey}.address"),
                format!(
                    "address {} with address_base {base} is outside 0-65535 on the wire",
                    r.address.get_ref()
                ),
            );
            continue;
        };
        let Some(data_type) = DataType::parse(r.data_type.get_ref()) else {
            let names: Vec<_> = DataType::NAMES.iter().map(|(n, _)| *n).collect();
            v.err(
                &r.data_type,
                format!("{rkey}.type"),
                format!(
                    "type `{}`: expected one of {}",
                    r.data_type.get_ref(),
                    names.join(", ")
                ),
            );
            continue;
        };
        let is_bit = matches!(function, Function::Coil | Function::DiscreteInput);
        if is_bit != (data_type == DataType::Bool) {
            v.err(
                &r.data_type,
                format!("{rkey}.type"),
                "coils and discrete inputs are `bool`; registers are not",
            );
            continue;
        }
        if address as u32 + data_type.width() as u32 > 65_536 {
            v.err(
                &r.address,
                format!("{rkey}.address"),
                "the value runs past register 65535",
            );
            continue;
        }
        let word_order = match &r.word_order {
            None => WordOrder::Abcd,
            Some(w) => match WordOrder::parse(w.get_ref()) {
                Some(o) => o,
                None => {
                    v.err(
                        w,
                        format!("{rkey}.word_order"),
                        format!(
                            "word order `{}`: expected ABCD, CDAB, BADC or DCBA",
                            w.get_ref()
                        ),
                    );
                    continue;
                }
            },
        };
        let Some(unit) = Unit::parse(r.unit.get_ref()) else {
            v.err(
                &r.unit,
                format!("{rkey}.unit"),
                format!("unknown unit `{}`", r.unit.get_ref()),
            );
            continue;
        };
        let ratio = match &r.ratio {
            None => Ratio::None,
            Some(x) => match Ratio::parse(x.get_ref()) {
                Some(x) => x,
                None => {
                    v.err(x, format!("{rkey}.ratio"), "expected none, ct, pt or ct_pt");
                    continue;
                }
            },
        };
        if !check_channel(v, &r.channel, format!("{rkey}.channel"), unit) {
            continue;
        }
        let finite = |v: &mut Validator<'_>, x: &Option<S<f64>>, k: &str| -> Option<f64> {
            let s = x.as_ref()?;
            if s.get_ref().is_finite() {
                Some(*s.get_ref())
            } else {
                v.err(s, format!("{rkey}.{k}"), "must be a finite number");
                None
            }
        };
        let scale = finite(v, &r.scale, "scale").unwrap_or(1.0);
        let offset = finite(v, &r.offset, "offset").unwrap_or(0.0);
        let min = finite(v, &r.min, "min");
        let max = finite(v, &r.max, "max");
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                v.err(
                    r.min.as_ref().unwrap(),
                    format!("{rkey}.min"),
                    format!("min {lo} is above max {hi}"),
                );
            }
        }
        points.push(Point {
            channel: r.channel.get_ref().clone(),
            span: Span {
                function,
                address,
                width: data_type.width(),
            },
            data_type,
            word_order,
            scale,
            offset,
            multiplier: multiplier(ratio),
            unit,
            min,
            max,
        });
    }
    let mut seen = HashMap::new();
    for p in &points {
        if seen.insert(p.channel.clone(), ()).is_some() {
            v.err(
                &d.meter,
                key.to_string(),
                format!("channel `{}` is read from two registers", p.channel),
            );
        }
    }
    // Two values sharing a register (a float32 at input 72 and another at 73) decode garbage
    // from one of them: a typo in an address, never a layout a meter has.
    let mut by_start: Vec<&Point> = points.iter().collect();
    by_start.sort_by_key(|p| (p.span.function.name(), p.span.address));
    for pair in by_start.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.span.function == b.span.function
            && (a.span.address as u32 + a.span.width as u32) > b.span.address as u32
        {
            v.err(
                &d.meter,
                key.to_string(),
                format!(
                    "channels `{}` ({} registers {}-{}) and `{}` ({} registers {}-{}) overlap: check their addresses against the meter's register map",
                    a.channel,
                    a.span.function.name(),
                    a.span.address,
                    a.span.address as u32 + a.span.width as u32 - 1,
                    b.channel,
                    b.span.function.name(),
                    b.span.address,
                    b.span.address as u32 + b.span.width as u32 - 1,
                ),
            );
        }
    }
    if points.is_empty() && v.error_count() == before {
        v.err(
            &d.meter,
            key.to_string(),
            "the device reads nothing: give `profile` with `channels`, or [[registers]]",
        );
    }
    (v.error_count() == before).then_some(Device {
        meter: meter.id.clone(),
        unit_id,
        poll_interval_ms,
        timeout_ms,
        retries,
        limits,
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_parses_and_names_its_source() {
        for (name, text) in PROFILES {
            let p = parse_profile(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&p.name, name);
            assert!(p.source.len() > 20, "{name} needs a source");
            assert!(!p.description.is_empty());
            assert!(p.points.contains_key("import_kwh"), "{name}");
        }
        let dtsu = profile("chint-dtsu666").unwrap();
        assert_eq!(dtsu.points["import_kwh"].address, 0x101E);
        assert_eq!(dtsu.points["power_total_w"].scale, 0.1);
        let sdm = profile("eastron-sdm630").unwrap();
        assert_eq!(sdm.points["import_kwh"].function, Function::Input);
    }
}
