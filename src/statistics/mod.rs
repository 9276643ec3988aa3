//! Statistics that meters cannot see (tax, revenue, value added, employees, R&D, off-meter
//! energy, pollutants), per firm and year: imported from the CSV or XLSX files the tax and
//! statistics bureaus hand over, and the evaluations computed from them, stored with their inputs.
//!
//! A SQLite file of its own (`evaluation.statistics_path`, next to the store by default), not the
//! readings store: the daemon holds the store's writer lock for as long as it runs, and a file from
//! the tax bureau must be importable, and a year evaluable, while it does.

pub mod import;

use crate::evaluation::{Evaluation, YearStats};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("statistics store {path}: {cause}")]
    Sqlite {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("statistics store {path}: cannot create its folder: {cause}")]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// One import, as `stats history` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRecord {
    pub id: i64,
    pub at_ms: i64,
    pub file: String,
    pub rows: i64,
    /// SHA-256 of the file, hex; `None` for an import made before ecogate kept it.
    pub digest: Option<String>,
    /// The user who imported it (`SUDO_USER`, else `USER`); `None` when unknown.
    pub by: Option<String>,
}

/// A firm's year as in force: its values in the order of [`FIELDS`], and the import they are from.
pub type InForce = ([Option<f64>; 8], i64);

/// One firm's statistics for a year, and where they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub stats: YearStats,
    pub output_value_cny: Option<f64>,
    /// "FILE:LINE (#N, TIME)": the file and line it was imported from, the import's number.
    pub source: String,
}

pub struct StatsStore {
    conn: Connection,
    path: PathBuf,
}

/// The statistics columns, in the order of `YearStats` plus output value.
pub const FIELDS: [&str; 8] = [
    "tax_cny",
    "revenue_cny",
    "value_added_cny",
    "output_value_cny",
    "employees",
    "rd_spend_cny",
    "pollutant_t",
    "off_meter_tce",
];

impl StatsStore {
    pub fn open(path: &Path) -> Result<StatsStore, StatsError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|cause| StatsError::CreateDir {
                path: path.to_path_buf(),
                cause,
            })?;
        }
        let err = |cause| StatsError::Sqlite {
            path: path.to_path_buf(),
            cause,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000;
             CREATE TABLE IF NOT EXISTS imports (
               id INTEGER PRIMARY KEY, file TEXT NOT NULL, imported_at_ms INTEGER NOT NULL,
               rows INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS firm_year_stats (
               import_id INTEGER NOT NULL REFERENCES imports(id), year INTEGER NOT NULL,
               firm TEXT NOT NULL, line INTEGER NOT NULL,
               tax_cny REAL, revenue_cny REAL, value_added_cny REAL, output_value_cny REAL,
               employees REAL, rd_spend_cny REAL, pollutant_t REAL, off_meter_tce REAL,
               PRIMARY KEY (import_id, year, firm));
             CREATE TABLE IF NOT EXISTS evaluations (
               id INTEGER PRIMARY KEY, year INTEGER NOT NULL, provisional INTEGER NOT NULL,
               evaluated_at_ms INTEGER NOT NULL, firm TEXT NOT NULL, score REAL, rank INTEGER,
               class TEXT, flags_json TEXT NOT NULL, record_json TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS evaluations_by_year ON evaluations (year, firm, evaluated_at_ms);",
        )
        .map_err(err)?;
        // Who imported and the file's digest came later: add the columns to an older store.
        for column in ["digest TEXT", "imported_by TEXT"] {
            let name = column.split(' ').next().unwrap_or_default();
            let has: bool = conn
                .query_row(
                    "SELECT COUNT(*) > 0 FROM pragma_table_info('imports') WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .map_err(err)?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE imports ADD COLUMN {column};"))
                    .map_err(err)?;
            }
        }
        Ok(StatsStore {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, cause: rusqlite::Error) -> StatsError {
        StatsError::Sqlite {
            path: self.path.clone(),
            cause,
        }
    }

    /// Stores the rows of one file as one import, all or nothing, with who imported it and the
    /// file's SHA-256. Returns the import's number.
    pub fn import(
        &mut self,
        file: &str,
        rows: &[import::Row],
        now_ms: i64,
        provenance: (&str, &str),
    ) -> Result<i64, StatsError> {
        let (digest, by) = provenance;
        let path = self.path.clone();
        let err = |cause| StatsError::Sqlite {
            path: path.clone(),
            cause,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO imports (file, imported_at_ms, rows, digest, imported_by)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![file, now_ms, rows.len() as i64, digest, by],
        )
        .map_err(err)?;
        let id = tx.last_insert_rowid();
        {
            let mut ins = tx
                .prepare(
                    "INSERT OR REPLACE INTO firm_year_stats (import_id, year, firm, line, tax_cny,
                     revenue_cny, value_added_cny, output_value_cny, employees, rd_spend_cny,
                     pollutant_t, off_meter_tce) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                )
                .map_err(err)?;
            for r in rows {
                let v = &r.values;
                ins.execute(params![
                    id,
                    r.year,
                    r.firm,
                    r.line as i64,
                    v[0],
                    v[1],
                    v[2],
                    v[3],
                    v[4],
                    v[5],
                    v[6],
                    v[7]
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(id)
    }

    /// Every import, oldest first: number, time, file, rows, SHA-256, who.
    pub fn history(&self) -> Result<Vec<ImportRecord>, StatsError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, imported_at_ms, file, rows, digest, imported_by FROM imports ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ImportRecord {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    file: r.get(2)?,
                    rows: r.get(3)?,
                    digest: r.get(4)?,
                    by: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The values in force for a firm's year, in the order of [`FIELDS`], with the import each
    /// came from: the latest import's row (an import carries forward what its file left out).
    pub fn in_force(&self, firm: &str, year: i32) -> Result<Option<InForce>, StatsError> {
        self.conn
            .query_row(
                "SELECT s.tax_cny, s.revenue_cny, s.value_added_cny, s.output_value_cny,
                        s.employees, s.rd_spend_cny, s.pollutant_t, s.off_meter_tce, s.import_id
                 FROM firm_year_stats s WHERE s.firm = ?1 AND s.year = ?2
                 ORDER BY s.import_id DESC LIMIT 1",
                params![firm, year],
                |r| {
                    let mut v = [None; 8];
                    for (i, slot) in v.iter_mut().enumerate() {
                        *slot = r.get(i)?;
                    }
                    Ok((v, r.get(8)?))
                },
            )
            .optional()
            .map_err(|cause| StatsError::Sqlite {
                path: self.path.clone(),
                cause,
            })
    }

    /// The latest import's statistics of a firm for a year, if any import had them; the import's
    /// time is shown in `tz` (the park's), with its offset.
    pub fn latest(
        &self,
        firm: &str,
        year: i32,
        tz: chrono_tz::Tz,
    ) -> Result<Option<Stored>, StatsError> {
        self.conn
            .query_row(
                "SELECT s.tax_cny, s.revenue_cny, s.value_added_cny, s.output_value_cny,
                        s.employees, s.rd_spend_cny, s.pollutant_t, s.off_meter_tce,
                        i.id, i.file, i.imported_at_ms, s.line
                 FROM firm_year_stats s JOIN imports i ON i.id = s.import_id
                 WHERE s.firm = ?1 AND s.year = ?2 ORDER BY i.id DESC LIMIT 1",
                params![firm, year],
                |r| {
                    let at: i64 = r.get(10)?;
                    let when = chrono::DateTime::from_timestamp_millis(at)
                        .map(|t| {
                            t.with_timezone(&tz)
                                .format("%Y-%m-%d %H:%M %:z")
                                .to_string()
                        })
                        .unwrap_or_default();
                    Ok(Stored {
                        stats: YearStats {
                            tax_cny: r.get(0)?,
                            revenue_cny: r.get(1)?,
                            value_added_cny: r.get(2)?,
                            employees: r.get(4)?,
                            rd_spend_cny: r.get(5)?,
                            pollutant_t: r.get(6)?,
                            off_meter_tce: r.get(7)?,
                        },
                        output_value_cny: r.get(3)?,
                        // FILE:LINE (import #N, time): the same in every language.
                        source: format!(
                            "{}:{} (#{}, {when})",
                            r.get::<_, String>(9)?,
                            r.get::<_, i64>(11)?,
                            r.get::<_, i64>(8)?
                        ),
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Keeps an evaluation with every input that produced it, so that a disputed class can be
    /// traced to its figures.
    pub fn record(&mut self, e: &Evaluation, now_ms: i64) -> Result<(), StatsError> {
        let path = self.path.clone();
        let err = |cause| StatsError::Sqlite {
            path: path.clone(),
            cause,
        };
        let tx = self.conn.transaction().map_err(err)?;
        for f in &e.firms {
            let record = serde_json::json!({
                "coverage": e.coverage,
                "benchmarks": e.benchmarks,
                "firm": f,
            });
            tx.execute(
                "INSERT INTO evaluations (year, provisional, evaluated_at_ms, firm, score, rank,
                 class, flags_json, record_json) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                params![
                    e.year,
                    e.provisional,
                    now_ms,
                    f.firm,
                    f.score,
                    f.rank.map(|r| r as i64),
                    f.class,
                    serde_json::to_string(&f.flags).unwrap_or_default(),
                    record.to_string()
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// How many evaluations of a year are kept (one row per firm and run).
    pub fn evaluations(&self, year: i32) -> Result<i64, StatsError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM evaluations WHERE year = ?1",
                [year],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }
}
