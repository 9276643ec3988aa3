//! Replay: historical readings from a file, through the same pipeline as live data.
//!
//! Used to backfill a firm's meter exports and as the harness for accounting tests. Rows are
//! sorted by time before they are fed (exports are often grouped by meter), then committed in
//! batches. Every row that is refused, by the parser or by the accounting, is reported with its
//! line number and reason and counted.

pub mod csv;
pub mod line_protocol;
pub mod sort;
pub use crate::util::timestamp;

use crate::accounting::counter::Point;
use crate::accounting::ledger::{ChannelRef, Entity, EventKind};
use crate::accounting::metric::Sums;
use crate::accounting::window::WindowKind;
use crate::pipeline::Pipeline;
use crate::reading::Reading;
use crate::sinks::store::StoreError;
use std::collections::{BTreeMap, HashMap};

/// One reading and the input line it came from.
#[derive(Debug, Clone)]
pub struct InputRow {
    pub line: usize,
    pub reading: Reading,
}

/// A refused input row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub line: usize,
    pub reason: &'static str,
    pub message: String,
}

impl RowError {
    pub fn new(line: usize, reason: &'static str, message: String) -> Self {
        RowError {
            line,
            reason,
            message,
        }
    }
}

#[derive(Debug, Default)]
pub struct ReplaySummary {
    pub rows: usize,
    pub accepted: usize,
    /// Refused rows by reason (parser and accounting reasons together).
    pub rejected: BTreeMap<&'static str, usize>,
    /// Every refused row, in line order.
    pub rejections: Vec<RowError>,
    pub events: BTreeMap<&'static str, usize>,
    /// Sums over the whole replay per entity.
    pub totals: HashMap<Entity, Sums>,
    /// First and last accepted reading: the period the totals cover. A refused row dated
    /// months away does not stretch it.
    pub first_ts_ms: Option<i64>,
    pub last_ts_ms: Option<i64>,
    /// Every reading the counters held or discarded, and every jump left uncounted, in order.
    pub held: Vec<HeldReading>,
    /// Channels still holding a reading when the replay ended: energy awaiting a decision.
    pub pending_at_end: Vec<HeldReading>,
}

/// A reading whose value the counters did not count as it stood: for a person to look at.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldReading {
    pub kind: &'static str,
    pub meter: String,
    pub channel: String,
    pub ts_ms: i64,
    /// The high-water mark (or last accepted value) it was judged against, in base units.
    pub from_base: Option<f64>,
    /// The value held, in base units.
    pub to_base: f64,
    pub base_unit: &'static str,
}

impl ReplaySummary {
    pub fn rejected_total(&self) -> usize {
        self.rejected.values().sum()
    }

    pub fn total(&self, entity: Entity) -> Sums {
        self.totals.get(&entity).copied().unwrap_or_default()
    }
}

/// Rows per transaction: a larger batch shares each coarse window's upsert among more rows.
pub const BATCH: usize = 50_000;

/// Refused rows kept to print (those of the lowest lines); all are counted by reason.
pub const KEPT_REJECTIONS: usize = 10_000;

/// What can stop a replay: input it cannot read at all, its scratch files, the store.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Input(String),
    /// Sorting a large input spills runs to scratch files next to the store.
    #[error("sorting the input: scratch file {}: {cause}", path.display())]
    Scratch {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Feeds rows (in time order, in batches) through the pipeline and collects the summary.
pub struct Replay<'a> {
    pipeline: &'a mut Pipeline,
    summary: ReplaySummary,
    /// Each delta lands in exactly one window of every kind, so the largest kind's windows add
    /// up to the replay's totals.
    total_window: WindowKind,
}

impl<'a> Replay<'a> {
    pub fn new(pipeline: &'a mut Pipeline) -> Replay<'a> {
        let total_window = pipeline
            .config_windows()
            .last()
            .copied()
            .unwrap_or(WindowKind::Year);
        Replay {
            pipeline,
            summary: ReplaySummary::default(),
            total_window,
        }
    }

    /// A row the parser refused.
    pub fn parse_error(&mut self, e: RowError) {
        self.summary.rows += 1;
        *self.summary.rejected.entry(e.reason).or_default() += 1;
        self.keep_rejection(e);
    }

    fn keep_rejection(&mut self, e: RowError) {
        let kept = &mut self.summary.rejections;
        kept.push(e);
        if kept.len() >= 2 * KEPT_REJECTIONS {
            kept.sort_by_key(|e| e.line);
            kept.truncate(KEPT_REJECTIONS);
        }
    }

    /// Rows in time order (this batch's, and after every earlier batch's).
    pub fn feed(&mut self, chunk: &[InputRow]) -> Result<(), StoreError> {
        self.summary.rows += chunk.len();
        let readings: Vec<Reading> = chunk.iter().map(|r| r.reading.clone()).collect();
        let batch = self.pipeline.ingest(&readings)?;
        let summary = &mut self.summary;
        summary.accepted += batch.accepted.len();
        for a in &batch.accepted {
            summary.first_ts_ms = Some(summary.first_ts_ms.map_or(a.ts_ms, |t| t.min(a.ts_ms)));
            summary.last_ts_ms = Some(summary.last_ts_ms.map_or(a.ts_ms, |t| t.max(a.ts_ms)));
        }
        for r in &batch.rejections {
            *self.summary.rejected.entry(r.reason.name()).or_default() += 1;
            self.keep_rejection(RowError::new(
                chunk[r.index].line,
                r.reason.name(),
                format!("meter `{}` channel `{}`: {}", r.meter, r.channel, r.detail),
            ));
        }
        for e in &batch.events {
            *self.summary.events.entry(e.kind.name()).or_default() += 1;
            if e.kind.is_held() {
                let held = held_reading(self.pipeline, e.kind.name(), e.channel, e.from, e.to);
                self.summary.held.push(held);
            }
        }
        let config = self.pipeline.accountant().config().clone();
        for (entity, sums) in batch.totals(&config, self.total_window) {
            self.summary.totals.entry(entity).or_default().merge(&sums);
        }
        Ok(())
    }

    pub fn finish(self) -> ReplaySummary {
        let Replay {
            pipeline,
            mut summary,
            ..
        } = self;
        summary.rejections.sort_by_key(|e| e.line);
        summary.rejections.truncate(KEPT_REJECTIONS);
        let acct = pipeline.accountant();
        let pending: Vec<_> = acct
            .channel_refs()
            .filter_map(|r| {
                let s = acct.state(r)?;
                Some((r, s.last, s.pending?))
            })
            .collect();
        for (r, last, p) in pending {
            let kind = if last.is_some_and(|l| p.micro < l.micro) {
                "held"
            } else {
                "quarantined"
            };
            summary
                .pending_at_end
                .push(held_reading(pipeline, kind, r, last, p));
        }
        summary
    }
}

/// Feeds rows held in memory through the pipeline (sorted by time here) and collects the
/// summary; `ecogate replay` streams a file through [`Replay`] and [`sort::Sorter`] instead.
pub fn run(
    pipeline: &mut Pipeline,
    mut rows: Vec<InputRow>,
    parse_errors: Vec<RowError>,
) -> Result<ReplaySummary, StoreError> {
    let mut replay = Replay::new(pipeline);
    for e in parse_errors {
        replay.parse_error(e);
    }
    // A stable sort: readings of one instant keep their file order, which is their order.
    rows.sort_by_key(|r| r.reading.ts_ms);
    for chunk in rows.chunks(BATCH) {
        replay.feed(chunk)?;
    }
    Ok(replay.finish())
}

fn held_reading(
    pipeline: &Pipeline,
    kind: &'static str,
    r: ChannelRef,
    from: Option<Point>,
    to: Point,
) -> HeldReading {
    let acct = pipeline.accountant();
    let (meter, channel) = acct.channel_ids(r);
    HeldReading {
        kind,
        meter: meter.to_string(),
        channel: channel.to_string(),
        ts_ms: to.ts_ms,
        from_base: from.map(|p| p.micro as f64 / crate::units::MICRO),
        to_base: to.micro as f64 / crate::units::MICRO,
        base_unit: acct.channel_base_unit(r),
    }
}

impl Pipeline {
    fn config_windows(&self) -> Vec<WindowKind> {
        self.accountant().config().accounting.windows.clone()
    }
}

/// Event kinds in a stable order, for printing.
pub fn event_names() -> impl Iterator<Item = &'static str> {
    EventKind::ALL.iter().map(|k| k.name())
}
