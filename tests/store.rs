//! The embedded store's schema: a version 1 store (readings keyed by text) is migrated to series
//! ids without losing or changing a reading, and a store newer than this ecogate is refused.

mod common;

use common::*;
use ecogate::accounting::Accountant;
use ecogate::sinks::store::Store;

type Row = (i64, String, String, f64, String, String);

fn named_rows(path: &std::path::Path) -> Vec<Row> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT ts_ms, meter, channel, amount_base, base_unit, quality FROM readings_by_name
             ORDER BY ts_ms, meter, channel",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn scalar(path: &std::path::Path, sql: &str) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
        .map(|v| match v {
            rusqlite::types::Value::Text(t) => t,
            rusqlite::types::Value::Integer(i) => i.to_string(),
            other => format!("{other:?}"),
        })
        .unwrap()
}

#[test]
fn version_1_store_is_migrated_without_losing_a_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let t1 = ts("2026-03-01T00:00:00Z");
    let t2 = ts("2026-03-01T00:15:00Z");
    {
        // The version 1 layout, as ecogate 0.1 wrote it.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('schema_version', '1');
             CREATE TABLE readings (
                 meter TEXT NOT NULL, channel TEXT NOT NULL, ts_ms INTEGER NOT NULL,
                 amount_base REAL NOT NULL, base_unit TEXT NOT NULL, quality TEXT NOT NULL,
                 PRIMARY KEY (ts_ms, meter, channel)) WITHOUT ROWID;",
        )
        .unwrap();
        let mut ins = conn
            .prepare("INSERT INTO readings VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .unwrap();
        ins.execute(rusqlite::params![
            "grid", "import", t1, 1000.0, "kWh", "good"
        ])
        .unwrap();
        ins.execute(rusqlite::params![
            "grid",
            "import",
            t2,
            1001.5,
            "kWh",
            "uncertain"
        ])
        .unwrap();
        ins.execute(rusqlite::params!["pv", "gen", t1, 5.25, "kWh", "bad"])
            .unwrap();
    }
    let row = |t: i64, m: &str, c: &str, a: f64, q: &str| -> Row {
        (t, m.into(), c.into(), a, "kWh".into(), q.into())
    };
    let expected = vec![
        row(t1, "grid", "import", 1000.0, "good"),
        row(t1, "pv", "gen", 5.25, "bad"),
        row(t2, "grid", "import", 1001.5, "uncertain"),
    ];

    let mut store = Store::open(&path).unwrap();
    assert_eq!(named_rows(&path), expected, "every reading, as it was");
    assert_eq!(
        scalar(&path, "SELECT value FROM meta WHERE key = 'schema_version'"),
        "3"
    );
    assert_eq!(
        scalar(
            &path,
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'readings_v1'"
        ),
        "0",
        "the version 1 table is gone"
    );
    let grid_import_id = scalar(
        &path,
        "SELECT id FROM series WHERE meter = 'grid' AND channel = 'import'",
    );

    // A new batch: FACTORY has 5 channels; the 2 migrated series are reused, 3 are added.
    let cfg = config(FACTORY);
    let acct = Accountant::new(cfg);
    let t3 = ts("2026-03-01T00:30:00Z");
    let batch = acct.process(
        &[ecogate::reading::Reading {
            ts_ms: t3,
            ..reading("grid", "import", 1002.0, "kWh", "2026-03-01T00:30:00Z")
        }],
        t3,
    );
    store.commit(&acct, &batch).unwrap();
    assert_eq!(store.reading_count().unwrap(), 4);
    assert_eq!(scalar(&path, "SELECT COUNT(*) FROM series"), "5");
    assert_eq!(
        scalar(
            &path,
            &format!("SELECT COUNT(*) FROM readings WHERE series = {grid_import_id}")
        ),
        "3",
        "the new grid import reading uses the migrated series"
    );
    drop(store);

    // Opening again migrates nothing and keeps every row.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.reading_count().unwrap(), 4);
    let mut all = expected;
    all.push(row(t3, "grid", "import", 1002.0, "good"));
    assert_eq!(named_rows(&path), all);
}

#[test]
fn a_store_newer_than_this_ecogate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('schema_version', '4');",
        )
        .unwrap();
    }
    let e = Store::open(&path).unwrap_err().to_string();
    assert!(
        e.contains("schema version 4 is newer") && e.contains("store.db"),
        "{e}"
    );
}

/// The daemon and a report command open the same store at the same instant; the CI once saw the
/// restarted daemon exit with "view readings_by_name already exists" because the test's reader
/// re-created the view between its DROP and CREATE. 8 threads x 25 opens each, all must succeed.
#[test]
fn stores_opened_at_the_same_instant_all_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    Store::open(&path).unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for _ in 0..25 {
                    barrier.wait();
                    if let Err(e) = Store::open(&path) {
                        failures.push(e.to_string());
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(failures, Vec::<String>::new());
}
