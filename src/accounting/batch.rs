//! The vocabulary of a batch: who an aggregate belongs to, why a reading was refused, what
//! happened to an accepted one, and everything one batch changes. [`super::ledger`] produces
//! it; the store, the sinks and the metrics read it.

use super::counter::{CounterState, Point};
pub use super::entity::{ChannelRef, Entity};
use super::metric::Sums;
use super::span::Span;
use super::window::WindowKind;
use crate::config::{Config, Retention};
use crate::reading::Quality;
use crate::util::FastHash;
use chrono_tz::Tz;
use std::collections::HashMap;

/// Gives the stored id of an entity: the configuration does, so readers of the store (metrics,
/// alerting) need no accountant of their own.
pub trait EntityIds {
    fn entity_id(&self, e: Entity) -> &str;
    /// What a window query needs to read a span's parts: the park's calendar and the retention
    /// that bounded which windows took parts.
    fn calendar(&self) -> (Tz, &Retention);
    fn channel_id(&self, r: ChannelRef) -> &str;
}

impl EntityIds for Config {
    fn entity_id(&self, e: Entity) -> &str {
        match e {
            Entity::Meter(i) => &self.meters[i as usize].id,
            Entity::Site(i) => &self.sites[i as usize].id,
            Entity::Firm(i) => &self.firms[i as usize].id,
            Entity::Park => "park",
        }
    }

    fn calendar(&self) -> (Tz, &Retention) {
        (self.park.timezone, &self.store.retention)
    }

    fn channel_id(&self, r: ChannelRef) -> &str {
        &self.meters[r.meter as usize].channels[r.channel as usize].id
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AggKey {
    pub window: WindowKind,
    pub start_ms: i64,
    pub entity: Entity,
}

/// Why a reading was not accepted at all. Fixed set: these become metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    UnknownMeter,
    UnknownChannel,
    UnitMismatch,
    NotFinite,
    OutOfRange,
    BadQuality,
    BadTimestamp,
    /// Later than the wall clock allows: one reading from a device with a wrong clock would
    /// otherwise become a baseline in the future and stall its channel.
    FutureTimestamp,
    /// A cumulative register below zero: no meter counts that way.
    NegativeCounter,
    /// A negative sample of an integrated gauge whose channel declares no `negative_carrier`:
    /// it would make negative energy and emissions.
    NegativeValue,
}

impl RejectReason {
    pub const ALL: &'static [RejectReason] = &[
        RejectReason::UnknownMeter,
        RejectReason::UnknownChannel,
        RejectReason::UnitMismatch,
        RejectReason::NotFinite,
        RejectReason::OutOfRange,
        RejectReason::BadQuality,
        RejectReason::BadTimestamp,
        RejectReason::FutureTimestamp,
        RejectReason::NegativeCounter,
        RejectReason::NegativeValue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RejectReason::UnknownMeter => "unknown_meter",
            RejectReason::UnknownChannel => "unknown_channel",
            RejectReason::UnitMismatch => "unit_mismatch",
            RejectReason::NotFinite => "not_finite",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::BadQuality => "bad_quality",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::NegativeCounter => "negative_counter",
            RejectReason::NegativeValue => "negative_value",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Position of the reading in the batch it came in, so callers can name the input line.
    pub index: usize,
    pub reason: RejectReason,
    pub meter: String,
    pub channel: String,
    pub ts_ms: i64,
    pub detail: String,
}

/// What happened to an accepted reading, beyond plain accounting. Recorded in the store's event
/// table (the audit trail) and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Baseline,
    Rollover,
    Reset,
    /// A jump above the limit, held until the next reading decides.
    Quarantined,
    /// A quarantined jump continued by the next reading at a rate above the configured limit:
    /// counted in full; `delta_micro` is the confirmed rate in micro units per hour.
    OverLimit,
    /// A large jump persisted: counting resumed from it; the jump stays unaccounted, visible here.
    Rebased,
    /// A quarantined value was followed by readings continuing from the old baseline.
    GlitchDiscarded,
    /// A drop that is neither a rollover nor a reset: held, nothing counted until the register
    /// passes its high-water mark again.
    Held,
    /// A held drop that the register climbed back from: counting resumed at the mark.
    HeldResolved,
    /// A declared meter replacement was applied.
    Replaced,
    /// A reading at or below the high-water mark while a drop is held: adds nothing.
    BelowHighWater,
    Duplicate,
    OutOfOrder,
    GaugeGap,
    /// The gateway's clock went back between the mark and a reading stamped on arrival: the
    /// increase (`delta_micro`) was counted at the reading's instant.
    ClockStepBack,
}

impl EventKind {
    pub const ALL: &'static [EventKind] = &[
        EventKind::Baseline,
        EventKind::Rollover,
        EventKind::Reset,
        EventKind::Quarantined,
        EventKind::OverLimit,
        EventKind::Rebased,
        EventKind::GlitchDiscarded,
        EventKind::Held,
        EventKind::HeldResolved,
        EventKind::Replaced,
        EventKind::BelowHighWater,
        EventKind::Duplicate,
        EventKind::OutOfOrder,
        EventKind::GaugeGap,
        EventKind::ClockStepBack,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Baseline => "baseline",
            EventKind::Rollover => "rollover",
            EventKind::Reset => "reset",
            EventKind::Quarantined => "quarantined",
            EventKind::Rebased => "rebased",
            EventKind::OverLimit => "over_limit",
            EventKind::GlitchDiscarded => "glitch_discarded",
            EventKind::Held => "held",
            EventKind::HeldResolved => "held_resolved",
            EventKind::Replaced => "replaced",
            EventKind::BelowHighWater => "below_high_water",
            EventKind::Duplicate => "duplicate",
            EventKind::OutOfOrder => "out_of_order",
            EventKind::GaugeGap => "gauge_gap",
            EventKind::ClockStepBack => "clock_step_back",
        }
    }

    /// Events worth a row in the audit trail; duplicates and out-of-order readings are only
    /// counted (a redelivering broker can produce millions).
    pub fn is_recorded(self) -> bool {
        !matches!(
            self,
            EventKind::Duplicate | EventKind::OutOfOrder | EventKind::BelowHighWater
        )
    }

    /// Events that hold or discard a reading's value: a person must be able to see each.
    pub fn is_held(self) -> bool {
        matches!(
            self,
            EventKind::Quarantined
                | EventKind::Held
                | EventKind::GlitchDiscarded
                | EventKind::Rebased
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CounterEvent {
    pub channel: ChannelRef,
    pub kind: EventKind,
    pub ts_ms: i64,
    /// The value the event is measured from (last accepted point, or the quarantined one).
    pub from: Option<Point>,
    pub to: Point,
    /// Signed size of the jump, gap or delta, in micro units of the channel's base unit.
    pub delta_micro: i64,
}

/// A reading that passed validation, normalised to the base unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub channel: ChannelRef,
    pub ts_ms: i64,
    pub base_amount: f64,
    pub quality: Quality,
    /// The counter held this value (quarantined jump or held drop) instead of counting it.
    pub held: bool,
    /// Not newer than its channel's last reading (a duplicate or an out-of-order one), or, for
    /// a recorded gauge (which keeps no state), not newer than the store's newest reading when
    /// the accountant was loaded: so the store may already hold it (a replay restarted after a
    /// crash, or a broker redelivering, reads it again). Newer readings cannot be stored yet,
    /// since a channel's state commits with its readings.
    pub maybe_stored: bool,
}

/// Everything one batch of readings changes.
#[derive(Debug, Default)]
pub struct Batch {
    pub accepted: Vec<Accepted>,
    pub rejections: Vec<Rejection>,
    pub events: Vec<CounterEvent>,
    pub aggregates: HashMap<AggKey, Sums, FastHash>,
    /// Deltas over long intervals, kept whole rather than split into `aggregates`.
    pub spans: Vec<Span>,
    pub states: HashMap<ChannelRef, CounterState, FastHash>,
}

impl Batch {
    pub fn event_count(&self, kind: EventKind) -> usize {
        self.events.iter().filter(|e| e.kind == kind).count()
    }

    /// What the batch adds to each entity over all windows of `window` (its aggregates of that
    /// kind and its spans' parts in them): with the largest kind, every delta exactly once.
    pub fn totals(&self, config: &Config, window: WindowKind) -> HashMap<Entity, Sums, FastHash> {
        let mut totals: HashMap<Entity, Sums, FastHash> = HashMap::default();
        for (key, sums) in &self.aggregates {
            if key.window == window {
                totals.entry(key.entity).or_default().merge(sums);
            }
        }
        let (tz, retention) = (config.park.timezone, &config.store.retention);
        for span in &self.spans {
            let part = span.part_in(window, i64::MIN, i64::MAX, tz, retention, i64::MIN);
            for entity in span.entities() {
                totals.entry(entity).or_default().merge(&part);
            }
        }
        totals
    }
}
