//! Splitting a delta over the windows its interval covers.
//!
//! A cumulative reading at `t1` closes the interval `(t0, t1]` since the channel's previous
//! point; its delta belongs to the windows that interval covers, in proportion to time (for a
//! counter) or to the trapezoid's area (for an integrated gauge). Every metric of the delta is
//! split through one cumulative function `C(x)`, the part of the total up to instant `x`, with
//! `C(t0) = 0` and `C(t1) = total`: a window `[a, b)` receives `C(min(b, t1)) - C(max(a, t0))`.
//! The parts of any partition telescope to the total, so the minutes of a day add up to the
//! day, and the days of a year to the year, exactly, in integer micro units.

/// How the quantity accrued over the interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Profile {
    /// Evenly in time: a counter's delta, which says nothing of when within the interval.
    Linear,
    /// A rate that moved linearly from `p0` to `p1` (the trapezoid rule's assumption).
    Trapezoid { p0: f64, p1: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub t0_ms: i64,
    pub t1_ms: i64,
    pub profile: Profile,
}

impl Interval {
    /// The part of `total` accrued in `(t0, x]`.
    pub fn cumulative(&self, total: i64, x_ms: i64) -> i64 {
        if x_ms >= self.t1_ms {
            return total;
        }
        if x_ms <= self.t0_ms {
            return 0;
        }
        let tau = (x_ms - self.t0_ms) as i128;
        let span = (self.t1_ms - self.t0_ms) as i128;
        if let Profile::Trapezoid { p0, p1 } = self.profile {
            let (tau, span) = (tau as f64, span as f64);
            let area = (p0 + p1) * span * span;
            if area > 0.0 && p0 >= 0.0 && p1 >= 0.0 {
                let share =
                    ((2.0 * p0 * tau * span + (p1 - p0) * tau * tau) / area).clamp(0.0, 1.0);
                return (total as f64 * share).round() as i64;
            }
        }
        // Rounded to nearest (half up) in exact integer arithmetic.
        (((total as i128) * tau * 2 + span).div_euclid(2 * span)) as i64
    }

    /// The part of `total` accrued in `[a, b)` of the timeline, clipped to the interval.
    pub fn part(&self, total: i64, a_ms: i64, b_ms: i64) -> i64 {
        let lo = a_ms.max(self.t0_ms);
        let hi = b_ms.min(self.t1_ms);
        if hi <= lo {
            return 0;
        }
        self.cumulative(total, hi) - self.cumulative(total, lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_parts_add_up_exactly() {
        // 1,000,001 micro over 3 equal thirds: 333,334 + 333,333 + 333,334 (C rounds half up:
        // C(1/3) = 333,333.67 -> 333,334, C(2/3) = 666,667.33 -> 666,667).
        let i = Interval {
            t0_ms: 0,
            t1_ms: 3,
            profile: Profile::Linear,
        };
        let parts: Vec<i64> = (0..3).map(|k| i.part(1_000_001, k, k + 1)).collect();
        assert_eq!(parts, vec![333_334, 333_333, 333_334]);
        assert_eq!(parts.iter().sum::<i64>(), 1_000_001);
    }

    #[test]
    fn negative_totals_split_exactly() {
        let i = Interval {
            t0_ms: 10,
            t1_ms: 17,
            profile: Profile::Linear,
        };
        let parts: Vec<i64> = (10..17).map(|k| i.part(-1_000, k, k + 1)).collect();
        assert_eq!(parts.iter().sum::<i64>(), -1_000);
    }

    #[test]
    fn trapezoid_splits_by_area() {
        // 0 kW rising to 20 kW over 2 h: 20 kWh in all; the first hour holds the triangle up to
        // 10 kW (5 kWh), the second 15 kWh.
        let i = Interval {
            t0_ms: 0,
            t1_ms: 7_200_000,
            profile: Profile::Trapezoid { p0: 0.0, p1: 20.0 },
        };
        assert_eq!(i.part(20_000_000, 0, 3_600_000), 5_000_000);
        assert_eq!(i.part(20_000_000, 3_600_000, 7_200_000), 15_000_000);
    }
}
