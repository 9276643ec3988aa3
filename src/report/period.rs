//! Report periods as people write them: `2026-10-12` (a day), `2026-10` (a month), `2026-Q3` (a
//! quarter), `2026` (a year), `2026-10-01..2026-10-15` (days, both included); in the park's time
//! zone, and with the periods they are compared with (the one before, the same one a year
//! earlier).

use crate::accounting::window::local_midnight_ms;
use chrono::{Datelike, Months, NaiveDate};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Day,
    Month,
    Quarter,
    Year,
    Range,
}

/// Local days `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportPeriod {
    pub kind: Kind,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl ReportPeriod {
    pub fn parse(text: &str) -> Result<ReportPeriod, String> {
        let t = text.trim();
        let bad = || {
            format!("`{t}` is not a period: give 2026-10-12, 2026-10, 2026-Q3, 2026 or 2026-10-01..2026-10-15")
        };
        let day = |s: &str| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| bad());
        if let Some((a, b)) = t.split_once("..") {
            let (first, last) = (day(a)?, day(b)?);
            if last < first {
                return Err(format!("`{t}`: the range ends before it starts"));
            }
            return Ok(ReportPeriod {
                kind: Kind::Range,
                first,
                last,
            });
        }
        if let Ok(d) = day(t) {
            return Ok(ReportPeriod {
                kind: Kind::Day,
                first: d,
                last: d,
            });
        }
        if let Some((y, q)) = t
            .split_once(['-', ' '])
            .filter(|(_, q)| q.starts_with(['Q', 'q']))
        {
            let year: i32 = y.parse().map_err(|_| bad())?;
            let q: u32 = q[1..].parse().map_err(|_| bad())?;
            if !(1..=4).contains(&q) {
                return Err(bad());
            }
            let first = NaiveDate::from_ymd_opt(year, 3 * q - 2, 1).ok_or_else(bad)?;
            return Ok(ReportPeriod {
                kind: Kind::Quarter,
                first,
                last: first + Months::new(3) - chrono::Days::new(1),
            });
        }
        if let Some((y, m)) = t.split_once('-') {
            let first = NaiveDate::from_ymd_opt(
                y.parse().map_err(|_| bad())?,
                m.parse().map_err(|_| bad())?,
                1,
            )
            .ok_or_else(bad)?;
            return Ok(ReportPeriod {
                kind: Kind::Month,
                first,
                last: first + Months::new(1) - chrono::Days::new(1),
            });
        }
        let year: i32 = t.parse().map_err(|_| bad())?;
        Ok(ReportPeriod {
            kind: Kind::Year,
            first: NaiveDate::from_ymd_opt(year, 1, 1).ok_or_else(bad)?,
            last: NaiveDate::from_ymd_opt(year, 12, 31).ok_or_else(bad)?,
        })
    }

    pub fn year(&self) -> i32 {
        self.first.year()
    }

    pub fn days(&self) -> i64 {
        (self.last - self.first).num_days() + 1
    }

    /// UTC epoch ms of the first instant and of the instant after the last day.
    pub fn bounds_ms(&self, tz: Tz) -> (i64, i64) {
        (
            local_midnight_ms(self.first, tz),
            local_midnight_ms(self.last + chrono::Days::new(1), tz),
        )
    }

    /// The same period a year earlier (同比).
    pub fn year_before(&self) -> ReportPeriod {
        let back = |d: NaiveDate| {
            d.checked_sub_months(Months::new(12))
                .unwrap_or(d - chrono::Days::new(365))
        };
        let mut p = *self;
        p.first = back(self.first);
        p.last = match self.kind {
            // The last day of the month a year earlier (February).
            Kind::Month | Kind::Quarter | Kind::Year => {
                back(self.last + chrono::Days::new(1)) - chrono::Days::new(1)
            }
            _ => back(self.last),
        };
        p
    }

    /// The period just before (环比): the day, month or quarter before; a range of the same
    /// length before it. A year has none (its 环比 is its 同比).
    pub fn previous(&self) -> Option<ReportPeriod> {
        let mut p = *self;
        match self.kind {
            Kind::Year => return None,
            Kind::Day | Kind::Range => {
                let n = chrono::Days::new(self.days() as u64);
                p.first = self.first - n;
                p.last = self.last - n;
            }
            Kind::Month | Kind::Quarter => {
                let m = Months::new(if self.kind == Kind::Month { 1 } else { 3 });
                p.first = self.first - m;
                p.last = self.first - chrono::Days::new(1);
            }
        }
        Some(p)
    }

    /// As written, for titles.
    pub fn label(&self) -> String {
        match self.kind {
            Kind::Day => self.first.format("%Y-%m-%d").to_string(),
            Kind::Month => self.first.format("%Y-%m").to_string(),
            Kind::Quarter => format!("{}-Q{}", self.first.year(), self.first.month().div_ceil(3)),
            Kind::Year => self.first.year().to_string(),
            Kind::Range => format!(
                "{}..{}",
                self.first.format("%Y-%m-%d"),
                self.last.format("%Y-%m-%d")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> ReportPeriod {
        ReportPeriod::parse(t).unwrap()
    }

    #[test]
    fn every_form_parses_to_its_days() {
        assert_eq!(
            (p("2026-10-12").days(), p("2026-10-12").kind),
            (1, Kind::Day)
        );
        assert_eq!(p("2026-02").days(), 28);
        assert_eq!(p("2026-Q3").first.to_string(), "2026-07-01");
        assert_eq!(p("2026-Q3").last.to_string(), "2026-09-30");
        assert_eq!(p("2024").days(), 366);
        assert_eq!(p("2026-10-01..2026-10-15").days(), 15);
        for bad in ["2026-13", "2026-Q5", "x", "2026-10-15..2026-10-01"] {
            assert!(ReportPeriod::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn comparison_periods() {
        assert_eq!(p("2024-02").year_before().last.to_string(), "2023-02-28");
        assert_eq!(p("2026-03").previous().unwrap().label(), "2026-02");
        assert_eq!(
            p("2026-02").previous().unwrap().last.to_string(),
            "2026-01-31"
        );
        assert_eq!(p("2026-Q1").previous().unwrap().label(), "2025-Q4");
        assert_eq!(p("2026").previous(), None);
        let r = p("2026-10-11..2026-10-15").previous().unwrap();
        assert_eq!(r.label(), "2026-10-06..2026-10-10");
    }

    #[test]
    fn bounds_are_local_midnights() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let (a, b) = p("2026-10-12").bounds_ms(tz);
        // 2026-10-12T00:00+08:00 = 2026-10-11T16:00Z.
        assert_eq!(a, 1_791_734_400_000);
        assert_eq!(b - a, 86_400_000);
    }
}
