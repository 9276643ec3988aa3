//! Aggregation windows, aligned to the park's local calendar.
//!
//! A day, month or year is the park's (Asia/Shanghai by default), not UTC's: a factory's "day"
//! starts at local midnight. Window starts are stored as UTC epoch milliseconds.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Timelike};
use chrono_tz::Tz;

pub use crate::config::window::WindowKind;

/// Local calendar fields of one instant, computed once and shared by every window kind.
#[derive(Debug, Clone, Copy)]
pub struct LocalTime {
    ts_ms: i64,
    naive: NaiveDateTime,
}

impl LocalTime {
    pub fn new(ts_ms: i64, tz: Tz) -> Option<LocalTime> {
        let utc = DateTime::from_timestamp_millis(ts_ms)?;
        Some(LocalTime {
            ts_ms,
            naive: utc.with_timezone(&tz).naive_local(),
        })
    }

    /// The UTC start (epoch ms) of the window of `kind` that holds this instant.
    pub fn window_start_ms(&self, kind: WindowKind, tz: Tz) -> i64 {
        let n = self.naive;
        // Windows up to an hour are found by subtracting the local time already elapsed in them,
        // with no time-zone lookup: offsets change on hour boundaries in practice, so the
        // instant's offset holds for its whole window. This is the hot path of the accounting.
        let into_minute_ms = n.second() as i64 * 1000 + (n.nanosecond() / 1_000_000) as i64;
        let start = match kind {
            WindowKind::Minute => return self.ts_ms - into_minute_ms,
            WindowKind::QuarterHour => {
                return self.ts_ms - into_minute_ms - (n.minute() % 15) as i64 * 60_000
            }
            WindowKind::Hour => return self.ts_ms - into_minute_ms - n.minute() as i64 * 60_000,
            WindowKind::Day => n.date().and_hms_opt(0, 0, 0),
            WindowKind::Month => {
                NaiveDate::from_ymd_opt(n.year(), n.month(), 1).and_then(|d| d.and_hms_opt(0, 0, 0))
            }
            WindowKind::Year => {
                NaiveDate::from_ymd_opt(n.year(), 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0))
            }
        }
        .expect("truncating a valid local time gives a valid local time");
        local_to_utc_ms(start, tz)
    }
}

impl WindowKind {
    /// The window's length when it is fixed (up to an hour), else its longest (a 25-hour day,
    /// a 31-day month, a 366-day year).
    pub fn max_len_ms(self) -> i64 {
        match self {
            WindowKind::Minute => 60_000,
            WindowKind::QuarterHour => 900_000,
            WindowKind::Hour => 3_600_000,
            WindowKind::Day => 25 * 3_600_000,
            WindowKind::Month => 31 * 86_400_000,
            WindowKind::Year => 366 * 86_400_000,
        }
    }
}

/// The start of the window of `kind` that follows the one starting at `start_ms` (the end of
/// that window), in the park's calendar.
pub fn next_window_start_ms(kind: WindowKind, start_ms: i64, tz: Tz) -> i64 {
    if matches!(
        kind,
        WindowKind::Minute | WindowKind::QuarterHour | WindowKind::Hour
    ) {
        return start_ms + kind.max_len_ms();
    }
    let Some(local) = LocalTime::new(start_ms, tz) else {
        return i64::MAX;
    };
    let d = local.naive.date();
    let next = match kind {
        WindowKind::Day => d.succ_opt(),
        WindowKind::Month => {
            let (y, m) = if d.month() == 12 {
                (d.year() + 1, 1)
            } else {
                (d.year(), d.month() + 1)
            };
            NaiveDate::from_ymd_opt(y, m, 1)
        }
        _ => NaiveDate::from_ymd_opt(d.year() + 1, 1, 1),
    };
    match next.and_then(|n| n.and_hms_opt(0, 0, 0)) {
        Some(n) => local_to_utc_ms(n, tz),
        None => i64::MAX,
    }
}

/// Maps a local wall-clock time to UTC. In a DST gap the wall time does not exist; the window
/// then starts at the first instant after the gap, which is what a local clock would show.
/// The UTC instant (epoch ms) of a local date's midnight (the first valid minute after it when a
/// clock change skips midnight): where a local day, month or year window starts.
pub fn local_midnight_ms(date: NaiveDate, tz: Tz) -> i64 {
    local_to_utc_ms(date.and_hms_opt(0, 0, 0).expect("midnight exists"), tz)
}

fn local_to_utc_ms(local: NaiveDateTime, tz: Tz) -> i64 {
    match tz.from_local_datetime(&local).earliest() {
        Some(dt) => dt.timestamp_millis(),
        None => {
            let mut probe = local;
            for _ in 0..180 {
                probe += chrono::Duration::minutes(1);
                if let Some(dt) = tz.from_local_datetime(&probe).earliest() {
                    return dt.timestamp_millis();
                }
            }
            local.and_utc().timestamp_millis()
        }
    }
}

/// Length of the local calendar year holding `ts_ms`, in days, and the days elapsed in it up
/// to `ts_ms` (fractional): used to annualise year-to-date figures.
pub fn year_progress(ts_ms: i64, tz: Tz) -> Option<(f64, f64)> {
    let local = LocalTime::new(ts_ms, tz)?;
    let year = local.naive.year();
    let start = local.window_start_ms(WindowKind::Year, tz);
    let next = NaiveDate::from_ymd_opt(year + 1, 1, 1)?.and_hms_opt(0, 0, 0)?;
    let end = local_to_utc_ms(next, tz);
    let day_ms = 86_400_000.0;
    Some((
        (end - start) as f64 / day_ms,
        (ts_ms - start) as f64 / day_ms,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_shanghai_calendar() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        // 2024-03-31T16:37:12Z is 2024-04-01 00:37:12 in Shanghai (UTC+8).
        let ts = DateTime::parse_from_rfc3339("2024-03-31T16:37:12Z")
            .unwrap()
            .timestamp_millis();
        let lt = LocalTime::new(ts, tz).unwrap();
        let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
        assert_eq!(
            lt.window_start_ms(WindowKind::Minute, tz),
            utc("2024-03-31T16:37:00Z")
        );
        assert_eq!(
            lt.window_start_ms(WindowKind::QuarterHour, tz),
            utc("2024-03-31T16:30:00Z")
        );
        assert_eq!(
            lt.window_start_ms(WindowKind::Hour, tz),
            utc("2024-03-31T16:00:00Z")
        );
        // Local day, month and year start at local midnight = 16:00 UTC the day before.
        assert_eq!(
            lt.window_start_ms(WindowKind::Day, tz),
            utc("2024-03-31T16:00:00Z")
        );
        assert_eq!(
            lt.window_start_ms(WindowKind::Month, tz),
            utc("2024-03-31T16:00:00Z")
        );
        assert_eq!(
            lt.window_start_ms(WindowKind::Year, tz),
            utc("2023-12-31T16:00:00Z")
        );
        let (len, elapsed) = year_progress(ts, tz).unwrap();
        assert_eq!(len, 366.0); // 2024 is a leap year
                                // Jan 31 + Feb 29 + Mar 31 = 91 days, plus 37 min 12 s.
        assert!((elapsed - (91.0 + (37.0 * 60.0 + 12.0) / 86_400.0)).abs() < 1e-9);
    }

    #[test]
    fn dst_gap_does_not_panic() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 2024-03-31 01:30Z is 03:30 local, just after the 02:00->03:00 jump.
        let ts = DateTime::parse_from_rfc3339("2024-03-31T01:30:00Z")
            .unwrap()
            .timestamp_millis();
        let lt = LocalTime::new(ts, tz).unwrap();
        assert!(lt.window_start_ms(WindowKind::Hour, tz) <= ts);
        assert!(lt.window_start_ms(WindowKind::Day, tz) <= ts);
    }
}
