//! The accountant: readings in, window aggregates, counter events and new counter states out.
//!
//! `Accountant::process` is pure: it reads its current counter states and returns a [`Batch`]
//! holding everything the batch changes, without changing anything itself. The pipeline commits
//! the batch to the store in one transaction and only then calls `apply`, so a failed commit
//! leaves memory and disk in agreement and the batch can be retried.

use super::counter::{self, CounterSpec, CounterState, DeltaCause, GaugeStep, Point, Step};
use super::metric::{Metric, Sums};
use super::span::{keep_from_ms, SPAN_AFTER_MS};
use super::split::{Interval, Profile};
use super::window::{next_window_start_ms, LocalTime, WindowKind};
use crate::config::carrier::Carrier;
use crate::config::{ChannelKind, Config};
use crate::reading::{Quality, Reading};
use crate::units::{self, Unit};
use std::collections::HashMap;
use std::sync::Arc;

pub use super::batch::{
    Accepted, AggKey, Batch, ChannelRef, CounterEvent, Entity, EntityIds, EventKind, RejectReason,
    Rejection,
};
pub use super::span::Span;

mod spread;
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

impl EntityIds for Accountant {
    fn entity_id(&self, e: Entity) -> &str {
        self.config.entity_id(e)
    }
    fn calendar(&self) -> (chrono_tz::Tz, &crate::config::Retention) {
        self.config.calendar()
    }
    fn channel_id(&self, r: ChannelRef) -> &str {
        self.config.channel_id(r)
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
    /// The newest reading time the store held when this accountant was loaded (`i64::MIN` for
    /// none): a recorded gauge keeps no state to tell a reading read again after a restart, so
    /// one at or before this time may be stored already.
    stored_until_ms: i64,
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
            stored_until_ms: i64::MIN,
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

    /// The newest reading time in the store this accountant continues (see `stored_until_ms`).
    pub fn set_stored_until(&mut self, ts_ms: Option<i64>) {
        self.stored_until_ms = ts_ms.unwrap_or(i64::MIN);
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
        // A reading stamped on arrival was not in the future when stamped: one that is now was
        // in flight while the clock was stepped back, and counts as stamped.
        if !reading.stamped_on_arrival && reading.ts_ms > now_ms.saturating_add(self.max_future_ms)
        {
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
            maybe_stored: false,
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
        let mut parts = Parts::default();
        match (&info.kind, &info.counter_spec) {
            (ChannelKind::Counter { .. }, Some(spec)) => {
                let before = state.last;
                let (step, glitch) = if reading.stamped_on_arrival {
                    counter::step_stamped_on_arrival(spec, &mut state, point)
                } else {
                    counter::step(spec, &mut state, point)
                };
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
                    Step::Duplicate => {
                        event(EventKind::Duplicate, before, point, 0);
                        batch.accepted[accepted_at].maybe_stored = true;
                    }
                    Step::OutOfOrder => {
                        event(EventKind::OutOfOrder, before, point, 0);
                        batch.accepted[accepted_at].maybe_stored = true;
                    }
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
                            DeltaCause::ClockStepBack => {
                                event(EventKind::ClockStepBack, before, point, delta_micro)
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
                let gauge_step = if reading.stamped_on_arrival {
                    counter::integrate_stamped_on_arrival(&mut state, point, max_gap_ms)
                } else {
                    counter::integrate(&mut state, point, max_gap_ms)
                };
                match gauge_step {
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
                    GaugeStep::Duplicate => {
                        event(EventKind::Duplicate, before, point, 0);
                        batch.accepted[accepted_at].maybe_stored = true;
                    }
                    GaugeStep::OutOfOrder => {
                        event(EventKind::OutOfOrder, before, point, 0);
                        batch.accepted[accepted_at].maybe_stored = true;
                    }
                }
            }
            // A gauge that is only recorded (voltage, power without integration) has no state
            // to keep: its readings are stored, and no later figure depends on its last one.
            // Keeping it cost a state row written per reading at every commit. Without a state,
            // a reading read again after a restart is told by the store's newest reading time.
            _ => {
                batch.accepted[accepted_at].maybe_stored = point.ts_ms <= self.stored_until_ms;
                return;
            }
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
            if interval.t1_ms - interval.t0_ms > SPAN_AFTER_MS {
                batch.spans.push(Span {
                    channel: r,
                    site: info.site,
                    firm: info.firm,
                    interval,
                    sums,
                });
            } else {
                self.attribute(staged, r, info, &local, interval, &sums);
            }
        }
    }

    /// The id stored for an entity.
    pub fn entity_id(&self, e: Entity) -> &str {
        self.config.entity_id(e)
    }
}

/// What one reading adds: a delta with the start of its interval, how it accrued, and the carrier
/// with its CO2 and tce factors per base unit.
type Part = (i64, i64, Profile, Carrier, f64, f64);

/// At most two parts (a gauge segment crossing zero), kept inline: no allocation per reading.
#[derive(Default)]
struct Parts {
    items: [Option<Part>; 2],
}

impl Parts {
    fn push(&mut self, part: Part) {
        if let Some(slot) = self.items.iter_mut().find(|p| p.is_none()) {
            *slot = Some(part);
        }
    }
}

impl IntoIterator for Parts {
    type Item = Part;
    type IntoIter = std::iter::Flatten<std::array::IntoIter<Option<Part>, 2>>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter().flatten()
    }
}

/// Ids from untrusted input are cut short before they are kept in a rejection record.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests;
