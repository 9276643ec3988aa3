//! Sources: where readings come from. Each source turns its protocol's values into
//! [`crate::reading::Reading`]s and sends them to the pipeline in
//! [`crate::pipeline::Envelope`]s; nothing of the protocol crosses that line.
//!
//! The Modbus (`modbus`) and MQTT (`mqtt`) sources live in their own folders; `replay` (a file of
//! historical readings) is the batch source in `crate::replay`.

pub mod health;
pub mod modbus;
pub mod mqtt;

use crate::pipeline::Envelope;
use tokio::sync::{mpsc, watch};

/// What every running source is given.
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub output: mpsc::Sender<Envelope>,
    /// Turns `true` when the daemon is shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Stamps readings that carry no time of their own.
    pub clock: crate::util::Clock,
}
