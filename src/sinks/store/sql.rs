//! The SQL of the wide aggregates table, made once per store from `Metric::ALL`.

use crate::accounting::metric::{Metric, Sums};

/// Window rows a multi-row upsert carries (4 + one per metric parameters each).
pub(super) const AGGREGATES_PER_UPSERT: usize = 32;

/// Aggregates are stored wide, one integer column per metric (named as the metric, in micro
/// units): one row per window and entity keeps a commit to a few thousand upserts.
/// The metric columns, in `Metric::ALL` order, as a SELECT or INSERT lists them.
pub(super) fn metric_columns() -> String {
    Metric::ALL
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A row's metric columns from `offset` on, in `Metric::ALL` order.
pub(super) fn sums_from_row(row: &rusqlite::Row, offset: usize) -> rusqlite::Result<Sums> {
    let mut sums = Sums::default();
    for (i, slot) in sums.0.iter_mut().enumerate() {
        *slot = row.get(offset + i)?;
    }
    Ok(sums)
}

pub(super) fn aggregate_sql() -> (String, String, String) {
    let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    let placeholders: Vec<String> = (0..names.len()).map(|i| format!("?{}", i + 5)).collect();
    let updates: Vec<String> = names
        .iter()
        .map(|n| format!("{n} = {n} + excluded.{n}"))
        .collect();
    let upsert = format!(
        "INSERT INTO aggregates (window, level, entity, start_ms, {}) VALUES (?1, ?2, ?3, ?4, {})
         ON CONFLICT (window, level, entity, start_ms) DO UPDATE SET {}",
        metric_columns(),
        placeholders.join(", "),
        updates.join(", ")
    );
    let totals: Vec<String> = names
        .iter()
        .map(|n| format!("COALESCE(SUM({n}), 0)"))
        .collect();
    let sums = format!(
        "SELECT {} FROM aggregates
         WHERE window = ?1 AND level = ?2 AND entity = ?3 AND start_ms >= ?4 AND start_ms < ?5",
        totals.join(", ")
    );
    let returning = format!("{upsert} RETURNING {}", metric_columns());
    (upsert, returning, sums)
}

/// `AGGREGATES_PER_UPSERT` rows in one upsert: a commit of 500 meters' readings upserts 3,000
/// window rows, and one statement a row spent as much on binding, stepping and resetting as on
/// the B-tree (a profile of the QoS 1 burst through a stock mosquitto, docs/benchmarks.md).
pub(super) fn aggregate_many_sql() -> String {
    let row = format!("(?, ?, ?, ?{})", ", ?".repeat(Metric::ALL.len()));
    let updates: Vec<String> = Metric::ALL
        .iter()
        .map(|m| format!("{n} = {n} + excluded.{n}", n = m.name()))
        .collect();
    format!(
        "INSERT INTO aggregates (window, level, entity, start_ms, {}) VALUES {}
         ON CONFLICT (window, level, entity, start_ms) DO UPDATE SET {}",
        metric_columns(),
        vec![row; AGGREGATES_PER_UPSERT].join(", "),
        updates.join(", ")
    )
}
