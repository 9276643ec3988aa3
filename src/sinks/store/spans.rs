//! Long gaps kept whole (see [`crate::accounting::span`]): one row per span, read into every
//! window query that overlaps it, instead of a row per minute, quarter-hour and hour between.
//!
//! A span is kept per channel delta, never summed per firm or park: the parts are rounded per
//! delta, as the dense path rounds them, so a firm's figure is the sum of its meters' parts.

use crate::accounting::ledger::{EntityIds, Span};
use crate::accounting::metric::{Metric, Sums};
use crate::accounting::split::{Interval, Profile};
use crate::accounting::window::WindowKind;
use crate::accounting::Entity;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use std::collections::HashMap;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY, meter TEXT NOT NULL, channel TEXT NOT NULL, site TEXT NOT NULL,
    firm TEXT NOT NULL, t0_ms INTEGER NOT NULL, t1_ms INTEGER NOT NULL, p0 REAL, p1 REAL);
CREATE INDEX IF NOT EXISTS spans_meter ON spans (meter, t1_ms);
CREATE INDEX IF NOT EXISTS spans_site ON spans (site, t1_ms);
CREATE INDEX IF NOT EXISTS spans_firm ON spans (firm, t1_ms);
CREATE INDEX IF NOT EXISTS spans_t1 ON spans (t1_ms);
";

/// The meta key recording that a retention run deleted windows of `window` starting before it.
pub(super) fn deleted_before_key(window: WindowKind) -> String {
    format!("deleted_before_{}", window.name())
}

/// The table's statements, built once per store from the metric list.
#[derive(Debug)]
pub(super) struct SpanSql {
    insert: String,
    /// The spans of one meter, site or firm, or the park's, overlapping a time range.
    overlapping: [String; 4],
}

impl SpanSql {
    pub(super) fn new() -> SpanSql {
        let columns = super::metric_columns();
        let insert = format!(
            "INSERT INTO spans (meter, channel, site, firm, t0_ms, t1_ms, p0, p1, {columns}) VALUES ({})",
            vec!["?"; 8 + Metric::ALL.len()].join(", ")
        );
        let overlapping = ["meter = ?3 AND", "site = ?3 AND", "firm = ?3 AND", "?3 IS NOT NULL AND"]
            .map(|filter| {
                format!(
                    "SELECT t0_ms, t1_ms, p0, p1, {columns} FROM spans WHERE {filter} t1_ms > ?1 AND t0_ms < ?2"
                )
            });
        SpanSql {
            insert,
            overlapping,
        }
    }

    fn overlapping(&self, entity: Entity) -> &str {
        let i = match entity {
            Entity::Meter(_) => 0,
            Entity::Site(_) => 1,
            Entity::Firm(_) => 2,
            Entity::Park => 3,
        };
        &self.overlapping[i]
    }
}

/// Where a retention run last cut windows of `window` (`i64::MIN`: never).
pub(super) fn deleted_before(conn: &Connection, window: WindowKind) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [deleted_before_key(window)],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .and_then(|v| v.parse().ok())
        .unwrap_or(i64::MIN))
}

pub(super) fn insert(
    conn: &Connection,
    sql: &SpanSql,
    ids: &impl EntityIds,
    spans: &[Span],
) -> rusqlite::Result<()> {
    if spans.is_empty() {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(&sql.insert)?;
    let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(8 + Metric::ALL.len());
    for span in spans {
        let [meter, site, firm, _] = span.entities();
        let (p0, p1) = match span.interval.profile {
            Profile::Linear => (None, None),
            Profile::Trapezoid { p0, p1 } => (Some(p0), Some(p1)),
        };
        values.clear();
        values.push(ids.entity_id(meter).to_string().into());
        values.push(ids.channel_id(span.channel).to_string().into());
        values.push(ids.entity_id(site).to_string().into());
        values.push(ids.entity_id(firm).to_string().into());
        values.push(span.interval.t0_ms.into());
        values.push(span.interval.t1_ms.into());
        values.push(p0.into());
        values.push(p1.into());
        values.extend(span.sums.0.iter().map(|v| (*v).into()));
        stmt.execute(params_from_iter(values.iter()))?;
    }
    Ok(())
}

/// The latest end of the stored spans of each meter, site and firm, and of the park: a window
/// starting at or after its entity's end takes no part of a span, so the commit path asks the
/// table only for entities that have one (after a long gap of one meter, not for every meter's
/// year window at every commit for the rest of the year).
#[derive(Debug, Default)]
pub(super) struct SpanEnds {
    meter: HashMap<String, i64>,
    site: HashMap<String, i64>,
    firm: HashMap<String, i64>,
    park: Option<i64>,
}

impl SpanEnds {
    pub(super) fn load(conn: &Connection) -> rusqlite::Result<SpanEnds> {
        let mut ends = SpanEnds::default();
        let mut stmt = conn.prepare(
            "SELECT meter, site, firm, MAX(t1_ms) FROM spans GROUP BY meter, site, firm",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (meter, site, firm): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            ends.note(&meter, &site, &firm, r.get(3)?);
        }
        Ok(ends)
    }

    pub(super) fn note(&mut self, meter: &str, site: &str, firm: &str, t1_ms: i64) {
        for (map, id) in [
            (&mut self.meter, meter),
            (&mut self.site, site),
            (&mut self.firm, firm),
        ] {
            let end = map.entry(id.to_string()).or_insert(t1_ms);
            *end = (*end).max(t1_ms);
        }
        self.park = Some(self.park.map_or(t1_ms, |p| p.max(t1_ms)));
    }

    /// Whether a window of `entity` (id `id`) starting at `start_ms` may take a span's part.
    pub(super) fn may_reach(&self, entity: Entity, id: &str, start_ms: i64) -> bool {
        let end = match entity {
            Entity::Meter(_) => self.meter.get(id).copied(),
            Entity::Site(_) => self.site.get(id).copied(),
            Entity::Firm(_) => self.firm.get(id).copied(),
            Entity::Park => self.park,
        };
        end.is_some_and(|end| start_ms < end)
    }
}

/// The parts of the stored spans in `entity`'s windows of `window` that start in
/// `[from_ms, to_ms)`; `deleted_before_ms` is [`deleted_before`] for `window`.
pub(super) fn sums(
    conn: &Connection,
    sql: &SpanSql,
    ids: &impl EntityIds,
    (window, entity): (WindowKind, Entity),
    (from_ms, to_ms): (i64, i64),
    deleted_before_ms: i64,
) -> rusqlite::Result<Sums> {
    let (tz, retention) = ids.calendar();
    let mut stmt = conn.prepare_cached(sql.overlapping(entity))?;
    // A span starting after `to_ms` may still reach the last window starting before it.
    let upper = to_ms.saturating_add(window.max_len_ms());
    let mut rows = stmt.query(rusqlite::params![from_ms, upper, ids.entity_id(entity)])?;
    let mut total = Sums::default();
    while let Some(row) = rows.next()? {
        let profile = match (row.get::<_, Option<f64>>(2)?, row.get::<_, Option<f64>>(3)?) {
            (Some(p0), Some(p1)) => Profile::Trapezoid { p0, p1 },
            _ => Profile::Linear,
        };
        let span = Span {
            // Only the interval and sums matter for a part; the entity was the query's filter.
            channel: crate::accounting::ledger::ChannelRef {
                meter: 0,
                channel: 0,
            },
            site: 0,
            firm: 0,
            interval: Interval {
                t0_ms: row.get(0)?,
                t1_ms: row.get(1)?,
                profile,
            },
            sums: super::sums_from_row(row, 4)?,
        };
        total.merge(&span.part_in(window, from_ms, to_ms, tz, retention, deleted_before_ms));
    }
    Ok(total)
}

/// Gives a commit hook the new total of every window the batch's spans reach (that the hook
/// writes and the batch's dense aggregates did not already give it).
pub(super) fn notify(
    conn: &Connection,
    ids: &impl EntityIds,
    batch: &crate::accounting::Batch,
    (window_sums_sql, sql): (&str, &SpanSql),
    hook: &mut dyn super::CommitHook,
) -> rusqlite::Result<()> {
    use crate::accounting::AggKey;
    use std::collections::HashSet;
    if batch.spans.is_empty() {
        return Ok(());
    }
    let (tz, retention) = ids.calendar();
    let mut done: HashSet<AggKey> = batch.aggregates.keys().copied().collect();
    let mut stmt = conn.prepare_cached(window_sums_sql)?;
    let mut cuts = Vec::with_capacity(WindowKind::ALL.len());
    for &window in WindowKind::ALL {
        cuts.push((window, deleted_before(conn, window)?));
    }
    for span in &batch.spans {
        for entity in span.entities() {
            for &(window, deleted_before_ms) in &cuts {
                let Some(floor) = hook.window_floor_ms(entity, window) else {
                    continue;
                };
                for start_ms in span.window_starts(window, floor, tz, retention) {
                    let key = AggKey {
                        window,
                        start_ms,
                        entity,
                    };
                    if !done.insert(key) {
                        continue;
                    }
                    let level = entity.level();
                    let mut total = stmt.query_row(
                        rusqlite::params![
                            window.name(),
                            level,
                            ids.entity_id(entity),
                            start_ms,
                            start_ms + 1
                        ],
                        |r| super::sums_from_row(r, 0),
                    )?;
                    total.merge(&sums(
                        conn,
                        sql,
                        ids,
                        (window, entity),
                        (start_ms, start_ms + 1),
                        deleted_before_ms,
                    )?);
                    // What this batch changed in the window, so that a figure it moved is written
                    // even where the total is zero.
                    let mut delta = Sums::default();
                    for s in batch.spans.iter().filter(|s| s.adds_to(entity)) {
                        delta.merge(&s.part_in(
                            window,
                            start_ms,
                            start_ms + 1,
                            tz,
                            retention,
                            i64::MIN,
                        ));
                    }
                    hook.total(&key, &total, &delta);
                }
            }
        }
    }
    Ok(())
}
