//! Window rows written whole, not added to: a store rebuilt from the central time-series
//! store's window points (`report --central`, docs/scale-out.md) holds each window's total as
//! the central store has it.

use super::sql::metric_columns;
use super::{Store, StoreError};
use crate::accounting::metric::{Metric, Sums};
use crate::accounting::window::WindowKind;

/// One window's total for one entity, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub window: WindowKind,
    /// `meter`, `site`, `firm` or `park`.
    pub level: &'static str,
    pub entity: String,
    pub start_ms: i64,
    pub sums: Sums,
}

impl Store {
    /// Writes `rows` in one transaction, each replacing the row of its window and entity.
    pub fn put_window_rows(&mut self, rows: &[WindowRow]) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT OR REPLACE INTO aggregates (window, level, entity, start_ms, {}) VALUES (?, ?, ?, ?{})",
            metric_columns(),
            ", ?".repeat(Metric::ALL.len())
        );
        let path = self.path.clone();
        let err = |cause| StoreError::Sqlite {
            path: path.clone(),
            cause,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx.prepare(&sql).map_err(err)?;
            let mut values: Vec<rusqlite::types::Value> = Vec::new();
            for r in rows {
                values.clear();
                values.push(r.window.name().to_string().into());
                values.push(r.level.to_string().into());
                values.push(r.entity.clone().into());
                values.push(r.start_ms.into());
                values.extend(r.sums.0.iter().map(|v| rusqlite::types::Value::Integer(*v)));
                stmt.execute(rusqlite::params_from_iter(values.iter()))
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}
