//! The inbox: readings a source acknowledges to its sender (MQTT QoS 1), made durable on their
//! own, ahead of the accounting commit that turns them into windows.
//!
//! A broker lets a subscriber hold only so many unacknowledged messages (mosquitto as installed:
//! 20 in flight and 1,000 queued per session) and drops what a burst brings beyond that. Waiting
//! for the whole accounting commit before acknowledging (about 25 ms for 500 meters' readings:
//! every window row of every meter, then an fsync) let a stock mosquitto drop 89 % of a
//! 100,000-message burst (docs/benchmarks.md). An append here is one small insert per reading
//! and one fsync for all that arrived meanwhile, so acknowledgements go out within a
//! millisecond or two and the accounting catches up in large batches behind them.
//!
//! Exactly once across a crash: every row has a sequence number; the store records, in the same
//! transaction as the windows it accounted, the highest sequence it has accounted
//! ([`crate::sinks::store::Store::inbox_seq`]). On start, rows above it are accounted again
//! before anything new; rows at or below it are deleted. The inbox is a SQLite file of its own
//! (`<store>.inbox`), so appends never wait on the store's write lock.

use crate::reading::{Quality, Reading};
use crate::sinks::store::StoreError;
use crate::units::Unit;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};

/// Rows an append's multi-row INSERT carries (8 parameters each).
const ROWS_PER_INSERT: usize = 128;

#[derive(Debug)]
pub struct Inbox {
    conn: Connection,
    path: PathBuf,
    next_seq: u64,
    /// Rows at or below this are accounted and deleted at the next append.
    deleted_through: u64,
    insert_many_sql: String,
}

impl Inbox {
    /// Where the inbox of the store at `store` lives.
    pub fn path_for(store: &Path) -> PathBuf {
        let mut name = store.as_os_str().to_owned();
        name.push(".inbox");
        PathBuf::from(name)
    }

    /// Opens (or creates) the inbox of the store at `store`, whose last commit accounted every
    /// row through `accounted_seq`.
    pub fn open(store: &Path, accounted_seq: u64) -> Result<Inbox, StoreError> {
        let path = Inbox::path_for(store);
        let err = |cause| StoreError::Sqlite {
            path: path.clone(),
            cause,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000;
             CREATE TABLE IF NOT EXISTS inbox (
                 seq INTEGER PRIMARY KEY, meter TEXT NOT NULL, channel TEXT NOT NULL,
                 amount REAL NOT NULL, unit TEXT NOT NULL, ts_ms INTEGER NOT NULL,
                 quality TEXT NOT NULL, stamped_on_arrival INTEGER NOT NULL);",
        )
        .map_err(err)?;
        let newest: Option<i64> = conn
            .query_row("SELECT MAX(seq) FROM inbox", [], |r| r.get(0))
            .map_err(err)?;
        let mut inbox = Inbox {
            conn,
            path: path.clone(),
            next_seq: (newest.unwrap_or(0).max(0) as u64).max(accounted_seq) + 1,
            deleted_through: 0,
            insert_many_sql: format!(
                "INSERT INTO inbox (seq, meter, channel, amount, unit, ts_ms, quality, stamped_on_arrival) VALUES {}",
                vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; ROWS_PER_INSERT].join(", ")
            ),
        };
        inbox.forget_through(accounted_seq)?;
        Ok(inbox)
    }

    fn err(&self, cause: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            cause,
        }
    }

    /// Deletes the rows through `seq` (accounted) at once.
    fn forget_through(&mut self, seq: u64) -> Result<(), StoreError> {
        if seq > self.deleted_through {
            self.conn
                .execute("DELETE FROM inbox WHERE seq <= ?1", [seq as i64])
                .map_err(|e| self.err(e))?;
            self.deleted_through = seq;
        }
        Ok(())
    }

    /// The rows not yet accounted, oldest first, at most `limit` after `after_seq`.
    pub fn unaccounted(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Reading)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, meter, channel, amount, unit, ts_ms, quality, stamped_on_arrival
                 FROM inbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after_seq as i64, limit as i64], |r| {
                let unit: String = r.get(4)?;
                let quality: String = r.get(6)?;
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    Reading {
                        meter: r.get(1)?,
                        channel: r.get(2)?,
                        amount: r.get(3)?,
                        // Written by `append` from the same types: an unknown name is a file
                        // changed by hand, refused rather than guessed.
                        unit: Unit::parse(&unit).ok_or_else(|| {
                            rusqlite::Error::InvalidColumnType(
                                4,
                                format!("unit {unit:?}"),
                                rusqlite::types::Type::Text,
                            )
                        })?,
                        ts_ms: r.get(5)?,
                        quality: Quality::parse(&quality).ok_or_else(|| {
                            rusqlite::Error::InvalidColumnType(
                                6,
                                format!("quality {quality:?}"),
                                rusqlite::types::Type::Text,
                            )
                        })?,
                        stamped_on_arrival: r.get(7)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Appends every reading of `groups` in one transaction (one fsync), after deleting what
    /// is accounted through `accounted_seq`. Returns each group's last sequence number (`None`
    /// for an empty group). Nothing is kept if it fails.
    pub fn append(
        &mut self,
        groups: &[&[Reading]],
        accounted_seq: u64,
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let path = self.path.clone();
        let err = |cause| StoreError::Sqlite {
            path: path.clone(),
            cause,
        };
        let tx = self.conn.transaction().map_err(err)?;
        if accounted_seq > self.deleted_through {
            tx.execute("DELETE FROM inbox WHERE seq <= ?1", [accounted_seq as i64])
                .map_err(err)?;
        }
        let mut seq = self.next_seq;
        let mut lasts = Vec::with_capacity(groups.len());
        {
            let mut many = tx.prepare_cached(&self.insert_many_sql).map_err(err)?;
            let mut one = tx
                .prepare_cached(
                    "INSERT INTO inbox (seq, meter, channel, amount, unit, ts_ms, quality, stamped_on_arrival)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(err)?;
            let all = groups.iter().flat_map(|g| g.iter());
            let mut rows: Vec<(i64, &Reading, String)> = Vec::with_capacity(ROWS_PER_INSERT);
            let row_params =
                |(s, r, unit): &(i64, &Reading, String)| -> [rusqlite::types::Value; 8] {
                    [
                        (*s).into(),
                        r.meter.clone().into(),
                        r.channel.clone().into(),
                        r.amount.into(),
                        unit.clone().into(),
                        r.ts_ms.into(),
                        r.quality.as_str().to_string().into(),
                        i64::from(r.stamped_on_arrival).into(),
                    ]
                };
            for r in all {
                rows.push((seq as i64, r, r.unit.to_string()));
                seq += 1;
                if rows.len() == ROWS_PER_INSERT {
                    let values: Vec<rusqlite::types::Value> =
                        rows.iter().flat_map(row_params).collect();
                    many.execute(rusqlite::params_from_iter(values.iter()))
                        .map_err(err)?;
                    rows.clear();
                }
            }
            for row in &rows {
                one.execute(rusqlite::params_from_iter(row_params(row).iter()))
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        let mut next = self.next_seq;
        for g in groups {
            next += g.len() as u64;
            lasts.push((!g.is_empty()).then(|| next - 1));
        }
        self.next_seq = seq;
        self.deleted_through = self.deleted_through.max(accounted_seq);
        Ok(lasts)
    }
}

/// The inbox's metric families.
#[derive(Debug, Clone)]
pub struct InboxMetrics {
    pub appends: IntCounter,
    /// Appends made at once because a source could get nothing more until they were made (a
    /// broker's in-flight window full).
    pub group_appends: IntCounter,
    pub append_seconds: Histogram,
    /// Readings in the inbox, acknowledged to their sender, not yet accounted.
    pub backlog: IntGauge,
}

impl InboxMetrics {
    pub fn register(registry: &Registry) -> InboxMetrics {
        let appends = IntCounter::new(
            "ecogate_inbox_appends_total",
            "Appends to the inbox (readings made durable before their acknowledgement).",
        )
        .expect("valid metric");
        let group_appends = IntCounter::new(
            "ecogate_inbox_group_appends_total",
            "Inbox appends made at once because a source could receive nothing more until they were made.",
        )
        .expect("valid metric");
        let append_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ecogate_inbox_append_seconds",
                "Time of an inbox append, fsync included.",
            )
            .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1.0]),
        )
        .expect("valid metric");
        let backlog = IntGauge::new(
            "ecogate_inbox_backlog_readings",
            "Readings acknowledged to their sender and durable in the inbox, not yet accounted.",
        )
        .expect("valid metric");
        for c in [
            Box::new(appends.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(group_appends.clone()),
            Box::new(append_seconds.clone()),
            Box::new(backlog.clone()),
        ] {
            registry.register(c).expect("each metric registered once");
        }
        InboxMetrics {
            appends,
            group_appends,
            append_seconds,
            backlog,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(meter: &str, wh: f64, ts_ms: i64) -> Reading {
        Reading {
            meter: meter.into(),
            channel: "energy".into(),
            amount: wh,
            unit: Unit::parse("Wh").unwrap(),
            ts_ms,
            quality: Quality::Good,
            stamped_on_arrival: false,
        }
    }

    #[test]
    fn rows_come_back_in_order_until_accounted() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.db");
        let mut inbox = Inbox::open(&store, 0).unwrap();
        // 300 readings in two groups (more than one multi-row insert) and an empty one.
        let a: Vec<Reading> = (0..200).map(|i| reading("m1", i as f64, i)).collect();
        let b: Vec<Reading> = (0..100).map(|i| reading("m2", i as f64, i)).collect();
        let lasts = inbox.append(&[&a, &[], &b], 0).unwrap();
        assert_eq!(lasts, [Some(200), None, Some(300)]);
        let back = inbox.unaccounted(0, 1_000).unwrap();
        assert_eq!(back.len(), 300);
        assert_eq!(back[0], (1, a[0].clone()));
        assert_eq!(back[299], (300, b[99].clone()));
        // The store accounted through 200: after a restart only group b comes back, and new
        // rows go on after 300.
        drop(inbox);
        let mut inbox = Inbox::open(&store, 200).unwrap();
        let back = inbox.unaccounted(200, 1_000).unwrap();
        assert_eq!(back.len(), 100);
        assert_eq!(back[0].0, 201);
        assert_eq!(inbox.append(&[&a[..1]], 300).unwrap(), [Some(301)]);
        assert_eq!(
            inbox.unaccounted(0, 1_000).unwrap().len(),
            1,
            "1-300 deleted"
        );
    }

    #[test]
    fn sequence_numbers_never_go_back_when_the_inbox_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.db");
        // The store accounted through 500 and every row was deleted: the next is 501, not 1.
        let mut inbox = Inbox::open(&store, 500).unwrap();
        assert_eq!(
            inbox.append(&[&[reading("m", 1.0, 0)]], 500).unwrap(),
            [Some(501)]
        );
    }
}
