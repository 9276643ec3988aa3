//! The embedded store (SQLite): raw readings, window aggregates, counter baselines and the
//! counter-event audit trail.
//!
//! A batch is committed in one transaction: its aggregates and the counter states they were
//! computed from move together, so a crash at any instant leaves either both or neither. That is
//! what makes "energy used while the daemon was down is attributed at the next reading and never
//! counted twice" hold across restarts. Aggregates are upserted by addition, so the same window
//! can be filled by many batches. `synchronous=FULL` because these figures end up in audits.
//!
//! Readings are keyed by time first: live data arrives in time order, so inserts append at the
//! end of the B-tree instead of touching one page per channel. A reading names its channel by an
//! integer series id (table `series`: meter, channel, base unit) rather than by text: at tens of
//! thousands of readings a second, comparing and copying the text keys was most of the cost of a
//! commit. The view `readings_by_name` shows readings with their names, as version 1 stored them.

use crate::accounting::counter::{CounterState, Point};
use crate::accounting::ledger::{Accountant, AggKey, Batch, ChannelRef, Entity};
use crate::accounting::metric::{Metric, Sums};
use crate::accounting::window::WindowKind;
use rusqlite::{params, Connection, OptionalExtension};

pub mod import;
mod migrate;
mod retention;
mod series;
mod spans;
mod sql;
use sql::{aggregate_many_sql, aggregate_sql, AGGREGATES_PER_UPSERT};
use sql::{metric_columns, sums_from_row};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The underlying error is part of the message and is not also a `source`: printed with its
    // chain (`{:#}`), it would say the same thing twice.
    #[error("store {path}: cannot create its directory: {cause}")]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("store {path}: {cause}")]
    Sqlite {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    /// Another process writes to this store (or its outbox).
    #[error(transparent)]
    Locked(#[from] crate::sinks::lock::LockError),
    /// The sink that commits with the store (the InfluxDB outbox) failed; nothing was committed.
    #[error("{0}")]
    Sink(String),
    /// A query the store cannot answer (a caller's mistake, not the data's).
    #[error("the store cannot give {0}")]
    Unsupported(String),
    #[error("store {path}: schema version {found} is newer than this ecogate understands ({supported}); upgrade ecogate")]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
}

/// 1: readings keyed by (ts_ms, meter, channel) text. 2: readings keyed by (ts_ms, series id).
/// 3: long gaps kept as spans (a version 2 ecogate would read their windows as empty).
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, meter TEXT NOT NULL, channel TEXT NOT NULL, base_unit TEXT NOT NULL,
    UNIQUE (meter, channel, base_unit));
CREATE TABLE IF NOT EXISTS readings (
    ts_ms INTEGER NOT NULL, series INTEGER NOT NULL, amount_base REAL NOT NULL,
    quality INTEGER NOT NULL,
    PRIMARY KEY (ts_ms, series)) WITHOUT ROWID;
DROP VIEW IF EXISTS readings_by_name;
CREATE VIEW readings_by_name AS
    SELECT r.ts_ms, s.meter, s.channel, r.amount_base, s.base_unit,
           CASE r.quality WHEN 0 THEN 'good' WHEN 1 THEN 'uncertain' WHEN 3 THEN 'held'
                          ELSE 'bad' END AS quality
    FROM readings r JOIN series s ON s.id = r.series;
CREATE TABLE IF NOT EXISTS aggregates (
    window TEXT NOT NULL, level TEXT NOT NULL, entity TEXT NOT NULL, start_ms INTEGER NOT NULL,
    PRIMARY KEY (window, level, entity, start_ms)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counter_state (
    meter TEXT NOT NULL, channel TEXT NOT NULL,
    last_micro INTEGER, last_ts_ms INTEGER, pending_micro INTEGER, pending_ts_ms INTEGER,
    anchor_micro INTEGER, anchor_ts_ms INTEGER, mark_micro INTEGER, mark_ts_ms INTEGER,
    over_limit_micro_per_h INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (meter, channel)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counter_events (
    id INTEGER PRIMARY KEY, meter TEXT NOT NULL, channel TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    kind TEXT NOT NULL, from_micro INTEGER, from_ts_ms INTEGER, to_micro INTEGER NOT NULL,
    delta_micro INTEGER NOT NULL, base_unit TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS counter_events_ts ON counter_events (ts_ms);
";

#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    upsert_sql: String,
    upsert_returning_sql: String,
    upsert_many_sql: String,
    sums_sql: String,
    insert_readings_sql: String,
    /// Series ids by channel index, for the accountant `series_of`.
    series: Vec<Vec<i64>>,
    series_of: u64,
    /// Where stored spans end, per entity: windows before that may take span parts.
    span_ends: spans::SpanEnds,
    span_sql: spans::SpanSql,
    /// Recorded by the next commit: see [`Store::set_inbox_seq`].
    inbox_seq: Option<u64>,
}

/// Readings a multi-row INSERT carries (4 parameters each, well under SQLite's 32,766 limit).
const READINGS_PER_INSERT: usize = 128;

/// Stored quality codes; the view `readings_by_name` maps them back to names. 3 (`held`) marks
/// a reading whose value the counter held (quarantined jump, held drop) instead of counting.
fn quality_code(q: crate::reading::Quality, held: bool) -> i64 {
    if held {
        return 3;
    }
    match q {
        crate::reading::Quality::Good => 0,
        crate::reading::Quality::Uncertain => 1,
        crate::reading::Quality::Bad => 2,
    }
}

/// A `readings` row: ts_ms, series, amount_base, quality.
type ReadingRow = (i64, i64, f64, i64);

fn reading_row(series: &[Vec<i64>], a: &crate::accounting::ledger::Accepted) -> ReadingRow {
    (
        a.ts_ms,
        series[a.channel.meter as usize][a.channel.channel as usize],
        a.base_amount,
        quality_code(a.quality, a.held),
    )
}

fn row_params(r: &ReadingRow) -> impl Iterator<Item = &dyn rusqlite::ToSql> {
    [&r.0 as &dyn rusqlite::ToSql, &r.1, &r.2, &r.3].into_iter()
}

/// A sink that moves together with the store: the pipeline calls `begin`, runs the store's
/// commit with it as the hook, then `committed` or `rolled_back`.
pub trait CommitSink: CommitHook + Send + std::fmt::Debug {
    /// Before a commit: `now_ms` is the accounting's clock.
    fn begin(&mut self, now_ms: i64);
    /// The store committed: what the hook wrote becomes deliverable.
    fn committed(&mut self);
    /// The store commit failed: take back what the hook wrote for it. The error keeps its
    /// cause (the sink's own error type).
    fn rolled_back(&mut self) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
    fn as_hook(&mut self) -> &mut dyn CommitHook;
}

/// Runs inside a store commit, for a sink that must move together with the store (the outbox):
/// it sees every aggregate's total after the batch, and its sequence number is recorded in the
/// same transaction, so after a crash the store says which of the sink's appends counted.
pub trait CommitHook {
    fn total(&mut self, key: &AggKey, total: &Sums, delta: &Sums);
    /// The oldest window start of `window` it writes for `entity`; `None` when it writes none.
    /// A long gap's span reaches many windows: it is told only of these.
    fn window_floor_ms(&self, entity: Entity, window: WindowKind) -> Option<i64>;
    /// Called last, before the transaction commits; returns the sequence to record.
    /// `already_stored` (ascending indices into `batch.accepted`) are readings the store held
    /// before this commit: delivered already, not to be sent again.
    fn before_commit(
        &mut self,
        acct: &Accountant,
        batch: &Batch,
        already_stored: &[usize],
    ) -> Result<u64, StoreError>;
}

/// 64 random bits (the standard library's hasher keys come from the OS), with the clock mixed in.
fn new_store_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|cause| StoreError::CreateDir {
                path: path.to_path_buf(),
                cause,
            })?;
        }
        let conn = Connection::open(path).map_err(|cause| StoreError::Sqlite {
            path: path.to_path_buf(),
            cause,
        })?;
        let (upsert_sql, upsert_returning_sql, sums_sql) = aggregate_sql();
        let store = Store {
            conn,
            path: path.to_path_buf(),
            upsert_sql,
            upsert_returning_sql,
            upsert_many_sql: aggregate_many_sql(),
            insert_readings_sql: format!(
                "INSERT OR IGNORE INTO readings (ts_ms, series, amount_base, quality) VALUES {}",
                vec!["(?, ?, ?, ?)"; READINGS_PER_INSERT].join(", ")
            ),
            sums_sql,
            series: Vec::new(),
            series_of: 0,
            span_ends: spans::SpanEnds::default(),
            span_sql: spans::SpanSql::new(),
            inbox_seq: None,
        };
        let mut store = store;
        store.init()?;
        store.span_ends = spans::SpanEnds::load(&store.conn).map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// For a bulk load (replay): a larger page cache, so that a batch of tens of thousands of
    /// readings is not spilled to the WAL page by page before it commits (measured: 1,000,000
    /// rows replayed in 9.5 s instead of 13.1 s). The daemon keeps SQLite's default (2 MB).
    pub fn use_bulk_cache(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA cache_size=-16384;")
            .map_err(|e| self.err(e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, cause: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            cause,
        }
    }

    fn init(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000;",
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
            )
            .map_err(|e| self.err(e))?;
        let found: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let found = found.and_then(|v| v.parse::<i64>().ok());
        if let Some(v) = found.filter(|v| *v > SCHEMA_VERSION) {
            return Err(StoreError::SchemaTooNew {
                path: self.path.clone(),
                found: v,
                supported: SCHEMA_VERSION,
            });
        }
        if found == Some(1) {
            self.migrate_v1_readings()?;
        }
        // One write transaction: the daemon and a report command (or a test's reader) may open
        // the store at the same instant, and the view is dropped and re-created; without it one
        // opener's CREATE VIEW could land between the other's DROP and CREATE and fail with
        // "view readings_by_name already exists".
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err(e))?;
        let result = self.init_schema();
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = self.conn.execute_batch(end).map_err(|e| self.err(e));
        result.and(ended)
    }

    fn init_schema(&self) -> Result<(), StoreError> {
        self.conn.execute_batch(SCHEMA).map_err(|e| self.err(e))?;
        self.conn
            .execute_batch(spans::SCHEMA)
            .map_err(|e| self.err(e))?;
        // Counter-state fields added after version 2's first release.
        for (column, ty) in [
            ("anchor_micro", "INTEGER"),
            ("anchor_ts_ms", "INTEGER"),
            ("mark_micro", "INTEGER"),
            ("mark_ts_ms", "INTEGER"),
            ("over_limit_micro_per_h", "INTEGER NOT NULL DEFAULT 0"),
        ] {
            let present: i64 = self
                .conn
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info('counter_state') WHERE name = ?1",
                    [column],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?;
            if present == 0 {
                self.conn
                    .execute_batch(&format!(
                        "ALTER TABLE counter_state ADD COLUMN {column} {ty}"
                    ))
                    .map_err(|e| self.err(e))?;
            }
        }
        // A metric added in a later version becomes a new column; old rows read as zero.
        for table in ["aggregates", "spans"] {
            let mut existing = Vec::new();
            {
                let mut stmt = self
                    .conn
                    .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .map_err(|e| self.err(e))?;
                let rows = stmt
                    .query_map([], |r| r.get::<_, String>(0))
                    .map_err(|e| self.err(e))?;
                for row in rows {
                    existing.push(row.map_err(|e| self.err(e))?);
                }
            }
            for m in Metric::ALL {
                if !existing.iter().any(|c| c == m.name()) {
                    self.conn
                        .execute_batch(&format!(
                            "ALTER TABLE {table} ADD COLUMN {} INTEGER NOT NULL DEFAULT 0",
                            m.name()
                        ))
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        self.conn
            .execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?1)",
                [new_store_id()],
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Series ids of every channel of `acct`, created where missing (in their own transaction,
    /// so that a batch that later fails does not take ids the cache still holds).
    fn resolve_series(&mut self, acct: &Accountant) -> Result<(), StoreError> {
        if self.series_of == acct.instance() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |cause| StoreError::Sqlite {
            path: path.clone(),
            cause,
        };
        let mut series: Vec<Vec<i64>> = Vec::new();
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO series (meter, channel, base_unit) VALUES (?1, ?2, ?3)
                     ON CONFLICT (meter, channel, base_unit) DO UPDATE SET meter = excluded.meter
                     RETURNING id",
                )
                .map_err(err)?;
            for r in acct.channel_refs() {
                let (meter, channel) = acct.channel_ids(r);
                let id: i64 = insert
                    .query_row(params![meter, channel, acct.channel_base_unit(r)], |row| {
                        row.get(0)
                    })
                    .map_err(err)?;
                if series.len() <= r.meter as usize {
                    series.resize(r.meter as usize + 1, Vec::new());
                }
                series[r.meter as usize].push(id);
            }
        }
        tx.commit().map_err(err)?;
        self.series = series;
        self.series_of = acct.instance();
        Ok(())
    }

    /// Counter states of the configured channels. States of channels no longer configured stay
    /// in the table (a meter taken out and put back resumes from its baseline).
    pub fn load_states(
        &self,
        acct: &Accountant,
    ) -> Result<Vec<(ChannelRef, CounterState)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT meter, channel, last_micro, last_ts_ms, pending_micro, pending_ts_ms,
                        anchor_micro, anchor_ts_ms, mark_micro, mark_ts_ms, over_limit_micro_per_h
                 FROM counter_state",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let point = |v: Option<i64>, t: Option<i64>| {
                    v.zip(t).map(|(micro, ts_ms)| Point { micro, ts_ms })
                };
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    CounterState {
                        last: point(r.get(2)?, r.get(3)?),
                        pending: point(r.get(4)?, r.get(5)?),
                        anchor: point(r.get(6)?, r.get(7)?),
                        mark: point(r.get(8)?, r.get(9)?),
                        over_limit_micro_per_h: r.get(10)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (meter, channel, state) = row.map_err(|e| self.err(e))?;
            if let Some(r) = acct.channel_ref(&meter, &channel) {
                out.push((r, state));
            }
        }
        Ok(out)
    }

    /// Commits a batch atomically: readings, aggregates, events and counter states.
    pub fn commit(&mut self, acct: &Accountant, batch: &Batch) -> Result<(), StoreError> {
        self.commit_with(acct, batch, None)
    }

    /// The newest reading's time, if any (readings are keyed by time first: one B-tree step).
    pub fn newest_reading_ms(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT MAX(ts_ms) FROM readings", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// The id of the store at `path` without opening it for writing (`ecogate check`, which
    /// may run beside the daemon): `None` where no store or no id is there yet.
    pub fn peek_store_id(path: &Path) -> Result<Option<String>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let err = |cause| StoreError::Sqlite {
            path: path.to_path_buf(),
            cause,
        };
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(err)?;
        let id = conn.query_row("SELECT value FROM meta WHERE key='store_id'", [], |r| {
            r.get::<_, String>(0)
        });
        match id {
            Ok(id) => Ok(Some(id)),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            // A store from before stores had ids, or before its tables exist.
            Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => {
                Ok(None)
            }
            Err(cause) => Err(err(cause)),
        }
    }

    /// This store's id, made when it was created: an outbox knows by it which store it commits
    /// with.
    pub fn store_id(&self) -> Result<String, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key='store_id'", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))
    }

    /// The inbox sequence the next commit records as accounted (the pipeline sets it for a
    /// batch that holds inbox rows).
    pub fn set_inbox_seq(&mut self, seq: Option<u64>) {
        self.inbox_seq = seq;
    }

    /// The highest inbox sequence a commit accounted (0 if none ever did).
    pub fn inbox_seq(&self) -> Result<u64, StoreError> {
        let found: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key='inbox_seq'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(found.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// The sequence the last commit with a hook recorded (`None` if none ever did).
    pub fn committed_seq(&self) -> Result<Option<u64>, StoreError> {
        let found: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key='outbox_seq'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(found.and_then(|v| v.parse().ok()))
    }

    /// [`Store::commit`], with `hook` run inside the transaction.
    pub fn commit_with(
        &mut self,
        acct: &Accountant,
        batch: &Batch,
        mut hook: Option<&mut dyn CommitHook>,
    ) -> Result<(), StoreError> {
        self.resolve_series(acct)?;
        let path = self.path.clone();
        let err = |cause| StoreError::Sqlite {
            path: path.clone(),
            cause,
        };
        let tx = self.conn.transaction().map_err(err)?;
        // Indices (ascending) of the batch's readings the store held before this commit.
        let mut already_stored: Vec<usize> = Vec::new();
        {
            // Many rows per statement: at tens of thousands of readings a commit, the per-statement
            // overhead (bind, step, reset) costs as much as the B-tree inserts themselves.
            let mut ins_many = tx.prepare_cached(&self.insert_readings_sql).map_err(err)?;
            let mut ins_reading = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO readings (ts_ms, series, amount_base, quality)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(err)?;
            let series = &self.series;
            let mut rows: Vec<ReadingRow> = Vec::with_capacity(READINGS_PER_INSERT);
            for a in batch.accepted.iter().filter(|a| !a.maybe_stored) {
                rows.push(reading_row(series, a));
                if rows.len() == READINGS_PER_INSERT {
                    let params: Vec<&dyn rusqlite::ToSql> =
                        rows.iter().flat_map(row_params).collect();
                    ins_many.execute(params.as_slice()).map_err(err)?;
                    rows.clear();
                }
            }
            for row in &rows {
                let params: Vec<&dyn rusqlite::ToSql> = row_params(row).collect();
                ins_reading.execute(params.as_slice()).map_err(err)?;
            }
            // Duplicates and out-of-order readings after the others (a reading twice in one
            // batch is then held by the time its copy comes), one row at a time to learn
            // whether the store already held each.
            for (i, a) in batch.accepted.iter().enumerate() {
                if a.maybe_stored {
                    let row = reading_row(series, a);
                    let params: Vec<&dyn rusqlite::ToSql> = row_params(&row).collect();
                    if ins_reading.execute(params.as_slice()).map_err(err)? == 0 {
                        already_stored.push(i);
                    }
                }
            }
            // Spans first, so that a window total returned below includes their parts.
            spans::insert(&tx, &self.span_sql, acct, &batch.spans).map_err(err)?;
            for span in &batch.spans {
                let [meter, site, firm, _] = span.entities();
                self.span_ends.note(
                    acct.entity_id(meter),
                    acct.entity_id(site),
                    acct.entity_id(firm),
                    span.interval.t1_ms,
                );
            }
            let mut upsert = tx
                .prepare_cached(if hook.is_some() {
                    &self.upsert_returning_sql
                } else {
                    &self.upsert_sql
                })
                .map_err(err)?;
            let mut upsert_many = tx.prepare_cached(&self.upsert_many_sql).map_err(err)?;
            let per_row = 4 + Metric::ALL.len();
            let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(per_row);
            // Without a hook (nothing needs each row's new total), rows go many to a statement.
            let mut many: Vec<rusqlite::types::Value> = Vec::new();
            for (key, sums) in &batch.aggregates {
                values.clear();
                values.push(key.window.name().to_string().into());
                values.push(key.entity.level().to_string().into());
                values.push(acct.entity_id(key.entity).to_string().into());
                values.push(key.start_ms.into());
                values.extend(sums.0.iter().map(|v| rusqlite::types::Value::Integer(*v)));
                match hook.as_deref_mut() {
                    None => {
                        many.append(&mut values);
                        if many.len() == per_row * AGGREGATES_PER_UPSERT {
                            upsert_many
                                .execute(rusqlite::params_from_iter(many.iter()))
                                .map_err(err)?;
                            many.clear();
                        }
                    }
                    Some(h) => {
                        let mut total = upsert
                            .query_row(rusqlite::params_from_iter(values.iter()), |r| {
                                sums_from_row(r, 0)
                            })
                            .map_err(err)?;
                        if self.span_ends.may_reach(
                            key.entity,
                            acct.entity_id(key.entity),
                            key.start_ms,
                        ) {
                            let cut = spans::deleted_before(&tx, key.window).map_err(err)?;
                            let parts = spans::sums(
                                &tx,
                                &self.span_sql,
                                acct,
                                (key.window, key.entity),
                                (key.start_ms, key.start_ms + 1),
                                cut,
                            )
                            .map_err(err)?;
                            total.merge(&parts);
                        }
                        h.total(key, &total, sums);
                    }
                }
            }
            for row in many.chunks(per_row) {
                upsert
                    .execute(rusqlite::params_from_iter(row.iter()))
                    .map_err(err)?;
            }
            let mut ins_event = tx
                .prepare_cached(
                    "INSERT INTO counter_events (meter, channel, ts_ms, kind, from_micro, from_ts_ms, to_micro, delta_micro, base_unit)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(err)?;
            for e in batch.events.iter().filter(|e| e.kind.is_recorded()) {
                let (meter, channel) = acct.channel_ids(e.channel);
                ins_event
                    .execute(params![
                        meter,
                        channel,
                        e.ts_ms,
                        e.kind.name(),
                        e.from.map(|p| p.micro),
                        e.from.map(|p| p.ts_ms),
                        e.to.micro,
                        e.delta_micro,
                        acct.channel_base_unit(e.channel)
                    ])
                    .map_err(err)?;
            }
            let mut put_state = tx
                .prepare_cached(
                    "INSERT INTO counter_state (meter, channel, last_micro, last_ts_ms, pending_micro,
                         pending_ts_ms, anchor_micro, anchor_ts_ms, mark_micro, mark_ts_ms,
                         over_limit_micro_per_h)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (meter, channel) DO UPDATE SET last_micro = excluded.last_micro,
                         last_ts_ms = excluded.last_ts_ms, pending_micro = excluded.pending_micro,
                         pending_ts_ms = excluded.pending_ts_ms,
                         anchor_micro = excluded.anchor_micro, anchor_ts_ms = excluded.anchor_ts_ms,
                         mark_micro = excluded.mark_micro, mark_ts_ms = excluded.mark_ts_ms,
                         over_limit_micro_per_h = excluded.over_limit_micro_per_h",
                )
                .map_err(err)?;
            for (r, s) in &batch.states {
                let (meter, channel) = acct.channel_ids(*r);
                put_state
                    .execute(params![
                        meter,
                        channel,
                        s.last.map(|p| p.micro),
                        s.last.map(|p| p.ts_ms),
                        s.pending.map(|p| p.micro),
                        s.pending.map(|p| p.ts_ms),
                        s.anchor.map(|p| p.micro),
                        s.anchor.map(|p| p.ts_ms),
                        s.mark.map(|p| p.micro),
                        s.mark.map(|p| p.ts_ms),
                        s.over_limit_micro_per_h
                    ])
                    .map_err(err)?;
            }
            if let Some(seq) = self.inbox_seq {
                tx.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('inbox_seq', ?1)",
                    [seq.to_string()],
                )
                .map_err(err)?;
            }
            if let Some(h) = hook {
                spans::notify(&tx, acct, batch, (&self.sums_sql, &self.span_sql), &mut *h)
                    .map_err(err)?;
                let seq = h.before_commit(acct, batch, &already_stored)?;
                tx.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('outbox_seq', ?1)",
                    [seq.to_string()],
                )
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Sums of one entity's aggregates of `window` with start in `[from_ms, to_ms)`.
    pub fn sums(
        &self,
        acct: &impl crate::accounting::ledger::EntityIds,
        window: WindowKind,
        entity: Entity,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Sums, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&self.sums_sql)
            .map_err(|e| self.err(e))?;
        let params = params![
            window.name(),
            entity.level(),
            acct.entity_id(entity),
            from_ms,
            to_ms
        ];
        let mut sums = stmt
            .query_row(params, |r| sums_from_row(r, 0))
            .map_err(|e| self.err(e))?;
        let parts = spans::deleted_before(&self.conn, window)
            .and_then(|cut| {
                spans::sums(
                    &self.conn,
                    &self.span_sql,
                    acct,
                    (window, entity),
                    (from_ms, to_ms),
                    cut,
                )
            })
            .map_err(|e| self.err(e))?;
        sums.merge(&parts);
        Ok(sums)
    }

    /// Number of recorded counter events of a kind (for reports and tests).
    pub fn event_count(&self, kind: &str) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM counter_events WHERE kind = ?1",
                [kind],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    pub fn reading_count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}
