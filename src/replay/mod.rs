//! Replay: historical readings from a file, through the same pipeline as live data.
//!
//! Used to backfill a firm's meter exports and as the harness for accounting tests. Rows are
//! sorted by time before they are fed (exports are often grouped by meter), then committed in
//! batches. Every row that is refused, by the parser or by the accounting, is reported with its
//! line number and reason and counted.

pub mod csv;
pub mod line_protocol;
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

/// Batches of this many readings per transaction.
const BATCH: usize = 10_000;

/// Feeds parsed rows through the pipeline and collects the summary.
pub fn run(
    pipeline: &mut Pipeline,
    mut rows: Vec<InputRow>,
    parse_errors: Vec<RowError>,
) -> Result<ReplaySummary, StoreError> {
    let mut summary = ReplaySummary {
        rows: rows.len() + parse_errors.len(),
        ..Default::default()
    };
    for e in &parse_errors {
        *summary.rejected.entry(e.reason).or_default() += 1;
    }
    summary.rejections = parse_errors;
    // A stable sort: readings of one instant keep their file order, which is their order.
    rows.sort_by_key(|r| r.reading.ts_ms);
    // Each delta lands in exactly one window of every kind, so the largest kind's windows add
    // up to the replay's totals.
    let total_window = pipeline
        .config_windows()
        .last()
        .copied()
        .unwrap_or(WindowKind::Year);
    for chunk in rows.chunks(BATCH) {
        let readings: Vec<Reading> = chunk.iter().map(|r| r.reading.clone()).collect();
        let batch = pipeline.ingest(&readings)?;
        summary.accepted += batch.accepted.len();
        for a in &batch.accepted {
            summary.first_ts_ms = Some(summary.first_ts_ms.map_or(a.ts_ms, |t| t.min(a.ts_ms)));
            summary.last_ts_ms = Some(summary.last_ts_ms.map_or(a.ts_ms, |t| t.max(a.ts_ms)));
        }
        for r in &batch.rejections {
            *summary.rejected.entry(r.reason.name()).or_default() += 1;
            summary.rejections.push(RowError::new(
                chunk[r.index].line,
                r.reason.name(),
                format!("meter `{}` channel `{}`: {}", r.meter, r.channel, r.detail),
            ));
        }
        for e in &batch.events {
            *summary.events.entry(e.kind.name()).or_default() += 1;
            if e.kind.is_held() {
                summary.held.push(held_reading(
                    pipeline,
                    e.kind.name(),
                    e.channel,
                    e.from,
                    e.to,
                ));
            }
        }
        let config = pipeline.accountant().config().clone();
        for (entity, sums) in batch.totals(&config, total_window) {
            summary.totals.entry(entity).or_default().merge(&sums);
        }
    }
    summary.rejections.sort_by_key(|e| e.line);
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
    Ok(summary)
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
