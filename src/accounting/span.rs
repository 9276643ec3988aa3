//! Long gaps kept whole.
//!
//! A delta over more than [`SPAN_AFTER_MS`] (a meter read once a quarter, a gateway down for a
//! week, a year replayed from three readings) would give a part to every minute, quarter-hour and
//! hour window in between: a year-long gap staged half a million window rows per entity. Such a
//! delta is kept as one [`Span`] instead, and a window's figure is its stored row plus the parts
//! of the spans that overlap it, computed when read by [`Span::part_in`] with the same
//! [`Interval::part`] the dense path uses. Parts telescope (each is a difference of one
//! cumulative function), so the sum of a run of windows' parts is the part over their union, and
//! every query gives, to the micro unit, what the dense rows would have held.

use super::entity::{ChannelRef, Entity};
use super::metric::Sums;
use super::split::Interval;
use super::window::{next_window_start_ms, LocalTime, WindowKind};
use crate::config::Retention;
use chrono_tz::Tz;

/// Intervals longer than this are kept as spans. A day: a delta within it costs at most about
/// 1,560 window rows per entity (the dense path's bound), and live polling, hourly and daily
/// readings never make a span, so the spans a window query scans stay few.
pub const SPAN_AFTER_MS: i64 = 86_400_000;

/// At most this many windows of one kind receive parts of one delta (about 69 days of minutes).
const MAX_SPLIT_WINDOWS: i64 = 100_000;

/// One channel's delta over a long interval, with its site and firm (the entities it adds to).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub channel: ChannelRef,
    pub site: u32,
    pub firm: u32,
    pub interval: Interval,
    /// The whole delta's contributions to every metric, in micro units.
    pub sums: Sums,
}

/// The oldest instant whose window of `kind` takes a part of a delta ending at `t1_ms`: windows
/// older than the store keeps when the delta arrives would be deleted at once, and more than
/// [`MAX_SPLIT_WINDOWS`] of a kind were never written. The one rule for the dense path and spans.
pub fn keep_from_ms(retention: &Retention, kind: WindowKind, t1_ms: i64) -> i64 {
    retention
        .cutoff_ms(kind, t1_ms)
        .max(t1_ms.saturating_sub(MAX_SPLIT_WINDOWS * kind.max_len_ms()))
}

/// The first window start of `kind` at or after `x_ms`.
fn ceil_start_ms(kind: WindowKind, x_ms: i64, tz: Tz) -> Option<i64> {
    let start = LocalTime::new(x_ms, tz)?.window_start_ms(kind, tz);
    Some(if start == x_ms {
        start
    } else {
        next_window_start_ms(kind, start, tz)
    })
}

impl Span {
    pub fn entities(&self) -> [Entity; 4] {
        [
            Entity::Meter(self.channel.meter),
            Entity::Site(self.site),
            Entity::Firm(self.firm),
            Entity::Park,
        ]
    }

    pub fn adds_to(&self, entity: Entity) -> bool {
        match entity {
            Entity::Meter(m) => m == self.channel.meter,
            Entity::Site(s) => s == self.site,
            Entity::Firm(f) => f == self.firm,
            Entity::Park => true,
        }
    }

    /// The start of the first window of `kind` that takes a part: the window holding the later
    /// of the interval's start and the retention bound, and none of those the store deleted
    /// (starts before `deleted_before_ms`; `i64::MIN` when nothing was deleted).
    pub fn first_window_ms(
        &self,
        kind: WindowKind,
        tz: Tz,
        retention: &Retention,
        deleted_before_ms: i64,
    ) -> Option<i64> {
        let from = self
            .interval
            .t0_ms
            .max(keep_from_ms(retention, kind, self.interval.t1_ms));
        let mut first = LocalTime::new(from, tz)?.window_start_ms(kind, tz);
        if deleted_before_ms > first {
            first = ceil_start_ms(kind, deleted_before_ms, tz)?;
        }
        (first < self.interval.t1_ms).then_some(first)
    }

    /// The sum of this span's parts in the windows of `kind` that start in `[from_ms, to_ms)`:
    /// exactly what those windows' rows would hold had the delta been split window by window.
    pub fn part_in(
        &self,
        kind: WindowKind,
        from_ms: i64,
        to_ms: i64,
        tz: Tz,
        retention: &Retention,
        deleted_before_ms: i64,
    ) -> Sums {
        let mut out = Sums::default();
        let Some(first) = self.first_window_ms(kind, tz, retention, deleted_before_ms) else {
            return out;
        };
        let t1 = self.interval.t1_ms;
        // The windows starting in [from, to) that take parts cover [lo, hi) of the timeline.
        let lo = if from_ms <= first {
            first
        } else if from_ms >= t1 {
            return out;
        } else {
            match ceil_start_ms(kind, from_ms, tz) {
                Some(s) => s,
                None => return out,
            }
        };
        let hi = if to_ms >= t1 {
            t1
        } else if to_ms <= first {
            return out;
        } else {
            match ceil_start_ms(kind, to_ms, tz) {
                Some(s) => s,
                None => return out,
            }
        };
        if hi <= lo {
            return out;
        }
        for (slot, total) in out.0.iter_mut().zip(self.sums.0.iter()) {
            if *total != 0 {
                *slot = self.interval.part(*total, lo, hi);
            }
        }
        out
    }

    /// The window starts of `kind` that take a part, from `floor_ms` on (for a sink that writes
    /// each window's total): in time order, ending before the interval's end.
    pub fn window_starts(
        &self,
        kind: WindowKind,
        floor_ms: i64,
        tz: Tz,
        retention: &Retention,
    ) -> impl Iterator<Item = i64> + '_ {
        let t1 = self.interval.t1_ms;
        let first = self
            .first_window_ms(kind, tz, retention, floor_ms)
            .unwrap_or(t1);
        std::iter::successors(Some(first), move |&s| {
            let next = next_window_start_ms(kind, s, tz);
            (next > s && next < t1).then_some(next)
        })
        .take_while(move |&s| s < t1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::metric::Metric;
    use crate::accounting::split::Profile;

    fn retention(minute_days: u32) -> Retention {
        Retention {
            readings_days: 0,
            minute_days,
            quarter_hour_days: 0,
            hour_days: 0,
            events_days: 0,
        }
    }

    fn span(t0_ms: i64, t1_ms: i64, kwh_micro: i64) -> Span {
        let mut sums = Sums::default();
        sums.add(Metric::GridImportKwh, kwh_micro);
        Span {
            channel: ChannelRef {
                meter: 0,
                channel: 0,
            },
            site: 0,
            firm: 0,
            interval: Interval {
                t0_ms,
                t1_ms,
                profile: Profile::Linear,
            },
            sums,
        }
    }

    #[test]
    fn window_by_window_parts_equal_the_part_of_their_union() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let r = retention(0);
        // 1,000,003 µkWh over 3 days and 7 minutes, starting 20 s into a minute.
        let s = span(20_000, 3 * 86_400_000 + 7 * 60_000, 1_000_003);
        for kind in WindowKind::ALL.iter().copied() {
            let starts: Vec<i64> = s.window_starts(kind, i64::MIN, tz, &r).collect();
            let each: Vec<i64> = starts
                .iter()
                .map(|&w| {
                    s.part_in(kind, w, w + 1, tz, &r, i64::MIN)
                        .micro(Metric::GridImportKwh)
                })
                .collect();
            assert_eq!(each.iter().sum::<i64>(), 1_000_003, "{kind}");
            // Any run of windows: the sum of their parts is the part over the run.
            let (a, b) = (starts.len() / 3, 2 * starts.len() / 3 + 1);
            let run: i64 = each[a..b].iter().sum();
            assert_eq!(
                s.part_in(kind, starts[a], starts[b - 1] + 1, tz, &r, i64::MIN)
                    .micro(Metric::GridImportKwh),
                run,
                "{kind}"
            );
        }
        // Minute windows: (0:00:20, 3 d 0:07:00] touches the minutes from 0:00 to 3 d 0:06,
        // 3 x 1,440 + 7 of them (the end sits on a boundary and closes the minute before).
        assert_eq!(
            s.window_starts(WindowKind::Minute, i64::MIN, tz, &r)
                .count(),
            3 * 1440 + 7
        );
    }

    #[test]
    fn retention_clips_fine_windows_as_the_dense_path_does() {
        let tz: Tz = "UTC".parse().unwrap();
        // 30 days, 1 day of minute windows kept: only the last day's minutes take parts.
        let s = span(0, 30 * 86_400_000, 30_000_000);
        let r = retention(1);
        let minutes = s
            .part_in(WindowKind::Minute, i64::MIN, i64::MAX, tz, &r, i64::MIN)
            .micro(Metric::GridImportKwh);
        assert_eq!(minutes, 1_000_000); // one day of 30: 30,000,000 / 30
        let days = s
            .part_in(WindowKind::Day, i64::MIN, i64::MAX, tz, &r, i64::MIN)
            .micro(Metric::GridImportKwh);
        assert_eq!(days, 30_000_000);
        // Day windows deleted before day 10 (by a retention run): days 10..30 remain, 20/30.
        let kept = s
            .part_in(WindowKind::Day, 0, i64::MAX, tz, &r, 10 * 86_400_000)
            .micro(Metric::GridImportKwh);
        assert_eq!(kept, 20_000_000);
    }
}
