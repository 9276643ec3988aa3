//! Cumulative-counter logic: from successive register values to consumption, with no energy
//! invented and none lost.
//!
//! Pure state machine, no I/O. Per channel it keeps the last accepted point and, when a reading
//! looked implausible, that reading as a *pending* candidate. The rules:
//! - The first reading sets the baseline: no energy is invented from a meter's lifetime total.
//! - An increase within `max_rate x elapsed` is consumption.
//! - A decrease that fits a wrap at the configured rollover value is a rollover.
//! - A decrease to a value that is itself plausible consumption since zero is a reset or a new
//!   meter: the new value counts in full (none of the new meter's consumption is lost).
//! - Anything else (a spike, or a drop to an implausible value) is quarantined: not added, not
//!   dropped silently, recorded as an event with both values. If the next reading continues
//!   plausibly from the quarantined value, the jump was real (e.g. a replaced meter that did not
//!   start at zero) and counting goes on from there; if it continues from the old baseline, the
//!   quarantined value was a glitch.
//! - Readings at or before the last accepted instant add nothing (duplicate or out-of-order).
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
    pub last: Option<Point>,
    pub pending: Option<Point>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterSpec {
    pub rollover_micro: Option<i64>,
    pub max_rate_micro_per_h: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaCause {
    Normal,
    Rollover,
    /// The register dropped to a value plausible as consumption since zero.
    Reset,
    /// A quarantined jump was confirmed by the next reading; counting resumed from it.
    Rebased,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Baseline,
    Delta {
        delta_micro: i64,
        cause: DeltaCause,
        /// For `Rebased`: the jump that was quarantined and is now confirmed as real.
        rebased_from: Option<Point>,
    },
    Duplicate,
    OutOfOrder,
    /// The reading is held as pending; `from` is the last accepted point.
    Quarantined {
        from: Point,
    },
}

/// Highest plausible increase over `elapsed_ms`, at least one second's worth so that two
/// readings in the same second can still advance.
fn cap_micro(spec: &CounterSpec, elapsed_ms: i64) -> f64 {
    spec.max_rate_micro_per_h * (elapsed_ms.max(1000) as f64) / 3_600_000.0
}

fn plausible(spec: &CounterSpec, delta: i64, elapsed_ms: i64) -> bool {
    delta >= 0 && (delta as f64) <= cap_micro(spec, elapsed_ms)
}

/// Feeds one reading to a channel's state. Returns what it meant; `glitch` is the pending point
/// that this reading showed to be a glitch, if any.
pub fn step(spec: &CounterSpec, state: &mut CounterState, p: Point) -> (Step, Option<Point>) {
    let Some(last) = state.last else {
        state.last = Some(p);
        return (Step::Baseline, None);
    };
    if p.ts_ms <= last.ts_ms {
        let step = if p.ts_ms == last.ts_ms && p.micro == last.micro {
            Step::Duplicate
        } else {
            Step::OutOfOrder
        };
        return (step, None);
    }
    if let Some(pending) = state.pending {
        if p.ts_ms <= pending.ts_ms {
            let step = if p == pending {
                Step::Duplicate
            } else {
                Step::OutOfOrder
            };
            return (step, None);
        }
    }
    let elapsed = p.ts_ms - last.ts_ms;
    let delta = p.micro.saturating_sub(last.micro);
    let accepted = if plausible(spec, delta, elapsed) {
        Some((delta, DeltaCause::Normal))
    } else if delta < 0 {
        let wrapped = spec.rollover_micro.and_then(|r| {
            let w = r.checked_sub(last.micro)?.checked_add(p.micro)?;
            (p.micro >= 0 && last.micro <= r && plausible(spec, w, elapsed)).then_some(w)
        });
        match wrapped {
            Some(w) => Some((w, DeltaCause::Rollover)),
            None if plausible(spec, p.micro, elapsed) => Some((p.micro, DeltaCause::Reset)),
            None => None,
        }
    } else {
        None
    };
    if let Some((delta_micro, cause)) = accepted {
        let glitch = state.pending.take();
        state.last = Some(p);
        return (
            Step::Delta {
                delta_micro,
                cause,
                rebased_from: None,
            },
            glitch,
        );
    }
    if let Some(pending) = state.pending {
        let from_pending = p.micro.saturating_sub(pending.micro);
        if plausible(spec, from_pending, p.ts_ms - pending.ts_ms) {
            state.pending = None;
            state.last = Some(p);
            return (
                Step::Delta {
                    delta_micro: from_pending,
                    cause: DeltaCause::Rebased,
                    rebased_from: Some(pending),
                },
                None,
            );
        }
    }
    let glitch = state.pending.replace(p);
    (Step::Quarantined { from: last }, glitch)
}

/// Integrates a rate gauge (kW, Nm3/h, kg/h) by the trapezoid rule between consecutive samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaugeStep {
    Started,
    Integrated {
        delta_micro: i64,
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
    GaugeStep::Integrated { delta_micro }
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
        }
    }

    fn run(points: &[(i64, i64)]) -> (Vec<Step>, i64) {
        let mut state = CounterState::default();
        let mut total = 0;
        let steps = points
            .iter()
            .map(|&(t, v)| {
                let (s, _) = step(&spec(), &mut state, Point { micro: v, ts_ms: t });
                if let Step::Delta { delta_micro, .. } = s {
                    total += delta_micro;
                }
                s
            })
            .collect();
        (steps, total)
    }

    fn delta(d: i64, cause: DeltaCause) -> Step {
        Step::Delta {
            delta_micro: d,
            cause,
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
        assert_eq!(steps[1], delta(8 * KWH, DeltaCause::Rollover));
        assert_eq!(total, 8 * KWH);
    }

    #[test]
    fn reset_to_near_zero_counts_the_new_meters_consumption() {
        // Meter replaced: 40,000 -> 2 kWh after one minute. The new meter's 2 kWh count.
        let (steps, total) = run(&[(0, 40_000 * KWH), (MIN, 2 * KWH), (2 * MIN, 9 * KWH)]);
        assert_eq!(steps[1], delta(2 * KWH, DeltaCause::Reset));
        assert_eq!(steps[2], delta(7 * KWH, DeltaCause::Normal));
        assert_eq!(total, 9 * KWH);
    }

    #[test]
    fn replacement_with_a_used_meter_is_quarantined_then_rebased() {
        // Old meter at 40,000; new one arrives reading 5,000 (not plausible from zero in a
        // minute), then 5,004: the jump is real, counting resumes from 5,000 (4 kWh).
        let (steps, total) = run(&[
            (0, 40_000 * KWH),
            (MIN, 5_000 * KWH),
            (2 * MIN, 5_004 * KWH),
        ]);
        assert_eq!(
            steps[1],
            Step::Quarantined {
                from: Point {
                    micro: 40_000 * KWH,
                    ts_ms: 0
                }
            }
        );
        assert_eq!(
            steps[2],
            Step::Delta {
                delta_micro: 4 * KWH,
                cause: DeltaCause::Rebased,
                rebased_from: Some(Point {
                    micro: 5_000 * KWH,
                    ts_ms: MIN
                }),
            }
        );
        assert_eq!(total, 4 * KWH);
    }

    #[test]
    fn a_spike_is_quarantined_and_a_return_to_normal_discards_it() {
        // 1,000 -> 900,000 (bad read) -> 1,012 two minutes after the baseline (12 kWh, plausible).
        let mut state = CounterState::default();
        let s = spec();
        step(
            &s,
            &mut state,
            Point {
                micro: 1_000 * KWH,
                ts_ms: 0,
            },
        );
        let (q, _) = step(
            &s,
            &mut state,
            Point {
                micro: 900_000 * KWH,
                ts_ms: MIN,
            },
        );
        assert!(matches!(q, Step::Quarantined { .. }));
        let (d, glitch) = step(
            &s,
            &mut state,
            Point {
                micro: 1_012 * KWH,
                ts_ms: 2 * MIN,
            },
        );
        assert_eq!(d, delta(12 * KWH, DeltaCause::Normal));
        assert_eq!(
            glitch,
            Some(Point {
                micro: 900_000 * KWH,
                ts_ms: MIN
            })
        );
        assert_eq!(state.pending, None);
    }

    #[test]
    fn small_backstep_is_not_a_reset() {
        // A float register reading 12,345.6 then 12,345.5: not plausible from zero, so held.
        let (steps, total) = run(&[
            (0, 12_345_600_000),
            (MIN, 12_345_500_000),
            (2 * MIN, 12_345_700_000),
        ]);
        assert!(matches!(steps[1], Step::Quarantined { .. }));
        assert_eq!(steps[2], delta(100_000, DeltaCause::Normal));
        assert_eq!(total, 100_000);
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
        // Down for 10 h at up to 600 kWh/h: 4,000 kWh in that time is plausible and counted.
        let (steps, total) = run(&[(0, 10_000 * KWH), (600 * MIN, 14_000 * KWH)]);
        assert_eq!(steps[1], delta(4_000 * KWH, DeltaCause::Normal));
        assert_eq!(total, 4_000 * KWH);
    }

    #[test]
    fn gauge_trapezoid_and_gap() {
        let mut state = CounterState::default();
        // 10 kW then 20 kW 6 minutes later: mean 15 kW x 0.1 h = 1.5 kWh.
        assert_eq!(
            integrate(
                &mut state,
                Point {
                    micro: 10 * KWH,
                    ts_ms: 0
                },
                10 * MIN
            ),
            GaugeStep::Started
        );
        assert_eq!(
            integrate(
                &mut state,
                Point {
                    micro: 20 * KWH,
                    ts_ms: 6 * MIN
                },
                10 * MIN
            ),
            GaugeStep::Integrated {
                delta_micro: 1_500_000
            }
        );
        assert!(matches!(
            integrate(
                &mut state,
                Point {
                    micro: 20 * KWH,
                    ts_ms: 60 * MIN
                },
                10 * MIN
            ),
            GaugeStep::Gap { .. }
        ));
    }
}
