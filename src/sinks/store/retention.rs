//! Retention: deleting what is older than `[store.retention]` keeps.

use super::{spans, Store, StoreError};
use crate::accounting::window::WindowKind;
use crate::config::Retention;
use rusqlite::params;

impl Store {
    /// Deletes what is older than the retention allows. Returns the rows deleted.
    pub fn apply_retention(&self, retention: &Retention, now_ms: i64) -> Result<usize, StoreError> {
        let day_ms: i64 = 86_400_000;
        let cutoff = |days: u32| now_ms - days as i64 * day_ms;
        let mut deleted = 0;
        if retention.readings_days > 0 {
            deleted += self
                .conn
                .execute(
                    "DELETE FROM readings WHERE ts_ms < ?1",
                    [cutoff(retention.readings_days)],
                )
                .map_err(|e| self.err(e))?;
        }
        if retention.events_days > 0 {
            deleted += self
                .conn
                .execute(
                    "DELETE FROM counter_events WHERE ts_ms < ?1",
                    [cutoff(retention.events_days)],
                )
                .map_err(|e| self.err(e))?;
        }
        for (window, days) in [
            (WindowKind::Minute, retention.minute_days),
            (WindowKind::QuarterHour, retention.quarter_hour_days),
            (WindowKind::Hour, retention.hour_days),
        ] {
            if days > 0 {
                deleted += self
                    .conn
                    .execute(
                        "DELETE FROM aggregates WHERE window = ?1 AND start_ms < ?2",
                        params![window.name(), cutoff(days)],
                    )
                    .map_err(|e| self.err(e))?;
                // Spans are kept (day and longer windows read them): their parts in the windows
                // just deleted must go too.
                self.conn
                    .execute(
                        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key)
                         DO UPDATE SET value = MAX(CAST(value AS INTEGER), excluded.value)",
                        params![spans::deleted_before_key(window), cutoff(days)],
                    )
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(deleted)
    }
}
