//! Sources: where readings come from. Each source turns its protocol's values into
//! [`crate::reading::Reading`]s and sends them to the pipeline in
//! [`crate::pipeline::Envelope`]s; nothing of the protocol crosses that line.
//!
//! Every live source is a folder (`modbus`, `mqtt`) with one implementation of [`SourceKind`]
//! and [`SourceConfig`], listed once in [`registry`]. The application (configuration, daemon,
//! `check`, `probe`, health and the status page) goes through the registry and names no source.
//! `replay` (a file of historical readings) is the batch source in `crate::replay`.

pub mod dlt645;
pub mod health;
pub mod modbus;
pub mod mqtt;
pub mod registry;

use crate::config::{Config, Validator};
use crate::metrics::http::{Check, Refresh};
use crate::metrics::Metrics;
use crate::pipeline::Envelope;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A source's own section of the file, `[name]`, as its raw type (its default when absent):
/// `section!(v, dlt645: RawDlt645)`. Other keys are left to their readers; a wrongly typed or
/// unknown key inside the section is recorded in `v`, located by file, line and key.
macro_rules! section {
    ($v:expr, $name:ident: $raw:ty) => {{
        #[derive(serde::Deserialize)]
        struct Section {
            #[serde(default)]
            $name: $raw,
        }
        $v.section::<Section>().map(|s| s.$name).unwrap_or_default()
    }};
}
pub(crate) use section;

/// What every running source is given.
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub output: mpsc::Sender<Envelope>,
    /// Turns `true` when the daemon is shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Stamps readings that carry no time of their own.
    pub clock: crate::util::Clock,
}

/// A kind of source: its section of the configuration file and the words of its health.
pub trait SourceKind: Sync {
    /// Its section's key in the configuration file, and its name in logs, in the `source` label
    /// of the meter health metrics and on the status page.
    fn name(&self) -> &'static str;

    /// Why its meters can be down, with their words (the status page shows them).
    fn reasons(&self) -> Vec<&'static health::Reason>;

    /// Reads and validates its section of the file (absent: nothing configured), with the park's
    /// meters; errors go to `v`, located.
    fn configure(
        &self,
        v: &mut Validator<'_>,
        meters: &[crate::config::Meter],
    ) -> Box<dyn SourceConfig>;

    /// `ecogate probe --<name> ADDRESS`: read a device at an address with a shipped profile, no
    /// configuration needed; `None` when this kind has no such probe.
    fn probe_address<'a>(&'a self, _target: &'a AddressProbe) -> Option<ProbeFuture<'a>> {
        None
    }
}

/// What `ecogate probe` is given to read a device without a configuration.
#[derive(Debug, Clone)]
pub struct AddressProbe {
    /// `host:port` of the device or its gateway.
    pub address: String,
    /// The device's address on its line (a Modbus unit id).
    pub unit: String,
    /// A shipped profile's name.
    pub profile: String,
    pub timeout_ms: u64,
}

/// A probe's run: whether the meter delivered.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<bool>> + 'a>>;

/// Where a probe prints what it reads, line by line.
pub type ProbeOutput<'a> = &'a mut dyn FnMut(String);

/// How to connect to a broker a source subscribes to: the options of a client whose id ends in
/// the given suffix (alerting publishes through it).
pub type BrokerOptions = Arc<
    dyn Fn(&str) -> Result<rumqttc::MqttOptions, Box<dyn std::error::Error + Send + Sync>>
        + Send
        + Sync,
>;

/// Why a source could not start; the cause is kept for the chain (`ecogate: starting the mqtt
/// source: TLS to the broker: cannot read ca.pem: No such file or directory`).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The OS refused a thread or a runtime.
    #[error("{what}")]
    Spawn {
        what: &'static str,
        #[source]
        cause: std::io::Error,
    },
    /// Started with nothing to run (a caller's mistake: the daemon starts enabled sources only).
    #[error("nothing to run: {0}")]
    Nothing(&'static str),
    /// Its settings cannot be used as they are (a TLS file, a serial port).
    #[error("{what}")]
    Setup {
        what: String,
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What every source's settings get for being `Clone + 'static`: written once here rather
/// than in each source.
pub trait SourceConfigBase {
    /// For tests and tools that know the concrete type.
    fn as_any(&self) -> &dyn std::any::Any;

    fn clone_box(&self) -> Box<dyn SourceConfig>;
}

impl<T: SourceConfig + Clone + 'static> SourceConfigBase for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn clone_box(&self) -> Box<dyn SourceConfig> {
        Box::new(self.clone())
    }
}

/// One source's validated settings, and how it runs.
pub trait SourceConfig: SourceConfigBase + std::fmt::Debug + Send + Sync {
    /// [`SourceKind::name`].
    fn kind(&self) -> &'static str;

    /// Whether it has anything to run (a device, a broker).
    fn enabled(&self) -> bool;

    /// The meters it reads.
    fn meters(&self) -> Vec<String>;

    /// Keeps only what reads meters for which `keep` holds: the instance runs one shard of a
    /// split park (docs/scale-out.md). Validation made sure that no line or device serves two
    /// shards, so what goes is wholly another instance's.
    fn retain_meters(&mut self, keep: &dyn Fn(&str) -> bool);

    /// What no two instances of a split park may share, whatever machine they run on (an MQTT
    /// client id: the broker would keep only one of them connected), as text for messages.
    fn identities(&self) -> Vec<String> {
        Vec::new()
    }

    /// Its settings and everything of the park it depends on, as text (secrets included: it
    /// never leaves memory); a reload restarts it only when this changed.
    fn fingerprint(&self, park: &Config, read_elsewhere: &[String]) -> String;

    /// For the log line at start: `modbus (3 devices)`.
    fn describe(&self) -> String;

    /// Its lines in `ecogate check`'s summary.
    fn summary(&self) -> Vec<String>;

    /// Starts its tasks.
    fn start(&self, start: Start) -> Result<Started, SourceError>;

    /// `ecogate probe --meter`: reads (or listens to) one of its meters and prints what came;
    /// `None` when it does not read that meter.
    fn probe<'a>(
        &'a self,
        park: &'a Config,
        meter: &'a str,
        listen: Duration,
        out: ProbeOutput<'a>,
    ) -> Option<ProbeFuture<'a>>;

    /// The broker it connects to, for others to publish on.
    fn broker_options(&self) -> Option<BrokerOptions> {
        None
    }
}

impl Clone for Box<dyn SourceConfig> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// What a source is started with.
pub struct Start {
    pub park: Arc<Config>,
    pub ctx: SourceContext,
    /// Where its metric families are registered (kept across a reload with the source).
    pub metrics: Arc<Metrics>,
    /// Meters other sources read: not expected here.
    pub read_elsewhere: Vec<String>,
}

/// A started source: its tasks, and what `/metrics`, the probes and the status page read of it.
pub struct Started {
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Run before each scrape.
    pub refresh: Vec<Refresh>,
    /// Readiness checks (`/ready`).
    pub checks: Vec<Check>,
    /// Its meters' health in the shared terms.
    pub health: Vec<health::Statuses>,
    /// What the status page warns about for it as a whole.
    pub notices: Vec<health::Notices>,
}
