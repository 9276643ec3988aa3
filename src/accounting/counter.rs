//! Cumulative-counter logic: from successive register values to consumption, with no energy
//! invented, none counted twice and none lost.
//!
//! Pure state machine, no I/O. Per channel it keeps the *high-water mark* (the last accepted
//! point: the highest value counted since the last rollover, reset or declared replacement), an
//! older *anchor* point for readings that arrive in bursts, the highest over-limit rate
//! confirmed so far, and at most one *pending* reading whose meaning the next reading decides.
//! The rules, in order (docs/accounting.md states them with worked examples):
//! - The first reading sets the baseline: no energy is invented from a meter's lifetime total.
//! - A declared meter replacement between the mark and the reading counts the old meter up to its
//!   final value and the new one from its start value.
//! - A reading stamped before the mark is out of order and adds nothing. Readings stamped at the
//!   same instant are taken in arrival order (sources without timestamps stamp on arrival, and a
//!   broker's backlog arrives in one burst): a higher value at the same instant is consumption.
//! - An increase within `max_rate x elapsed` (or, for readings less than a minute after the mark,
//!   within the rate since the anchor) is consumption.
//! - A value at or below the mark adds nothing until the register passes the mark again: a
//!   redelivered run of older values can never be counted twice.
//! - A decrease that fits a wrap at the configured rollover (the modulus) is a rollover.
//! - A decrease to a value that is itself plausible consumption since zero, and below half the
//!   mark, is a reset or a new meter from zero: the new value counts in full.
//! - Any other decrease is *held*: reported, never rebased backwards. Counting resumes when the
//!   register passes the mark; a meter replaced by a used one is declared in configuration.
//! - An increase above the limit is *quarantined* until the next reading. A next reading that
//!   falls back below it shows a glitch (discarded). A next reading that continues it at an
//!   average rate up to `OVER_LIMIT_CONFIRM_FACTOR` times the limit shows real consumption above
//!   a limit set too low: the whole increase counts, the channel's confirmed rate is raised and
//!   reported. A larger jump that persists (a register that changed meaning, a used meter not
//!   declared) is not counted: counting resumes from it and the jump stays reported.
//!
//! Values are integer micro units, so the deltas of any monotone sequence sum exactly to its
//! total increase.

/// A counter value at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub micro: i64,
    pub ts_ms: i64,
}

/// What persists per channel (stored with the aggregates in one transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterState {
    /// The high-water mark: the last accepted point.
    pub last: Option<Point>,
    /// A reading held for the next one to decide: above the mark (quarantined jump) or below
    /// it (held drop).
    pub pending: Option<Point>,
    /// An accepted point at least `ANCHOR_SPACING_MS` older than `mark`: readings that follow
    /// the mark closely are judged by the rate since it.
    pub anchor: Option<Point>,
    /// The newest point that became a candidate anchor.
    pub mark: Option<Point>,
    /// Highest rate (micro units per hour) confirmed above the configured limit; 0 when none.
    pub over_limit_micro_per_h: i64,
}

pub use crate::config::Replacement;

#[derive(Debug, Clone, PartialEq)]
pub struct CounterSpec {
    pub rollover_micro: Option<i64>,
    pub max_rate_micro_per_h: f64,
    /// Declared replacements, by time.
    pub replacements: Vec<Replacement>,
}

/// A jump above the limit that the next reading continues counts as consumption when its
/// average rate is at most this many times the limit. A limit set a little low then costs an
/// event, not energy; a register that jumped by days of consumption is still held.
pub const OVER_LIMIT_CONFIRM_FACTOR: f64 = 4.0;

/// How far apart the anchor and the candidate anchor are kept.
pub const ANCHOR_SPACING_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaCause {
    Normal,
    Rollover,
    /// The register dropped to a value plausible as consumption since zero.
    Reset,
    /// A quarantined jump was continued by the next reading at a rate above the configured
    /// limit (but within `OVER_LIMIT_CONFIRM_FACTOR` of it): counted in full.
    OverLimit {
        rate_micro_per_h: i64,
    },
    /// A large jump persisted: counting resumed from it; the jump itself is not counted.
    Rebased,
    /// A declared replacement: old meter to its final value plus new meter from its start.
    Replaced,
    /// The gateway's clock was stepped back between the mark and a reading stamped on arrival:
    /// the increase is counted at the reading's instant (how long it took is unknown, the clock
    /// that measured it jumped). See [`step_stamped_on_arrival`].
    ClockStepBack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Baseline,
    Delta {
        delta_micro: i64,
        cause: DeltaCause,
        /// Start of the interval the delta covers: the delta belongs to (from_ts_ms, reading].
        from_ts_ms: i64,
        /// For `Rebased`: the jump that persisted and was not counted.
        rebased_from: Option<Point>,
    },
    Duplicate,
    /// Stamped before the mark.
    OutOfOrder,
    /// A drop that is neither a rollover nor a reset: held, counting waits for the mark.
    Held {
        from: Point,
    },
    /// At or below the mark while a drop is held: adds nothing.
    BelowHighWater,
    /// A jump above the limit, held for the next reading to decide; `from` is the mark.
    Quarantined {
        from: Point,
    },
}

/// Highest plausible increase over `elapsed_ms` at `rate`, at least one second's worth so that
/// two readings in the same second can still advance.
fn cap_micro(rate_micro_per_h: f64, elapsed_ms: i64) -> f64 {
    rate_micro_per_h * (elapsed_ms.max(1000) as f64) / 3_600_000.0
}

fn within(rate: f64, delta: i64, elapsed_ms: i64) -> bool {
    delta >= 0 && (delta as f64) <= cap_micro(rate, elapsed_ms)
}

fn rate_per_h(delta: i64, elapsed_ms: i64) -> f64 {
    delta as f64 * 3_600_000.0 / elapsed_ms.max(1000) as f64
}

/// The limit in force: the configured one, or a higher rate already confirmed.
fn limit(spec: &CounterSpec, state: &CounterState) -> f64 {
    spec.max_rate_micro_per_h
        .max(state.over_limit_micro_per_h as f64)
}

/// Whether `p`, above the mark `last`, is plausible consumption: by the rate since the mark, or,
/// for a reading that closely follows the mark (a burst), by the rate since the anchor.
fn plausible_rise(spec: &CounterSpec, state: &CounterState, last: Point, p: Point) -> bool {
    let rate = limit(spec, state);
    if within(rate, p.micro - last.micro, p.ts_ms - last.ts_ms) {
        return true;
    }
    p.ts_ms - last.ts_ms < ANCHOR_SPACING_MS
        && state.anchor.is_some_and(|a| {
            a.ts_ms < p.ts_ms && within(rate, p.micro - a.micro, p.ts_ms - a.ts_ms)
        })
}

/// Makes `p` the mark, keeping the anchor at least `ANCHOR_SPACING_MS` behind the candidate.
fn accept(state: &mut CounterState, p: Point, continuous: bool) {
    state.last = Some(p);
    state.pending = None;
    match (continuous, state.mark) {
        (true, Some(mark)) => {
            if p.ts_ms - mark.ts_ms >= ANCHOR_SPACING_MS {
                state.anchor = Some(mark);
                state.mark = Some(p);
            }
        }
        // Across a wrap, reset or replacement older values are not comparable.
        _ => {
            state.anchor = Some(p);
            state.mark = Some(p);
        }
    }
}

fn delta(delta_micro: i64, cause: DeltaCause, from: Point) -> Step {
    Step::Delta {
        delta_micro,
        cause,
        from_ts_ms: from.ts_ms,
        rebased_from: None,
    }
}

/// Feeds one reading to a channel's state. Returns what it meant; the second value is a
/// pending point that this reading showed to be a glitch (or a held drop it resolved), if any.
pub fn step(spec: &CounterSpec, state: &mut CounterState, p: Point) -> (Step, Option<Point>) {
    let Some(last) = state.last else {
        accept(state, p, false);
        return (Step::Baseline, None);
    };
    if let Some(r) = spec
        .replacements
        .iter()
        .find(|r| last.ts_ms < r.at_ms && r.at_ms <= p.ts_ms)
    {
        let old = r
            .old_final_micro
            .map_or(0, |f| f.saturating_sub(last.micro).max(0));
        let new = p.micro.saturating_sub(r.new_start_micro).max(0);
        let glitch = state.pending;
        accept(state, p, false);
        return (
            delta(old.saturating_add(new), DeltaCause::Replaced, last),
            glitch,
        );
    }
    if p.ts_ms < last.ts_ms {
        return (Step::OutOfOrder, None);
    }
    if p == last {
        return (Step::Duplicate, None);
    }
    if let Some(q) = state.pending {
        if p == q {
            return (Step::Duplicate, None);
        }
        if p.ts_ms < q.ts_ms {
            return (Step::OutOfOrder, None);
        }
    }
    let d = p.micro.saturating_sub(last.micro);
    let pending = state.pending;
    if d >= 0 {
        if let Some(q) = pending.filter(|q| q.micro > last.micro) {
            if p.micro >= q.micro {
                // The reading continues the quarantined jump.
                if plausible_rise(spec, state, last, p) {
                    accept(state, p, true);
                    return (delta(d, DeltaCause::Normal, last), None);
                }
                let rate = rate_per_h(d, p.ts_ms - last.ts_ms);
                if rate <= OVER_LIMIT_CONFIRM_FACTOR * limit(spec, state) {
                    let rate_micro_per_h = rate.ceil() as i64;
                    accept(state, p, true);
                    state.over_limit_micro_per_h =
                        state.over_limit_micro_per_h.max(rate_micro_per_h);
                    return (
                        delta(d, DeltaCause::OverLimit { rate_micro_per_h }, last),
                        None,
                    );
                }
                let from_q = p.micro - q.micro;
                if within(limit(spec, state), from_q, p.ts_ms - q.ts_ms) {
                    accept(state, p, false);
                    return (
                        Step::Delta {
                            delta_micro: from_q,
                            cause: DeltaCause::Rebased,
                            from_ts_ms: q.ts_ms,
                            rebased_from: Some(q),
                        },
                        None,
                    );
                }
                state.pending = Some(p);
                return (Step::Quarantined { from: last }, Some(q));
            }
        }
        // A pending point still set here was a spike above the reading, or a drop that the
        // register has now climbed back from: either way it is resolved.
        if plausible_rise(spec, state, last, p) {
            accept(state, p, true);
            return (delta(d, DeltaCause::Normal, last), pending);
        }
        state.pending = Some(p);
        return (Step::Quarantined { from: last }, pending);
    }
    let elapsed = p.ts_ms - last.ts_ms;
    let rate = limit(spec, state);
    let wrapped = spec.rollover_micro.and_then(|r| {
        let w = r.checked_sub(last.micro)?.checked_add(p.micro)?;
        (p.micro >= 0 && last.micro <= r && within(rate, w, elapsed)).then_some(w)
    });
    if let Some(w) = wrapped {
        accept(state, p, false);
        return (delta(w, DeltaCause::Rollover, last), pending);
    }
    if within(rate, p.micro, elapsed) && p.micro.saturating_mul(2) < last.micro {
        accept(state, p, false);
        return (delta(p.micro, DeltaCause::Reset, last), pending);
    }
    match pending {
        Some(q) if q.micro < last.micro => (Step::BelowHighWater, None),
        _ => {
            state.pending = Some(p);
            (Step::Held { from: last }, pending)
        }
    }
}

/// Moves every point the state holds by `shift_ms`, onto a clock that was stepped.
fn shift(state: &mut CounterState, shift_ms: i64) {
    for p in [
        &mut state.last,
        &mut state.pending,
        &mut state.anchor,
        &mut state.mark,
    ]
    .into_iter()
    .flatten()
    {
        p.ts_ms = p.ts_ms.saturating_add(shift_ms);
    }
}

/// As [`step`], for a reading stamped with the gateway's clock when it arrived (no time of its
/// own). A channel's readings arrive in order, so one stamped before the mark is not late or
/// redelivered: the clock was stepped back (an NTP correction of a clock that ran ahead, a
/// gateway booted with a wrong RTC). [`step`] would call it out of order and count nothing
/// until the clock passed the mark again, an hour of consumption for a 1-hour step.
///
/// Here the channel's state moves onto the new clock: the mark to the reading's instant, the
/// other points with it. An increase since the mark is counted at that instant
/// ([`DeltaCause::ClockStepBack`]: no rate can be judged over an interval the clock cannot
/// measure) and the reading becomes the mark; a pending jump is left for reporting as a glitch
/// resolved by it. A drop is judged by the usual rules as if it came at the mark's instant.
pub fn step_stamped_on_arrival(
    spec: &CounterSpec,
    state: &mut CounterState,
    p: Point,
) -> (Step, Option<Point>) {
    let Some(last) = state.last.filter(|last| p.ts_ms < last.ts_ms) else {
        return step(spec, state, p);
    };
    shift(state, p.ts_ms - last.ts_ms);
    let last = Point {
        ts_ms: p.ts_ms,
        ..last
    };
    let d = p.micro.saturating_sub(last.micro);
    if d < 0 {
        return step(spec, state, p);
    }
    // A pending point that the reading continues (a jump it confirms) was no glitch.
    let glitch = state
        .pending
        .filter(|q| q.micro > p.micro || q.micro < last.micro);
    accept(state, p, false);
    (delta(d, DeltaCause::ClockStepBack, last), glitch)
}

/// Integrates a rate gauge (kW, Nm3/h, kg/h) by the trapezoid rule between consecutive samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaugeStep {
    Started,
    /// The trapezoid between `from` and the sample.
    Integrated {
        delta_micro: i64,
        from: Point,
    },
    /// Samples too far apart to integrate across: the energy in between is unknown, recorded.
    Gap {
        from: Point,
    },
    Duplicate,
    OutOfOrder,
}

pub fn integrate(state: &mut CounterState, p: Point, max_gap_ms: i64) -> GaugeStep {
    let Some(last) = state.last else {
        state.last = Some(p);
        return GaugeStep::Started;
    };
    if p.ts_ms <= last.ts_ms {
        return if p == last {
            GaugeStep::Duplicate
        } else {
            GaugeStep::OutOfOrder
        };
    }
    let elapsed = p.ts_ms - last.ts_ms;
    state.last = Some(p);
    if elapsed > max_gap_ms {
        return GaugeStep::Gap { from: last };
    }
    let mean_micro = (last.micro as f64 + p.micro as f64) / 2.0;
    let delta_micro = (mean_micro * elapsed as f64 / 3_600_000.0).round() as i64;
    GaugeStep::Integrated {
        delta_micro,
        from: last,
    }
}

/// As [`integrate`], for a sample stamped on arrival: one stamped before the last means the
/// clock was stepped back (see [`step_stamped_on_arrival`]). Integration starts again from it:
/// the energy between the two samples is unknown (the clock that would time it jumped) and is
/// reported as a gap.
pub fn integrate_stamped_on_arrival(
    state: &mut CounterState,
    p: Point,
    max_gap_ms: i64,
) -> GaugeStep {
    match state.last {
        Some(last) if p.ts_ms < last.ts_ms => {
            state.last = Some(p);
            GaugeStep::Gap { from: last }
        }
        _ => integrate(state, p, max_gap_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KWH: i64 = 1_000_000;
    const MIN: i64 = 60_000;

    fn spec() -> CounterSpec {
        // Rollover at 100,000 kWh; at most 600 kWh per hour = 10 kWh per minute.
        CounterSpec {
            rollover_micro: Some(100_000 * KWH),
            max_rate_micro_per_h: 600.0 * KWH as f64,
            replacements: Vec::new(),
        }
    }

    fn run_with(spec: &CounterSpec, points: &[(i64, i64)]) -> (Vec<Step>, i64, CounterState) {
        let mut state = CounterState::default();
        let mut total = 0;
        let steps = points
            .iter()
            .map(|&(t, v)| {
                let (s, _) = step(spec, &mut state, Point { micro: v, ts_ms: t });
                if let Step::Delta { delta_micro, .. } = s {
                    total += delta_micro;
                }
                s
            })
            .collect();
        (steps, total, state)
    }

    fn run(points: &[(i64, i64)]) -> (Vec<Step>, i64) {
        let (steps, total, _) = run_with(&spec(), points);
        (steps, total)
    }

    fn d(delta_micro: i64, cause: DeltaCause, from_ts_ms: i64) -> Step {
        Step::Delta {
            delta_micro,
            cause,
            from_ts_ms,
            rebased_from: None,
        }
    }

    #[test]
    fn first_reading_is_a_baseline() {
        let (steps, total) = run(&[(0, 54_321 * KWH)]);
        assert_eq!(steps, vec![Step::Baseline]);
        assert_eq!(total, 0);
    }

    #[test]
    fn rollover_wraps_at_the_configured_value() {
        // 99,995 -> (wrap at 100,000) -> 3: 5 + 3 = 8 kWh in one minute.
        let (steps, total) = run(&[(0, 99_995 * KWH), (MIN, 3 * KWH)]);
        assert_eq!(steps[1], d(8 * KWH, DeltaCause::Rollover, 0));
        assert_eq!(total, 8 * KWH);
    }

    #[test]
    fn reset_to_near_zero_counts_the_new_meters_consumption() {
        // Meter replaced: 40,000 -> 2 kWh after one minute. The new meter's 2 kWh count.
        let (steps, total) = run(&[(0, 40_000 * KWH), (MIN, 2 * KWH), (2 * MIN, 9 * KWH)]);
        assert_eq!(steps[1], d(2 * KWH, DeltaCause::Reset, 0));
        assert_eq!(steps[2], d(7 * KWH, DeltaCause::Normal, MIN));
        assert_eq!(total, 9 * KWH);
    }

    #[test]
    fn a_used_replacement_meter_is_held_until_declared() {
        // Old meter at 40,000; the new one reads 5,000 (not plausible from zero in a minute):
        // held, and the readings after it are below the high-water mark: nothing is counted,
        // nothing is rebased backwards.
        let (steps, total) = run(&[
            (0, 40_000 * KWH),
            (MIN, 5_000 * KWH),
            (2 * MIN, 5_004 * KWH),
        ]);
        assert_eq!(
            steps[1],
            Step::Held {
                from: Point {
                    micro: 40_000 * KWH,
                    ts_ms: 0
                }
            }
        );
        assert_eq!(steps[2], Step::BelowHighWater);
        assert_eq!(total, 0);
    }

    #[test]
    fn a_declared_replacement_counts_both_meters() {
        // Declared: at 30 s the old meter ended at 40,001 and the new one started at 5,000.
        // 40,000 -> 40,001 (old, 1 kWh) + 5,000 -> 5,003 (new, 3 kWh) = 4 kWh, then +4 kWh.
        let mut s = spec();
        s.replacements.push(Replacement {
            at_ms: MIN / 2,
            old_final_micro: Some(40_001 * KWH),
            new_start_micro: 5_000 * KWH,
        });
        let (steps, total, _) = run_with(
            &s,
            &[
                (0, 40_000 * KWH),
                (MIN, 5_003 * KWH),
                (2 * MIN, 5_007 * KWH),
            ],
        );
        assert_eq!(steps[1], d(4 * KWH, DeltaCause::Replaced, 0));
        assert_eq!(steps[2], d(4 * KWH, DeltaCause::Normal, MIN));
        assert_eq!(total, 8 * KWH);
    }

    #[test]
    fn a_spike_is_quarantined_and_a_return_to_normal_discards_it() {
        // 1,000 -> 900,000 (bad read) -> 1,012 two minutes after the baseline (12 kWh, plausible).
        let mut state = CounterState::default();
        let s = spec();
        let p = |micro, ts_ms| Point { micro, ts_ms };
        step(&s, &mut state, p(1_000 * KWH, 0));
        let (q, _) = step(&s, &mut state, p(900_000 * KWH, MIN));
        assert!(matches!(q, Step::Quarantined { .. }));
        let (dl, glitch) = step(&s, &mut state, p(1_012 * KWH, 2 * MIN));
        assert_eq!(dl, d(12 * KWH, DeltaCause::Normal, 0));
        assert_eq!(glitch, Some(p(900_000 * KWH, MIN)));
        assert_eq!(state.pending, None);
    }

    #[test]
    fn a_persistent_huge_jump_is_not_counted() {
        // 1,000 -> 900,000 -> 900,005: the jump (899,000 kWh in a minute, far above 4 x the
        // limit) persists: counting resumes from 900,000 (5 kWh), the jump is not counted.
        let (steps, total) = run(&[
            (0, 1_000 * KWH),
            (MIN, 900_000 * KWH),
            (2 * MIN, 900_005 * KWH),
        ]);
        assert!(matches!(
            steps[2],
            Step::Delta {
                cause: DeltaCause::Rebased,
                delta_micro: 5_000_000,
                from_ts_ms: MIN,
                ..
            }
        ));
        assert_eq!(total, 5 * KWH);
    }

    #[test]
    fn a_meter_slightly_over_its_limit_counts_in_full() {
        // Limit 600 kWh/h; the meter runs at 630 kWh/h = 10.5 kWh per minute for 2 hours.
        // The first over-limit step is quarantined, the next confirms it (average 630 kWh/h,
        // within 4 x 600): both count, the confirmed rate becomes the limit, and every later
        // step counts at once. 120 minutes x 10.5 = 1,260 kWh.
        let points: Vec<(i64, i64)> = (0..=120).map(|i| (i * MIN, i * 10_500_000)).collect();
        let (steps, total, state) = run_with(&spec(), &points);
        assert!(matches!(steps[1], Step::Quarantined { .. }));
        assert_eq!(
            steps[2],
            d(
                21 * KWH,
                DeltaCause::OverLimit {
                    rate_micro_per_h: 630 * KWH
                },
                0
            )
        );
        assert!(steps[3..]
            .iter()
            .all(|s| *s == d(10_500_000, DeltaCause::Normal, s_from(s))));
        assert_eq!(total, 1_260 * KWH);
        assert_eq!(state.over_limit_micro_per_h, 630 * KWH);
        assert_eq!(state.pending, None);
    }

    fn s_from(s: &Step) -> i64 {
        match s {
            Step::Delta { from_ts_ms, .. } => *from_ts_ms,
            _ => -1,
        }
    }

    #[test]
    fn small_backstep_is_held_and_counting_resumes_above_the_mark() {
        // A float register reading 12,345.6 then 12,345.5: held; 12,345.7 passes the mark: 0.1.
        let (steps, total) = run(&[
            (0, 12_345_600_000),
            (MIN, 12_345_500_000),
            (2 * MIN, 12_345_700_000),
        ]);
        assert!(matches!(steps[1], Step::Held { .. }));
        assert_eq!(steps[2], d(100_000, DeltaCause::Normal, 0));
        assert_eq!(total, 100_000);
    }

    /// Steps each (ts, value) as stamped on arrival; the steps and the total counted.
    fn run_on_arrival(points: &[(i64, i64)]) -> (Vec<Step>, i64) {
        let mut state = CounterState::default();
        let mut total = 0;
        let steps = points
            .iter()
            .map(|&(ts_ms, micro)| {
                let (st, _) = step_stamped_on_arrival(&spec(), &mut state, Point { micro, ts_ms });
                if let Step::Delta { delta_micro, .. } = st {
                    total += delta_micro;
                }
                st
            })
            .collect();
        (steps, total)
    }

    #[test]
    fn a_clock_stepped_back_loses_nothing_stamped_on_arrival() {
        // 1,000..1,005 kWh at one a minute; then the clock goes back an hour: the next readings,
        // 1,006..1,009 kWh a minute apart, are stamped 54..57 min before the first. All 9 kWh
        // count: the 1 kWh across the step at its reading's instant, the rest as usual.
        let mut points: Vec<(i64, i64)> = (0..=5).map(|i| (i * MIN, (1_000 + i) * KWH)).collect();
        for k in 0..4 {
            points.push(((6 + k) * MIN - 60 * MIN, (1_006 + k) * KWH));
        }
        let (steps, total) = run_on_arrival(&points);
        assert_eq!(steps[6], d(KWH, DeltaCause::ClockStepBack, -54 * MIN));
        assert_eq!(steps[7], d(KWH, DeltaCause::Normal, -54 * MIN));
        assert_eq!(steps[9], d(KWH, DeltaCause::Normal, -52 * MIN));
        assert_eq!(total, 9 * KWH);
        // With the device's own timestamps the same points are out of order: nothing counts
        // until the clock passes the mark (5 kWh, the first six readings' rise).
        let (steps, total) = run(&points);
        assert_eq!(steps[6], Step::OutOfOrder);
        assert_eq!(total, 5 * KWH);
    }

    #[test]
    fn a_drop_across_a_clock_step_is_still_held() {
        // 1,000 then 1,001 kWh, the clock back an hour, then 400 kWh. Judged as at the mark's
        // instant, 400 kWh is no plausible consumption since zero (a reset) and fits no
        // rollover: held, nothing counted. 1,002 kWh after it counts 1 kWh: 2 kWh in all.
        let points = [
            (0, 1_000 * KWH),
            (MIN, 1_001 * KWH),
            (-58 * MIN, 400 * KWH),
            (-57 * MIN, 1_002 * KWH),
        ];
        let (steps, total) = run_on_arrival(&points);
        assert!(matches!(steps[2], Step::Held { .. }), "{:?}", steps[2]);
        assert_eq!(steps[3], d(KWH, DeltaCause::Normal, -58 * MIN));
        assert_eq!(total, 2 * KWH);
    }

    #[test]
    fn a_gauge_across_a_clock_step_starts_again_with_a_gap() {
        let mut state = CounterState::default();
        let at = |ts_ms, kw: i64| Point {
            micro: kw * KWH,
            ts_ms,
        };
        integrate_stamped_on_arrival(&mut state, at(0, 60), 300_000);
        let step = integrate_stamped_on_arrival(&mut state, at(MIN, 60), 300_000);
        assert_eq!(
            step,
            GaugeStep::Integrated {
                delta_micro: KWH,
                from: at(0, 60)
            },
            "60 kW for a minute: 1 kWh"
        );
        let step = integrate_stamped_on_arrival(&mut state, at(-59 * MIN, 60), 300_000);
        assert_eq!(step, GaugeStep::Gap { from: at(MIN, 60) });
        let step = integrate_stamped_on_arrival(&mut state, at(-58 * MIN, 60), 300_000);
        assert_eq!(
            step,
            GaugeStep::Integrated {
                delta_micro: KWH,
                from: at(-59 * MIN, 60)
            }
        );
    }

    #[test]
    fn a_redelivered_run_of_older_values_adds_nothing() {
        // 1,000..1,005 kWh at one a minute, then 1,002..1,005 again with later arrival stamps,
        // then 1,006: 5 + 1 = 6 kWh, never the redelivered 3 kWh again.
        let mut points: Vec<(i64, i64)> = (0..=5).map(|i| (i * MIN, (1_000 + i) * KWH)).collect();
        for (k, v) in (1_002..=1_005).enumerate() {
            points.push(((6 + k as i64) * MIN, v * KWH));
        }
        points.push((10 * MIN, 1_006 * KWH));
        let (steps, total) = run(&points);
        assert!(matches!(steps[6], Step::Held { .. }));
        assert_eq!(steps[7], Step::BelowHighWater);
        assert_eq!(steps[8], Step::BelowHighWater);
        assert_eq!(steps[9], d(0, DeltaCause::Normal, 5 * MIN));
        assert_eq!(total, 6 * KWH);
    }

    #[test]
    fn a_burst_stamped_on_arrival_counts_in_arrival_order() {
        // 1.5 kWh every 2.5 s (2,160 kWh/h; limit 3,000 kWh/h). ecogate was down for 12.5 s:
        // the five readings published meanwhile arrive in one millisecond. Each is judged by
        // the rate since the anchor, so all count: 12 x 1.5 = 18 kWh from 1,000 to 1,018.
        let s = CounterSpec {
            rollover_micro: None,
            max_rate_micro_per_h: 3_000.0 * KWH as f64,
            replacements: Vec::new(),
        };
        let step_ms = 2_500;
        let mut points: Vec<(i64, i64)> = (0..=6)
            .map(|i| (i * step_ms, 1_000 * KWH + i * 1_500_000))
            .collect();
        let burst_at = 12 * step_ms + 40;
        for i in 7..=11 {
            points.push((burst_at, 1_000 * KWH + i * 1_500_000));
        }
        points.push((burst_at + step_ms, 1_018 * KWH));
        let (steps, total, _) = run_with(&s, &points);
        assert!(
            steps.iter().skip(1).all(|s| matches!(
                s,
                Step::Delta {
                    cause: DeltaCause::Normal,
                    ..
                }
            )),
            "{steps:?}"
        );
        assert_eq!(total, 18 * KWH);
    }

    #[test]
    fn duplicates_and_out_of_order_add_nothing() {
        let (steps, total) = run(&[
            (2 * MIN, 100 * KWH),
            (2 * MIN, 100 * KWH),
            (MIN, 99 * KWH),
            (3 * MIN, 101 * KWH),
        ]);
        assert_eq!(steps[1], Step::Duplicate);
        assert_eq!(steps[2], Step::OutOfOrder);
        assert_eq!(total, KWH);
    }

    #[test]
    fn long_outage_is_attributed_at_the_next_reading() {
        // Down for 10 h at up to 600 kWh/h: 4,000 kWh in that time is plausible and counted,
        // over the interval (0, 10 h].
        let (steps, total) = run(&[(0, 10_000 * KWH), (600 * MIN, 14_000 * KWH)]);
        assert_eq!(steps[1], d(4_000 * KWH, DeltaCause::Normal, 0));
        assert_eq!(total, 4_000 * KWH);
    }

    #[test]
    fn gauge_trapezoid_and_gap() {
        let mut state = CounterState::default();
        let p = |micro, ts_ms| Point { micro, ts_ms };
        // 10 kW then 20 kW 6 minutes later: mean 15 kW x 0.1 h = 1.5 kWh.
        assert_eq!(
            integrate(&mut state, p(10 * KWH, 0), 10 * MIN),
            GaugeStep::Started
        );
        assert_eq!(
            integrate(&mut state, p(20 * KWH, 6 * MIN), 10 * MIN),
            GaugeStep::Integrated {
                delta_micro: 1_500_000,
                from: p(10 * KWH, 0)
            }
        );
        assert!(matches!(
            integrate(&mut state, p(20 * KWH, 60 * MIN), 10 * MIN),
            GaugeStep::Gap { .. }
        ));
    }
}
