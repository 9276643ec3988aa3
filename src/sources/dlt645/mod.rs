//! DL/T 645 source: the meters most Chinese factories have, read over RS-485 or through a
//! transparent serial-to-TCP server, in the 2007 edition (and 1997 for older meters).
//!
//! Layers, one per file: `frame` (the frame codec, I/O-free), `data` (identifiers, formats,
//! values, I/O-free), `config` (the `[dlt645]` section), `poller` (one task per line: one request
//! in flight, failing meters only in the line's slack), `health` (meter health in the shared
//! terms, and the source's metrics), `sim` (a simulated meter line for tests and the demo),
//! `source` (what the registry sees).

pub mod config;
pub mod data;
pub mod frame;
pub mod health;
pub mod poller;
pub mod sim;
pub mod source;
