//! Upgrading stores written by older schema versions.

use super::{Store, StoreError};

impl Store {
    /// Version 1 stored each reading's meter, channel, base unit and quality as text. Moves them
    /// to series ids in one transaction: a crash midway leaves the version 1 table as it was.
    pub(super) fn migrate_v1_readings(&self) -> Result<(), StoreError> {
        let v1_rows: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('readings') WHERE name = 'meter'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if v1_rows == 0 {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.conn
            .execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS series (
                     id INTEGER PRIMARY KEY, meter TEXT NOT NULL, channel TEXT NOT NULL,
                     base_unit TEXT NOT NULL, UNIQUE (meter, channel, base_unit));
                 INSERT OR IGNORE INTO series (meter, channel, base_unit)
                     SELECT DISTINCT meter, channel, base_unit FROM readings ORDER BY meter, channel;
                 ALTER TABLE readings RENAME TO readings_v1;
                 CREATE TABLE readings (
                     ts_ms INTEGER NOT NULL, series INTEGER NOT NULL, amount_base REAL NOT NULL,
                     quality INTEGER NOT NULL,
                     PRIMARY KEY (ts_ms, series)) WITHOUT ROWID;
                 INSERT OR IGNORE INTO readings (ts_ms, series, amount_base, quality)
                     SELECT r.ts_ms, s.id, r.amount_base,
                            CASE r.quality WHEN 'good' THEN 0 WHEN 'uncertain' THEN 1 ELSE 2 END
                     FROM readings_v1 r
                     JOIN series s ON s.meter = r.meter AND s.channel = r.channel
                                  AND s.base_unit = r.base_unit
                     ORDER BY r.ts_ms;
                 DROP TABLE readings_v1;
                 UPDATE meta SET value = '2' WHERE key = 'schema_version';
                 COMMIT;",
            )
            .map_err(|e| {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.err(e)
            })?;
        tracing::info!(
            store = %self.path.display(),
            seconds = started.elapsed().as_secs_f64(),
            "store migrated from schema 1 to 2 (readings keyed by series id)"
        );
        Ok(())
    }
}
