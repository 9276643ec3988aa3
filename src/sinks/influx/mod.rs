//! InfluxDB v2 sink: line protocol through a durable outbox to `/api/v2/write`.
//!
//! The pipeline side ([`InfluxOutput`]) encodes each committed batch (its readings and the new
//! totals of every window it touched) and appends it to the outbox inside the store's commit, so
//! the store and the outbox always agree on what was accounted. The delivery side
//! ([`sender::run`]) reads the outbox in order, sends batches of up to `batch_lines` lines, and
//! removes them only after a 204. See docs/schema.md for what is written and how failures are
//! handled.

pub mod coalesce;
pub mod config;
pub mod line_protocol;
pub mod metrics;
pub mod schema;
pub mod sender;

use crate::accounting::ledger::{Accountant, AggKey, Batch};
use crate::accounting::metric::Sums;
use crate::sinks::outbox::{Outbox, OutboxError};
use crate::sinks::store::{CommitHook, StoreError};
use schema::Encoder;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The pipeline's end of the InfluxDB sink.
#[derive(Debug)]
pub struct InfluxOutput {
    encoder: Encoder,
    outbox: Arc<Outbox>,
    batch_lines: usize,
    /// Records stay well under the outbox's cap, so one always fits once the sink catches up.
    max_record_bytes: usize,
    buf: Vec<u8>,
    line_ends: Vec<usize>,
    next_seq: u64,
    now_ms: i64,
    shutdown: Arc<AtomicBool>,
}

impl InfluxOutput {
    pub fn new(
        encoder: Encoder,
        outbox: Arc<Outbox>,
        batch_lines: u32,
        shutdown: Arc<AtomicBool>,
    ) -> InfluxOutput {
        let next_seq = outbox.committed_seq() + 1;
        let cfg = outbox.config();
        let max_record_bytes = (cfg.max_bytes / 4).min(cfg.segment_bytes).max(4096) as usize;
        InfluxOutput {
            max_record_bytes,
            encoder,
            outbox,
            batch_lines: batch_lines.max(1) as usize,
            buf: Vec::new(),
            line_ends: Vec::new(),
            next_seq,
            now_ms: 0,
            shutdown,
        }
    }

    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Before a commit: `now_ms` is the accounting's clock, for the derived figures' periods.
    pub fn begin(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
        self.buf.clear();
        self.line_ends.clear();
    }

    /// The store committed: what was appended becomes deliverable.
    pub fn committed(&mut self) {
        self.outbox.commit(self.next_seq);
        self.next_seq += 1;
        self.buf.clear();
        self.line_ends.clear();
    }

    /// The store commit failed: take back what was appended for it.
    pub fn rolled_back(&mut self) -> Result<(), OutboxError> {
        self.buf.clear();
        self.line_ends.clear();
        self.outbox.rollback()
    }
}

impl crate::sinks::store::CommitSink for InfluxOutput {
    fn begin(&mut self, now_ms: i64) {
        InfluxOutput::begin(self, now_ms);
    }

    fn committed(&mut self) {
        InfluxOutput::committed(self);
    }

    fn rolled_back(&mut self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(InfluxOutput::rolled_back(self)?)
    }

    fn as_hook(&mut self) -> &mut dyn CommitHook {
        self
    }
}

/// Why the InfluxDB sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// Builds the InfluxDB sink: opens its outbox (cutting records `store` never committed),
/// registers its metrics, and returns the pipeline's end and the outbox the sender delivers
/// from.
pub fn build(
    ic: &config::InfluxConfig,
    core: Arc<crate::config::Config>,
    store: &crate::sinks::store::Store,
    metrics: &crate::metrics::Metrics,
    shutdown: Arc<AtomicBool>,
) -> Result<(InfluxOutput, Arc<Outbox>), BuildError> {
    let (outbox, report) = Outbox::open_for_store(
        ic.outbox.clone(),
        &store.store_id()?,
        store.path(),
        store.committed_seq()?,
    )?;
    tracing::info!(
        dir = %ic.outbox.dir.display(),
        pending_records = report.pending_records,
        pending_lines = report.pending_lines,
        torn_bytes = report.torn_bytes,
        uncommitted_records = report.uncommitted_records,
        "outbox opened"
    );
    let m = metrics.component(self::metrics::InfluxMetrics::register);
    let outbox = Arc::new(outbox);
    m.observe_outbox(&outbox);
    let encoder = schema::Encoder::new(core, &ic.windows, ic.readings);
    let output = InfluxOutput::new(encoder, outbox.clone(), ic.batch_lines, shutdown);
    Ok((output, outbox))
}

impl CommitHook for InfluxOutput {
    fn total(&mut self, key: &AggKey, total: &Sums, delta: &Sums) {
        if self
            .encoder
            .window(&mut self.buf, key, total, delta, self.now_ms)
        {
            self.line_ends.push(self.buf.len());
        }
    }

    fn window_floor_ms(
        &self,
        entity: crate::accounting::Entity,
        window: crate::accounting::window::WindowKind,
    ) -> Option<i64> {
        self.encoder.window_floor_ms(entity, window, self.now_ms)
    }

    fn before_commit(
        &mut self,
        _acct: &Accountant,
        batch: &Batch,
        already_stored: &[usize],
    ) -> Result<u64, StoreError> {
        if self.encoder.writes_readings() {
            let mut skip = already_stored.iter().peekable();
            for (i, a) in batch.accepted.iter().enumerate() {
                if skip.next_if_eq(&&i).is_some() {
                    continue;
                }
                self.encoder.reading(&mut self.buf, a);
                self.line_ends.push(self.buf.len());
            }
        }
        let seq = self.next_seq;
        let (mut start, mut first_line) = (0usize, 0usize);
        for (i, &end) in self.line_ends.iter().enumerate() {
            let lines = i + 1 - first_line;
            let last = i + 1 == self.line_ends.len();
            let next_too_big = self
                .line_ends
                .get(i + 1)
                .is_some_and(|&next| next - start > self.max_record_bytes);
            if last || lines >= self.batch_lines || next_too_big {
                self.outbox
                    .append(seq, lines as u32, &self.buf[start..end], &self.shutdown)
                    .map_err(|e| StoreError::Sink(e.to_string()))?;
                start = end;
                first_line = i + 1;
            }
        }
        Ok(seq)
    }
}
