//! One entity's windows one by one (a report's time-of-use bands and demand read the
//! quarter hours of a period), with the parts of any span that reaches them.

use super::{metric_columns, spans, sums_from_row, Store, StoreError};
use crate::accounting::ledger::{Entity, EntityIds};
use crate::accounting::metric::Sums;
use crate::accounting::window::WindowKind;
use std::collections::BTreeMap;

impl Store {
    /// `entity`'s windows of `window` starting in `[from_ms, to_ms)`, in time order, each with
    /// its sums (dense rows plus span parts; a window with neither is left out). `window` must
    /// have a fixed length (minute, quarter hour, hour): their starts are then every multiple of
    /// it from `from_ms`, which must lie on one.
    pub fn window_rows(
        &self,
        acct: &impl EntityIds,
        window: WindowKind,
        entity: Entity,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Sums)>, StoreError> {
        let step_ms = match window {
            WindowKind::Minute => 60_000,
            WindowKind::QuarterHour => 900_000,
            WindowKind::Hour => 3_600_000,
            other => {
                return Err(StoreError::Unsupported(format!(
                    "window rows of {} windows (not of fixed length)",
                    other.name()
                )))
            }
        };
        let id = acct.entity_id(entity);
        let sql = format!(
            "SELECT start_ms, {} FROM aggregates
             WHERE window = ?1 AND level = ?2 AND entity = ?3 AND start_ms >= ?4 AND start_ms < ?5
             ORDER BY start_ms",
            metric_columns()
        );
        let mut out: BTreeMap<i64, Sums> = BTreeMap::new();
        {
            let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
            let mut rows = stmt
                .query(rusqlite::params![
                    window.name(),
                    entity.level(),
                    id,
                    from_ms,
                    to_ms
                ])
                .map_err(|e| self.err(e))?;
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                let start: i64 = r.get(0).map_err(|e| self.err(e))?;
                out.insert(start, sums_from_row(r, 1).map_err(|e| self.err(e))?);
            }
        }
        if self.span_ends.may_reach(entity, id, from_ms) {
            let cut = spans::deleted_before(&self.conn, window).map_err(|e| self.err(e))?;
            let mut start = from_ms;
            while start < to_ms {
                if !self.span_ends.may_reach(entity, id, start) {
                    break;
                }
                let parts = spans::sums(
                    &self.conn,
                    &self.span_sql,
                    acct,
                    (window, entity),
                    (start, start + 1),
                    cut,
                )
                .map_err(|e| self.err(e))?;
                if parts != Sums::default() {
                    out.entry(start).or_default().merge(&parts);
                }
                start += step_ms;
            }
        }
        Ok(out.into_iter().collect())
    }

    /// A channel's last stored reading at or before `at_ms` (time and amount in the channel's
    /// base unit), refused and held readings aside.
    pub fn reading_at_or_before(
        &self,
        meter: &str,
        channel: &str,
        at_ms: i64,
    ) -> Result<Option<(i64, f64)>, StoreError> {
        use rusqlite::OptionalExtension;
        let series: Option<i64> = self
            .conn
            .prepare_cached("SELECT id FROM series WHERE meter = ?1 AND channel = ?2")
            .and_then(|mut s| s.query_row([meter, channel], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        let Some(series) = series else {
            return Ok(None);
        };
        // quality 0 good, 1 uncertain (2 bad and 3 held are not a register's value).
        self.conn
            .prepare_cached(
                "SELECT ts_ms, amount_base FROM readings
                 WHERE series = ?1 AND ts_ms <= ?2 AND quality IN (0, 1)
                 ORDER BY ts_ms DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(rusqlite::params![series, at_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(|e| self.err(e))
    }
}
