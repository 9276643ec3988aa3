//! Modbus source: TCP, RTU on RS-485 lines, and RTU over TCP through serial device servers.
//!
//! Layers, one per file: `config` (buses, devices, points, shipped profiles), `decode` (types and
//! word orders), `plan` (coalescing points into requests), `transport` (opening a connection),
//! `poller` (one task per bus: scheduling, timeouts, reconnects, back-off, health). Nothing of
//! tokio-modbus leaves this folder: the pipeline sees only `Reading`s.

pub mod config;
pub mod decode;
pub mod metrics;
pub mod plan;
pub mod poller;
pub mod probe;
pub mod profiles;
pub mod reasons;
pub mod source;
pub mod transport;

pub use poller::{spawn, DeviceHealth, Health, ModbusSource};
