//! The accountant: readings in, window aggregates, counter events and new counter states out.
//!
//! `Accountant::process` is pure: it reads its current counter states and returns a [`Batch`]
//! holding everything the batch changes, without changing anything itself. The pipeline commits
//! the batch to the store in one transaction and only then calls `apply`, so a failed commit
//! leaves memory and disk in agreement and the batch can be retried.

use super::carrier::Carrier;
use super::counter::{self, CounterSpec, CounterState, DeltaCause, GaugeStep, Point, Step};
use super::metric::{Metric, Sums};
use super::split::{Interval, Profile};
use super::window::{next_window_start_ms, LocalTime, WindowKind};
use crate::config::{ChannelKind, Config};
use crate::reading::{Quality, Reading};
use crate::units::{self, Unit};
use std::collections::HashMap;
use std::sync::Arc;

pub use crate::util::FastHash;

/// Where a staged part of a delta goes: a whole local minute (added to every window holding it),
/// or one window of one kind (a part of a delta split across window boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    Minute(i64),
    Window(WindowKind, i64),
}

/// A batch's deltas by meter (with its site and firm) and slot, before they are spread over the
/// windows and entities.
type Staged = HashMap<(u32, u32, u32, Slot), Sums, FastHash>;

/// Gives the stored id of an entity: the configuration does, so readers of the store (metrics,
/// alerting) need no accountant of their own.
pub trait EntityIds {
    fn entity_id(&self, e: Entity) -> &str;
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
}

impl EntityIds for Accountant {
    fn entity_id(&self, e: Entity) -> &str {
        self.config.entity_id(e)
    }
}

/// Who an aggregate belongs to. Indices point into the configuration's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    Meter(u32),
    Site(u32),
    Firm(u32),
    Park,
}

impl Entity {
    pub fn level(self) -> &'static str {
        match self {
            Entity::Meter(_) => "meter",
            Entity::Site(_) => "site",
            Entity::Firm(_) => "firm",
            Entity::Park => "park",
        }
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

/// A channel by configuration indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelRef {
    pub meter: u32,
    pub channel: u32,
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
}

/// Everything one batch of readings changes.
#[derive(Debug, Default)]
pub struct Batch {
    pub accepted: Vec<Accepted>,
    pub rejections: Vec<Rejection>,
    pub events: Vec<CounterEvent>,
    pub aggregates: HashMap<AggKey, Sums, FastHash>,
    pub states: HashMap<ChannelRef, CounterState, FastHash>,
}

impl Batch {
    pub fn event_count(&self, kind: EventKind) -> usize {
        self.events.iter().filter(|e| e.kind == kind).count()
    }
}

/// Factors per base unit, resolved once from the configuration.
#[derive(Debug, Clone, Copy, Default)]
struct FactorSet {
    grid_location: f64,
    grid_residual: f64,
    elec_equivalent: f64,
    elec_coal: f64,
}

#[derive(Debug)]
struct ChannelInfo {
    site: u32,
    firm: u32,
    carrier: Option<Carrier>,
    unit: Unit,
    kind: ChannelKind,
    counter_spec: Option<CounterSpec>,
    /// For a signed integrated gauge: where its negative part goes, with that carrier's factors.
    negative: Option<(Carrier, f64, f64)>,
    co2_per_base: f64,
    tce_per_base: f64,
    unit_value_cny_per_base: f64,
}

/// Values beyond this (in base units) are refused: no meter counts past 9 billion kWh, and f64
/// micro units stay exact below it.
const MAX_BASE_AMOUNT: f64 = 9.0e9;

pub struct Accountant {
    config: Arc<Config>,
    /// Meter and channel ids to indices. The keys come from the configuration; lookups (every
    /// reading) hash strings that sources may take from the network, with a per-process seed.
    lookup: HashMap<String, (u32, HashMap<String, u32, FastHash>), FastHash>,
    channels: Vec<Vec<ChannelInfo>>,
    factors: FactorSet,
    max_future_ms: i64,
    states: HashMap<ChannelRef, CounterState, FastHash>,
    /// Unique per accountant built in this process, so that a store can tell whether ids it
    /// resolved for one accountant's channel indices still apply.
    instance: u64,
}

static ACCOUNTANTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl std::fmt::Debug for Accountant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accountant")
            .field("channels", &self.states.len())
            .finish()
    }
}

impl Accountant {
    pub fn new(config: Arc<Config>) -> Accountant {
        let f = &config.factors;
        let factors = FactorSet {
            grid_location: f.co2_per_base("grid_location").unwrap_or(0.0),
            grid_residual: f.co2_per_base("grid_market_residual").unwrap_or(0.0),
            elec_equivalent: f.tce_per_base("electricity_equivalent").unwrap_or(0.0),
            elec_coal: f
                .tce_per_base("electricity_coal_consumption")
                .unwrap_or(0.0),
        };
        let mut lookup = HashMap::default();
        let mut channels = Vec::new();
        for (mi, m) in config.meters.iter().enumerate() {
            let site = m.site as u32;
            let firm = config.sites.get(m.site).map_or(0, |s| s.firm as u32);
            let mut by_name = HashMap::default();
            let mut infos = Vec::new();
            for (ci, c) in m.channels.iter().enumerate() {
                by_name.insert(c.id.clone(), ci as u32);
                // Fuels, heat and steam have per-carrier factors keyed by the carrier's name.
                let factors_of = |k: Option<Carrier>| match k {
                    Some(k) if k.is_fuel() || matches!(k, Carrier::Heat | Carrier::Steam) => (
                        f.co2_per_base(k.name()).unwrap_or(0.0),
                        f.tce_per_base(k.name()).unwrap_or(0.0),
                    ),
                    _ => (0.0, 0.0),
                };
                let (co2, tce) = factors_of(c.carrier);
                let (counter_spec, negative) = match &c.kind {
                    ChannelKind::Counter {
                        rollover_base,
                        max_rate_base_per_h,
                        replacements,
                    } => (
                        Some(CounterSpec {
                            rollover_micro: rollover_base.and_then(units::to_micro),
                            max_rate_micro_per_h: max_rate_base_per_h * units::MICRO,
                            replacements: replacements.clone(),
                        }),
                        None,
                    ),
                    ChannelKind::Gauge {
                        negative_carrier, ..
                    } => (
                        None,
                        negative_carrier.map(|k| {
                            let (co2, tce) = factors_of(Some(k));
                            (k, co2, tce)
                        }),
                    ),
                };
                infos.push(ChannelInfo {
                    site,
                    firm,
                    carrier: c.carrier,
                    unit: c.unit,
                    kind: c.kind.clone(),
                    counter_spec,
                    negative,
                    co2_per_base: co2,
                    tce_per_base: tce,
                    unit_value_cny_per_base: c.unit_value_cny_per_base.unwrap_or(0.0),
                });
            }
            lookup.insert(m.id.clone(), (mi as u32, by_name));
            channels.push(infos);
        }
        Accountant {
            instance: ACCOUNTANTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            max_future_ms: (config.accounting.max_future_s * 1000.0) as i64,
            config,
            lookup,
            channels,
            factors,
            states: HashMap::default(),
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Resolves a channel by ids (used when reloading state from the store).
    pub fn channel_ref(&self, meter: &str, channel: &str) -> Option<ChannelRef> {
        let (mi, chans) = self.lookup.get(meter)?;
        Some(ChannelRef {
            meter: *mi,
            channel: *chans.get(channel)?,
        })
    }

    /// Identity of this accountant among those built in this process.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Every configured channel, meter by meter.
    pub fn channel_refs(&self) -> impl Iterator<Item = ChannelRef> + '_ {
        self.channels.iter().enumerate().flat_map(|(mi, chans)| {
            (0..chans.len()).map(move |ci| ChannelRef {
                meter: mi as u32,
                channel: ci as u32,
            })
        })
    }

    pub fn channel_ids(&self, r: ChannelRef) -> (&str, &str) {
        let m = &self.config.meters[r.meter as usize];
        (&m.id, &m.channels[r.channel as usize].id)
    }

    /// The base unit symbol of a channel's stored values.
    pub fn channel_base_unit(&self, r: ChannelRef) -> &'static str {
        self.channels[r.meter as usize][r.channel as usize]
            .unit
            .dimension
            .base_symbol()
    }

    /// A counter channel's configured `max_rate_per_hour`, in micro base units per hour.
    pub fn counter_limit_micro_per_h(&self, r: ChannelRef) -> Option<f64> {
        self.channels
            .get(r.meter as usize)?
            .get(r.channel as usize)?
            .counter_spec
            .as_ref()
            .map(|s| s.max_rate_micro_per_h)
    }

    /// Installs persisted states (at start-up).
    pub fn load_states(&mut self, states: impl IntoIterator<Item = (ChannelRef, CounterState)>) {
        self.states.extend(states);
    }

    pub fn state(&self, r: ChannelRef) -> Option<&CounterState> {
        self.states.get(&r)
    }

    /// Makes a committed batch's states current.
    pub fn apply(&mut self, batch: &Batch) {
        for (r, s) in &batch.states {
            self.states.insert(*r, *s);
        }
    }

    /// Accounts a batch of readings without changing `self`.
    /// `now_ms` is the wall clock, against which future timestamps are judged.
    pub fn process(&self, readings: &[Reading], now_ms: i64) -> Batch {
        let mut batch = Batch::default();
        let mut staged = Staged::default();
        for (index, reading) in readings.iter().enumerate() {
            self.process_one(index, reading, now_ms, &mut batch, &mut staged);
        }
        self.expand(&mut batch, staged);
        batch
    }

    /// Adds each staged part to its windows at meter, site, firm and park level. A whole minute
    /// goes to every window holding it (every window is a union of local minutes), with a
    /// fraction of the map updates of adding each delta to its two dozen aggregates.
    fn expand(&self, batch: &mut Batch, staged: Staged) {
        let tz = self.config.park.timezone;
        let windows = &self.config.accounting.windows;
        for ((meter, site, firm, slot), sums) in staged {
            let local = match slot {
                Slot::Minute(minute_ms) => {
                    Some(LocalTime::new(minute_ms, tz).expect("a minute start of a valid reading"))
                }
                Slot::Window(..) => None,
            };
            for &window in windows {
                let start_ms = match (slot, &local) {
                    (Slot::Minute(_), Some(local)) => local.window_start_ms(window, tz),
                    (Slot::Window(w, start_ms), _) if w == window => start_ms,
                    _ => continue,
                };
                for entity in [
                    Entity::Meter(meter),
                    Entity::Site(site),
                    Entity::Firm(firm),
                    Entity::Park,
                ] {
                    batch
                        .aggregates
                        .entry(AggKey {
                            window,
                            start_ms,
                            entity,
                        })
                        .or_default()
                        .merge(&sums);
                }
            }
        }
    }

    fn reject(
        batch: &mut Batch,
        index: usize,
        reading: &Reading,
        reason: RejectReason,
        detail: String,
    ) {
        batch.rejections.push(Rejection {
            index,
            reason,
            meter: truncate(&reading.meter),
            channel: truncate(&reading.channel),
            ts_ms: reading.ts_ms,
            detail,
        });
    }

    fn process_one(
        &self,
        index: usize,
        reading: &Reading,
        now_ms: i64,
        batch: &mut Batch,
        staged: &mut Staged,
    ) {
        let Some((mi, chans)) = self.lookup.get(reading.meter.as_str()) else {
            return Self::reject(
                batch,
                index,
                reading,
                RejectReason::UnknownMeter,
                "no meter with this id is configured".into(),
            );
        };
        let Some(ci) = chans.get(reading.channel.as_str()) else {
            return Self::reject(
                batch,
                index,
                reading,
                RejectReason::UnknownChannel,
                "the meter has no channel with this id".into(),
            );
        };
        let r = ChannelRef {
            meter: *mi,
            channel: *ci,
        };
        let info = &self.channels[r.meter as usize][r.channel as usize];
        if reading.unit.dimension != info.unit.dimension {
            let detail = format!(
                "unit {} ({}) does not fit the channel's {} ({})",
                reading.unit, reading.unit.dimension, info.unit, info.unit.dimension
            );
            return Self::reject(batch, index, reading, RejectReason::UnitMismatch, detail);
        }
        if reading.quality == Quality::Bad {
            return Self::reject(
                batch,
                index,
                reading,
                RejectReason::BadQuality,
                "the source marked the value bad".into(),
            );
        }
        if !reading.amount.is_finite() {
            return Self::reject(
                batch,
                index,
                reading,
                RejectReason::NotFinite,
                format!("value {}", reading.amount),
            );
        }
        let base = reading.unit.to_base_amount(reading.amount);
        if base.abs() > MAX_BASE_AMOUNT {
            return Self::reject(
                batch,
                index,
                reading,
                RejectReason::OutOfRange,
                format!("value {} {}", reading.amount, reading.unit),
            );
        }
        if reading.ts_ms > now_ms.saturating_add(self.max_future_ms) {
            let ahead_s = (reading.ts_ms - now_ms) / 1000;
            let detail = format!(
                "timestamp {} ms is {ahead_s} s ahead of the clock",
                reading.ts_ms
            );
            return Self::reject(batch, index, reading, RejectReason::FutureTimestamp, detail);
        }
        // Before 1970 no meter of ours was read; the bound also keeps calendar arithmetic far
        // from chrono's limits.
        let plausible_time = reading.ts_ms >= 0;
        let local = plausible_time
            .then(|| LocalTime::new(reading.ts_ms, self.config.park.timezone))
            .flatten();
        let Some(local) = local else {
            return Self::reject(
                batch,
                index,
                reading,
                RejectReason::BadTimestamp,
                format!("timestamp {} ms", reading.ts_ms),
            );
        };
        let is_counter = matches!(info.kind, ChannelKind::Counter { .. });
        if base < 0.0 && is_counter {
            return Self::reject(
                batch,
                index,
                reading,
                RejectReason::NegativeCounter,
                format!(
                    "cumulative register reads {} {}: a counter cannot be negative",
                    reading.amount, reading.unit
                ),
            );
        }
        if base < 0.0
            && info.negative.is_none()
            && matches!(
                info.kind,
                ChannelKind::Gauge {
                    integrate: true,
                    ..
                }
            )
        {
            return Self::reject(
                batch,
                index,
                reading,
                RejectReason::NegativeValue,
                format!(
                    "integrated gauge reads {} {}: set the channel's negative_carrier (for example grid_export) to account negative values",
                    reading.amount, reading.unit
                ),
            );
        }
        let micro = units::to_micro(base).expect("bounded above");
        let accepted_at = batch.accepted.len();
        batch.accepted.push(Accepted {
            channel: r,
            ts_ms: reading.ts_ms,
            base_amount: base,
            quality: reading.quality,
            held: false,
        });
        let point = Point {
            micro,
            ts_ms: reading.ts_ms,
        };
        let mut state = batch
            .states
            .get(&r)
            .or_else(|| self.states.get(&r))
            .copied()
            .unwrap_or_default();
        let mut event = |kind: EventKind, from: Option<Point>, to: Point, delta_micro: i64| {
            batch.events.push(CounterEvent {
                channel: r,
                kind,
                ts_ms: to.ts_ms,
                from,
                to,
                delta_micro,
            });
        };
        // (delta, interval start, how it accrued, carrier and its factors)
        let mut parts: Vec<(i64, i64, Profile, Carrier, f64, f64)> = Vec::new();
        match (&info.kind, &info.counter_spec) {
            (ChannelKind::Counter { .. }, Some(spec)) => {
                let before = state.last;
                let (step, glitch) = counter::step(spec, &mut state, point);
                if let Some(g) = glitch {
                    let resolved = before.is_some_and(|b| g.micro < b.micro);
                    let kind = if resolved {
                        EventKind::HeldResolved
                    } else {
                        EventKind::GlitchDiscarded
                    };
                    event(kind, before, g, g.micro - before.map_or(0, |b| b.micro));
                }
                match step {
                    Step::Baseline => event(EventKind::Baseline, None, point, 0),
                    Step::Duplicate => event(EventKind::Duplicate, before, point, 0),
                    Step::OutOfOrder => event(EventKind::OutOfOrder, before, point, 0),
                    Step::BelowHighWater => event(EventKind::BelowHighWater, before, point, 0),
                    Step::Quarantined { from } => {
                        event(
                            EventKind::Quarantined,
                            Some(from),
                            point,
                            point.micro - from.micro,
                        );
                        batch.accepted[accepted_at].held = true;
                    }
                    Step::Held { from } => {
                        event(EventKind::Held, Some(from), point, point.micro - from.micro);
                        batch.accepted[accepted_at].held = true;
                    }
                    Step::Delta {
                        delta_micro,
                        cause,
                        from_ts_ms,
                        rebased_from,
                    } => {
                        match cause {
                            DeltaCause::Normal => {}
                            DeltaCause::Rollover => {
                                event(EventKind::Rollover, before, point, delta_micro)
                            }
                            DeltaCause::Reset => {
                                event(EventKind::Reset, before, point, delta_micro)
                            }
                            DeltaCause::Replaced => {
                                event(EventKind::Replaced, before, point, delta_micro)
                            }
                            DeltaCause::OverLimit { rate_micro_per_h } => {
                                event(EventKind::OverLimit, before, point, rate_micro_per_h)
                            }
                            DeltaCause::Rebased => {
                                let to = rebased_from.unwrap_or(point);
                                event(
                                    EventKind::Rebased,
                                    before,
                                    to,
                                    to.micro - before.map_or(0, |b| b.micro),
                                );
                            }
                        }
                        if let Some(carrier) = info.carrier {
                            parts.push((
                                delta_micro,
                                from_ts_ms,
                                Profile::Linear,
                                carrier,
                                info.co2_per_base,
                                info.tce_per_base,
                            ));
                        }
                    }
                }
            }
            (
                ChannelKind::Gauge {
                    integrate: true, ..
                },
                _,
            ) => {
                let max_gap_ms = (self.config.accounting.gauge_max_gap_s * 1000.0) as i64;
                let before = state.last;
                match counter::integrate(&mut state, point, max_gap_ms) {
                    GaugeStep::Started => {}
                    GaugeStep::Integrated { from, .. } => {
                        if let Some(carrier) = info.carrier {
                            self.gauge_parts(info, carrier, from, point, &mut parts);
                        }
                    }
                    GaugeStep::Gap { from } => event(
                        EventKind::GaugeGap,
                        Some(from),
                        point,
                        point.ts_ms - from.ts_ms,
                    ),
                    GaugeStep::Duplicate => event(EventKind::Duplicate, before, point, 0),
                    GaugeStep::OutOfOrder => event(EventKind::OutOfOrder, before, point, 0),
                }
            }
            // A gauge that is only recorded (voltage, power without integration) has no state
            // to keep: its readings are stored, and no later figure depends on its last one.
            // Keeping it cost a state row written per reading at every commit.
            _ => return,
        };
        batch.states.insert(r, state);
        for (delta_micro, from_ts_ms, profile, carrier, co2, tce) in parts {
            let sums =
                self.contributions(carrier, co2, tce, info.unit_value_cny_per_base, delta_micro);
            let interval = Interval {
                t0_ms: from_ts_ms,
                t1_ms: point.ts_ms,
                profile,
            };
            self.attribute(staged, r, info, &local, interval, &sums);
        }
    }

    /// The trapezoid between two samples of an integrated gauge, as parts per carrier: a
    /// segment that crosses zero is cut where it does, its positive part to the channel's
    /// carrier and its negative part to the negative carrier.
    fn gauge_parts(
        &self,
        info: &ChannelInfo,
        carrier: Carrier,
        from: Point,
        to: Point,
        parts: &mut Vec<(i64, i64, Profile, Carrier, f64, f64)>,
    ) {
        let (p0, p1) = (from.micro as f64, to.micro as f64);
        let energy =
            |a: f64, b: f64, ms: i64| ((a + b) / 2.0 * ms as f64 / 3_600_000.0).round() as i64;
        let mut push = |a: f64, b: f64, t0: i64, t1: i64| {
            if t1 <= t0 {
                return;
            }
            let (k, co2, tce, sign) = if a + b >= 0.0 {
                (carrier, info.co2_per_base, info.tce_per_base, 1.0)
            } else {
                match info.negative {
                    Some((k, co2, tce)) => (k, co2, tce, -1.0),
                    None => return,
                }
            };
            let (a, b) = (a * sign, b * sign);
            let d = energy(a, b, t1 - t0);
            if d != 0 {
                parts.push((d, t0, Profile::Trapezoid { p0: a, p1: b }, k, co2, tce));
            }
        };
        if (p0 < 0.0) != (p1 < 0.0) && p0 != 0.0 && p1 != 0.0 {
            let span = (to.ts_ms - from.ts_ms) as f64;
            let cross = from.ts_ms + (span * p0.abs() / (p0.abs() + p1.abs())).round() as i64;
            push(p0, 0.0, from.ts_ms, cross);
            push(0.0, p1, cross, to.ts_ms);
        } else {
            push(p0, p1, from.ts_ms, to.ts_ms);
        }
    }

    /// What one delta of a carrier adds to each metric.
    fn contributions(
        &self,
        carrier: Carrier,
        co2_per_base: f64,
        tce_per_base: f64,
        unit_value_cny_per_base: f64,
        d: i64,
    ) -> Sums {
        let f = &self.factors;
        let mut s = Sums::default();
        let scaled = |factor: f64| (d as f64 * factor).round() as i64;
        if let Some(m) = Metric::for_carrier(carrier) {
            s.add(m, d);
        }
        s.add(Metric::Deltas, units::MICRO as i64);
        match carrier {
            Carrier::GridImport => {
                s.add(Metric::ElectricityConsumedKwh, d);
                s.add(Metric::Co2Scope2LocationKg, scaled(f.grid_location));
                s.add(Metric::Co2Scope2MarketGrossKg, scaled(f.grid_residual));
                s.add(Metric::EnergyEquivalentKgce, scaled(f.elec_equivalent));
                s.add(Metric::EnergyCoalConsumptionKgce, scaled(f.elec_coal));
            }
            Carrier::PvGeneration | Carrier::GridExport => {
                let sign = if carrier == Carrier::GridExport {
                    -1
                } else {
                    1
                };
                s.add(Metric::ElectricityConsumedKwh, sign * d);
                s.add(Metric::PvSelfConsumedKwh, sign * d);
                s.add(
                    Metric::EnergyEquivalentKgce,
                    sign * scaled(f.elec_equivalent),
                );
                s.add(
                    Metric::EnergyCoalConsumptionKgce,
                    sign * scaled(f.elec_coal),
                );
            }
            Carrier::Heat | Carrier::Steam => {
                s.add(Metric::Co2Scope2LocationKg, scaled(co2_per_base));
                s.add(Metric::Co2Scope2MarketGrossKg, scaled(co2_per_base));
                s.add(Metric::EnergyEquivalentKgce, scaled(tce_per_base));
                s.add(Metric::EnergyCoalConsumptionKgce, scaled(tce_per_base));
            }
            c if c.is_fuel() => {
                s.add(Metric::Co2Scope1Kg, scaled(co2_per_base));
                s.add(Metric::EnergyEquivalentKgce, scaled(tce_per_base));
                s.add(Metric::EnergyCoalConsumptionKgce, scaled(tce_per_base));
            }
            Carrier::Production => s.add(Metric::OutputCny, scaled(unit_value_cny_per_base)),
            _ => {}
        }
        s
    }

    /// Stages a delta's sums for the windows its interval `(t0, t1]` covers. A reading on a
    /// window boundary closes the window before it. An interval within one local minute (the
    /// usual case for live polling) goes whole to that minute; a longer one is split across the
    /// windows of every kind by [`Interval::part`], so that parts add up exactly.
    fn attribute(
        &self,
        staged: &mut Staged,
        r: ChannelRef,
        info: &ChannelInfo,
        local: &LocalTime,
        mut interval: Interval,
        sums: &Sums,
    ) {
        let tz = self.config.park.timezone;
        let t1 = interval.t1_ms;
        // Readings stamped at one instant (a burst stamped on arrival) close an instant.
        if interval.t0_ms >= t1 {
            interval.t0_ms = t1 - 1;
            interval.profile = Profile::Linear;
        }
        let minute_of =
            |ts: i64| LocalTime::new(ts, tz).map(|l| l.window_start_ms(WindowKind::Minute, tz));
        let last_minute = if t1 % 60_000 == 0 {
            minute_of(t1 - 1)
        } else {
            Some(local.window_start_ms(WindowKind::Minute, tz))
        };
        let (Some(last_minute), Some(first_minute)) = (last_minute, minute_of(interval.t0_ms))
        else {
            return;
        };
        if first_minute == last_minute {
            Self::stage(staged, r, info, Slot::Minute(last_minute), sums);
            return;
        }
        for &window in &self.config.accounting.windows {
            // A long gap is not spread over sub-day windows older than the store keeps when
            // its reading arrives: they would be deleted at once, and a gap of months would
            // otherwise stage hundreds of thousands of minutes. The windows kept still add up.
            let keep_from = self
                .config
                .store
                .retention
                .cutoff_ms(window, t1)
                .max(t1.saturating_sub(MAX_SPLIT_WINDOWS * window_nominal_ms(window)));
            let Some(first) = LocalTime::new(interval.t0_ms.max(keep_from), tz) else {
                continue;
            };
            let mut start = first.window_start_ms(window, tz);
            while start < t1 {
                let end = next_window_start_ms(window, start, tz);
                let mut part = Sums::default();
                let mut any = false;
                for (i, total) in sums.0.iter().enumerate() {
                    if *total != 0 {
                        part.0[i] = interval.part(*total, start, end);
                        any |= part.0[i] != 0;
                    }
                }
                if any {
                    Self::stage(staged, r, info, Slot::Window(window, start), &part);
                }
                if end <= start {
                    break;
                }
                start = end;
            }
        }
    }

    fn stage(staged: &mut Staged, r: ChannelRef, info: &ChannelInfo, slot: Slot, sums: &Sums) {
        let entry = staged
            .entry((r.meter, info.site, info.firm, slot))
            .or_default();
        // A delta touches a handful of the figures: add only those.
        for (i, v) in sums.0.iter().enumerate() {
            if *v != 0 {
                entry.0[i] = entry.0[i].saturating_add(*v);
            }
        }
    }

    /// The id stored for an entity.
    pub fn entity_id(&self, e: Entity) -> &str {
        self.config.entity_id(e)
    }
}

/// At most this many windows of one kind receive parts of one delta (about 69 days of minutes).
const MAX_SPLIT_WINDOWS: i64 = 100_000;

fn window_nominal_ms(kind: WindowKind) -> i64 {
    match kind {
        WindowKind::Minute => 60_000,
        WindowKind::QuarterHour => 900_000,
        WindowKind::Hour => 3_600_000,
        WindowKind::Day => 86_400_000,
        WindowKind::Month => 31 * 86_400_000,
        WindowKind::Year => 366 * 86_400_000,
    }
}

/// Ids from untrusted input are cut short before they are kept in a rejection record.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
