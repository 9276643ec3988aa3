//! The `[dlt645]` section: lines (an RS-485 port, or a transparent serial server over TCP) and
//! the meters on them.
//!
//! ```toml
//! [[dlt645.lines]]
//! id = "line2"
//! tcp = "192.0.2.20:8899"        # a transparent serial-to-TCP server; or device = "/dev/ttyUSB1"
//! baud = 2400                    # serial only: 1200, 2400 (default), 4800, 9600, 19200; 8E1
//!
//! [[dlt645.meters]]
//! meter = "dyeing-main"          # the configured meter this one feeds
//! line = "line2"
//! address = "202208310002"       # the 12 digits on the nameplate
//! edition = "2007"               # or "1997"
//! channels = { import = "forward_active_total", import_t4 = "forward_active_tariff4" }
//! ```

use super::data::{self, Quantity};
use super::frame::{Address, Edition};
use crate::config::raw::S;
use crate::config::{Meter, Validator};
use crate::units::Unit;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDlt645 {
    #[serde(default)]
    pub lines: Vec<RawLine>,
    #[serde(default)]
    pub meters: Vec<RawMeter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLine {
    pub id: S<String>,
    pub tcp: Option<S<String>>,
    pub device: Option<S<String>>,
    pub baud: Option<S<u32>>,
    pub parity: Option<S<String>>,
    pub timeout_ms: Option<S<u64>>,
    /// Quiet time between a reply and the next request on the line.
    pub gap_ms: Option<S<u64>>,
    /// Send four FE before each request (older meters need them to wake).
    pub wake_up: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMeter {
    pub meter: S<String>,
    pub line: S<String>,
    pub address: S<String>,
    pub edition: Option<S<String>>,
    pub poll_interval_ms: Option<S<u64>>,
    #[serde(default)]
    pub channels: BTreeMap<String, S<String>>,
}

/// Serial settings: DL/T 645 lines run 8 data bits, even parity, 1 stop bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serial {
    pub path: PathBuf,
    pub baud: u32,
    pub parity: Parity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    Even,
    None,
    Odd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A transparent serial server: the frames travel as they are over TCP.
    Tcp(SocketAddr),
    Serial(Serial),
}

impl Transport {
    pub fn describe(&self) -> String {
        match self {
            Transport::Tcp(a) => format!("tcp {a}"),
            Transport::Serial(s) => format!("serial {} {} baud", s.path.display(), s.baud),
        }
    }
}

/// One meter channel fed by one quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub channel: String,
    pub quantity: &'static Quantity,
    /// The identifier as printed, and the format, for this meter's edition.
    pub di: Vec<u8>,
    pub format: data::Format,
    pub unit: Unit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MeterConfig {
    pub meter: String,
    pub address: Address,
    pub edition: Edition,
    pub poll_interval_ms: u64,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub id: String,
    pub transport: Transport,
    pub timeout_ms: u64,
    pub gap_ms: u64,
    pub wake_up: bool,
    pub meters: Vec<MeterConfig>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dlt645Config {
    pub lines: Vec<Line>,
}

impl Dlt645Config {
    pub fn meter_count(&self) -> usize {
        self.lines.iter().map(|l| l.meters.len()).sum()
    }
}

/// A meter on a busy line answers within a second; 1.5 s leaves room for a slow gateway.
const DEFAULT_TIMEOUT_MS: u64 = 1500;
const DEFAULT_POLL_MS: u64 = 5000;
/// Quiet time between frames: at 2400 baud a byte takes 4.6 ms, and meters want a few bytes'
/// silence before they listen again.
const DEFAULT_GAP_MS: u64 = 20;
const BAUDS: &[u32] = &[1200, 2400, 4800, 9600, 19200];

/// Validates the `[dlt645]` section against the configured meters.
pub fn validate(v: &mut Validator<'_>, raw: &RawDlt645, meters: &[Meter]) -> Dlt645Config {
    let mut lines: Vec<Line> = Vec::new();
    let mut line_index: HashMap<String, usize> = HashMap::new();
    for (i, l) in raw.lines.iter().enumerate() {
        let key = format!("dlt645.lines[{i}]");
        if line_index.contains_key(l.id.get_ref()) {
            v.err(
                &l.id,
                format!("{key}.id"),
                format!("line `{}` is defined twice", l.id.get_ref()),
            );
            continue;
        }
        let transport = match (&l.tcp, &l.device) {
            (Some(addr), None) => match addr.get_ref().parse::<SocketAddr>() {
                Ok(a) => Some(Transport::Tcp(a)),
                Err(e) => {
                    v.err(
                        addr,
                        format!("{key}.tcp"),
                        format!("`{}` is not host:port ({e})", addr.get_ref()),
                    );
                    None
                }
            },
            (None, Some(dev)) => {
                let baud = l.baud.as_ref().map_or(2400, |b| *b.get_ref());
                if let Some(b) = &l.baud {
                    if !BAUDS.contains(b.get_ref()) {
                        v.err(
                            b,
                            format!("{key}.baud"),
                            format!(
                                "{} is not a DL/T 645 rate: 1200, 2400, 4800, 9600 or 19200",
                                b.get_ref()
                            ),
                        );
                    }
                }
                let parity = match l.parity.as_ref().map(|p| p.get_ref().as_str()) {
                    None | Some("even") => Parity::Even,
                    Some("none") => Parity::None,
                    Some("odd") => Parity::Odd,
                    Some(other) => {
                        v.err(
                            l.parity.as_ref().unwrap_or(dev),
                            format!("{key}.parity"),
                            format!("`{other}`: even (the standard's), none or odd"),
                        );
                        Parity::Even
                    }
                };
                Some(Transport::Serial(Serial {
                    path: v.relative_to_config(dev.get_ref()),
                    baud,
                    parity,
                }))
            }
            (Some(addr), Some(_)) => {
                v.err(addr, format!("{key}.tcp"), "give tcp or device, not both");
                None
            }
            (None, None) => {
                v.err(
                    &l.id,
                    key.clone(),
                    "give tcp = \"host:port\" (a serial server) or device = \"/dev/ttyUSB0\"",
                );
                None
            }
        };
        if l.tcp.is_some() && (l.baud.is_some() || l.parity.is_some()) {
            v.err(
                &l.id,
                key.clone(),
                "baud and parity are set on the serial server itself, not here",
            );
        }
        let timeout_ms = l
            .timeout_ms
            .as_ref()
            .map_or(DEFAULT_TIMEOUT_MS, |t| *t.get_ref());
        if let Some(t) = &l.timeout_ms {
            if !(50..=30_000).contains(t.get_ref()) {
                v.err(t, format!("{key}.timeout_ms"), "between 50 and 30000 ms");
            }
        }
        let gap_ms = l.gap_ms.as_ref().map_or(DEFAULT_GAP_MS, |t| *t.get_ref());
        if gap_ms > 5000 {
            if let Some(g) = &l.gap_ms {
                v.err(g, format!("{key}.gap_ms"), "at most 5000 ms");
            }
        }
        if let Some(transport) = transport {
            line_index.insert(l.id.get_ref().clone(), lines.len());
            lines.push(Line {
                id: l.id.get_ref().clone(),
                transport,
                timeout_ms,
                gap_ms,
                wake_up: l.wake_up.as_ref().is_none_or(|w| *w.get_ref()),
                meters: Vec::new(),
            });
        }
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut addresses: HashMap<(String, Address), String> = HashMap::new();
    let mut line_shards = crate::config::shard::LineShards::default();
    for (i, m) in raw.meters.iter().enumerate() {
        let key = format!("dlt645.meters[{i}]");
        let Some(meter) = meters.iter().find(|x| &x.id == m.meter.get_ref()) else {
            v.err(
                &m.meter,
                format!("{key}.meter"),
                format!(
                    "unknown meter `{}`: no [[meters]] has this id",
                    m.meter.get_ref()
                ),
            );
            continue;
        };
        if let Some(first) = seen.insert(meter.id.clone(), key.clone()) {
            v.err(
                &m.meter,
                format!("{key}.meter"),
                format!("meter `{}` is already read by {first}", meter.id),
            );
            continue;
        }
        let Some(&li) = line_index.get(m.line.get_ref()) else {
            v.err(
                &m.line,
                format!("{key}.line"),
                format!("no [[dlt645.lines]] has id `{}`", m.line.get_ref()),
            );
            continue;
        };
        let address = match Address::parse(m.address.get_ref()) {
            Ok(a) if a != Address::WILDCARD => a,
            Ok(_) => {
                v.err(
                    &m.address,
                    format!("{key}.address"),
                    "the wildcard address reads whichever meter answers: give the meter's own",
                );
                continue;
            }
            Err(e) => {
                v.err(&m.address, format!("{key}.address"), e.to_string());
                continue;
            }
        };
        if let Some(other) = addresses.insert((m.line.get_ref().clone(), address), key.clone()) {
            v.err(
                &m.address,
                format!("{key}.address"),
                format!("address {address} is also {other}'s on this line"),
            );
        }
        let edition = match m.edition.as_ref().map(|e| e.get_ref().as_str()) {
            None | Some("2007") => Edition::Y2007,
            Some("1997") => Edition::Y1997,
            Some(other) => {
                v.err(
                    m.edition.as_ref().unwrap_or(&m.meter),
                    format!("{key}.edition"),
                    format!("`{other}`: 2007 or 1997"),
                );
                continue;
            }
        };
        let poll_interval_ms = m
            .poll_interval_ms
            .as_ref()
            .map_or(DEFAULT_POLL_MS, |p| *p.get_ref());
        if let Some(p) = &m.poll_interval_ms {
            if *p.get_ref() < 200 {
                v.err(p, format!("{key}.poll_interval_ms"), "at least 200 ms");
            }
        }
        if m.channels.is_empty() {
            v.err(&m.meter, format!("{key}.channels"), "map at least one of the meter's channels to a quantity, e.g. channels = { import = \"forward_active_total\" }");
        }
        let mut points = Vec::new();
        for (channel, name) in &m.channels {
            let ckey = format!("{key}.channels.{channel}");
            let Some(q) = data::quantity(name.get_ref()) else {
                let known: Vec<&str> = data::QUANTITIES.iter().map(|q| q.name).collect();
                v.err(
                    name,
                    ckey,
                    format!(
                        "unknown quantity `{}`; known: {}",
                        name.get_ref(),
                        known.join(", ")
                    ),
                );
                continue;
            };
            let Some((di, format)) = data::identifier(q, edition) else {
                v.err(
                    name,
                    ckey,
                    format!("DL/T 645-1997 has no identifier for `{}`", q.name),
                );
                continue;
            };
            let unit = Unit::parse(q.unit).expect("every quantity's unit is known (tested)");
            match meter.channels.iter().find(|c| &c.id == channel) {
                None => v.err(
                    name,
                    ckey,
                    format!("meter `{}` has no channel `{channel}`", meter.id),
                ),
                Some(c) if c.unit.dimension != unit.dimension => v.err(
                    name,
                    ckey,
                    format!(
                        "`{}` is in {unit} ({}), channel `{channel}` in {} ({})",
                        q.name, unit.dimension, c.unit, c.unit.dimension
                    ),
                ),
                Some(_) => points.push(Point {
                    channel: channel.clone(),
                    quantity: q,
                    di,
                    format,
                    unit,
                }),
            }
        }
        if let Some(msg) = line_shards.check(m.line.get_ref(), meter) {
            v.err(&m.meter, format!("{key}.meter"), msg);
        }
        lines[li].meters.push(MeterConfig {
            meter: meter.id.clone(),
            address,
            edition,
            poll_interval_ms,
            points,
        });
    }
    // A line no meter uses is not opened; said, since it is probably a typo in a meter's `line`.
    for l in lines.iter().filter(|l| l.meters.is_empty()) {
        if let Some(raw_line) = raw.lines.iter().find(|r| r.id.get_ref() == &l.id) {
            v.warn(
                &raw_line.id,
                "dlt645.lines",
                format!("line `{}` has no [[dlt645.meters]]: it is not opened", l.id),
            );
        }
    }
    lines.retain(|l| !l.meters.is_empty());
    Dlt645Config { lines }
}
