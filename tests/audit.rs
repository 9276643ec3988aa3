//! Audit-grade behaviour seen from the command line: one writer per store, meters over their
//! configured limit, held readings visible with the exit code, pipes closed early, and the
//! configuration warnings of `check`.

mod common;

use common::{ecogate as run, Kill};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ecogate")
}

/// A one-meter park whose grid import is limited to `max_rate` kWh/h.
fn park(dir: &Path, max_rate: f64, rollover: &str) -> (PathBuf, PathBuf) {
    let store = dir.join("s.db");
    let cfg = dir.join("ecogate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[park]\nname = \"P\"\ngrid_factor_year = 2022\n\
             [[firms]]\nid = \"f1\"\nname = \"F1\"\nland_mu = 10\n\
             [[sites]]\nid = \"plant\"\nfirm = \"f1\"\nkind = \"factory\"\n\
             [[meters]]\nid = \"grid\"\nsite = \"plant\"\nchannels = [{{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = {max_rate}{rollover} }}]\n\
             [store]\npath = \"{}\"\n[metrics]\nenabled = false\n",
            store.display()
        ),
    )
    .unwrap();
    (cfg, store)
}

#[test]
fn a_second_daemon_or_a_replay_on_a_held_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, store) = park(dir.path(), 1000.0, "");
    let cfg = cfg.to_str().unwrap();
    let first = Kill(
        Command::new(bin())
            .args(["run", "--config", cfg])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = first.0.id();
    // Ready when the lock file names the daemon.
    let lock = PathBuf::from(format!("{}.lock", store.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&lock)
        .ok()
        .map(|s| s.trim().to_string())
        != Some(pid.to_string())
    {
        assert!(Instant::now() < deadline, "the daemon never took its lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    let (code, _, err) = run(&["run", "--config", cfg]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains(&store.display().to_string()), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    let csv = dir.path().join("in.csv");
    std::fs::write(
        &csv,
        "timestamp,meter,channel,value,unit\n2024-01-01T00:00:00Z,grid,import,1,kWh\n",
    )
    .unwrap();
    let (code, _, err) = run(&["replay", "--config", cfg, "--input", csv.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    // The daemon's store holds nothing from the refused replay.
    drop(first);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM readings"), 0);
}

/// Readings of `grid/import` as CSV rows.
fn csv(dir: &Path, rows: &[(String, f64)]) -> PathBuf {
    let mut text = String::from("timestamp,meter,channel,value,unit\n");
    for (at, kwh) in rows {
        text.push_str(&format!("{at},grid,import,{kwh},kWh\n"));
    }
    let path = dir.join("in.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn replay(cfg: &Path, input: &Path) -> (i32, String, String) {
    run(&[
        "replay",
        "--config",
        cfg.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ])
}

/// A count from the store, as a person would query it.
fn count(store: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(store)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_meter_slightly_over_its_limit_is_counted_in_full_and_reported() {
    // Limit 200 kWh/h; the meter runs at 210 kWh/h, read every 15 minutes for two hours:
    // 9 readings, 8 steps of 52.5 kWh = 420 kWh, all counted.
    let dir = tempfile::tempdir().unwrap();
    let (cfg, store) = park(dir.path(), 200.0, "");
    let rows: Vec<(String, f64)> = (0..=8)
        .map(|k| {
            (
                format!("2024-05-01T{:02}:{:02}:00Z", k * 15 / 60, k * 15 % 60),
                10_000.0 + k as f64 * 52.5,
            )
        })
        .collect();
    let input = csv(dir.path(), &rows);
    let (code, out, err) = replay(&cfg, &input);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("grid 420.000 kWh"), "{out}");
    assert!(out.contains("over_limit: 1"), "{out}");
    // The event records the confirmed rate: 105 kWh in 30 minutes = 210 kWh/h.
    let rate = count(
        &store,
        "SELECT delta_micro FROM counter_events WHERE kind = 'over_limit'",
    );
    assert_eq!(rate, 210_000_000);
}

#[test]
fn held_readings_are_listed_and_a_replay_ending_on_one_exits_3() {
    // 1,000 -> 1,010 -> 900,000 (a spike, quarantined) -> 1,020 (the spike was a glitch)
    // -> 1,015 (a drop: held) -> 500,000 (a jump still pending at the end).
    // Counted: 10 + 10 = 20 kWh.
    let dir = tempfile::tempdir().unwrap();
    let (cfg, store) = park(dir.path(), 100.0, "");
    let rows = vec![
        ("2024-05-01T00:00:00Z".to_string(), 1_000.0),
        ("2024-05-01T00:15:00Z".to_string(), 1_010.0),
        ("2024-05-01T00:30:00Z".to_string(), 900_000.0),
        ("2024-05-01T00:45:00Z".to_string(), 1_020.0),
        ("2024-05-01T01:00:00Z".to_string(), 1_015.0),
        ("2024-05-01T01:15:00Z".to_string(), 500_000.0),
    ];
    let input = csv(dir.path(), &rows);
    let (code, out, err) = replay(&cfg, &input);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(out.contains("grid 20.000 kWh"), "{out}");
    for expected in [
        "quarantined grid/import at 2024-05-01 08:30:00",
        "glitch_discarded grid/import at 2024-05-01 08:30:00",
        "held grid/import at 2024-05-01 09:00:00 CST: 1015 kWh (mark 1020 kWh)",
        "still quarantined grid/import at 2024-05-01 09:15:00 CST: 500000 kWh (mark 1020 kWh): not counted",
    ] {
        assert!(err.contains(expected), "`{expected}` not in\n{err}");
    }
    // The store marks the three held values as held, not good.
    let held = count(
        &store,
        "SELECT COUNT(*) FROM readings_by_name WHERE quality = 'held'",
    );
    assert_eq!(held, 3);
}

#[test]
fn a_replay_piped_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let mut child = Command::new(bin())
        .args([
            "replay",
            "--config",
            "config/ecogate.example.toml",
            "--input",
            "tests/data/sample.csv",
            "--store",
            store.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, then close the pipe, as `| head -c 1` does.
    let mut stdout = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    stdout.read_exact(&mut one).unwrap();
    drop(stdout);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    // Ended by SIGPIPE (as `cat` is) or with success: never a panic's 101.
    assert_ne!(status.code(), Some(101), "{err}");
}

#[test]
fn check_warns_about_a_rollover_that_looks_like_the_largest_value_shown() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = park(dir.path(), 100.0, ", rollover = 99999999.99");
    let (code, out, err) = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("meters[0].channels[0].rollover: rollover 99999999.99 looks like the largest value the register shows"),
        "{out}"
    );
    assert!(out.contains("write 100000000"), "{out}");
}
