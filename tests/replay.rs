//! `ecogate replay` end to end, through the binary: the shipped sample, bad rows, line protocol.

mod common;

use std::process::Command;

fn ecogate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ecogate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_sample_replays_cleanly_with_the_expected_totals() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let (code, out, err) = ecogate(&[
        "replay",
        "--config",
        "config/ecogate.example.toml",
        "--input",
        "tests/data/sample.csv",
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("2510 rows, 2510 accepted, 0 rejected"),
        "{out}"
    );
    assert!(
        out.contains(
            "counter events: baseline: 13, rollover: 1, quarantined: 1, glitch_discarded: 1"
        ),
        "{out}"
    );

    // Ground truth from the file itself: the factory's grid import is last - first of
    // hd-main/import, leaving out the one glitched row (the spike +1,000,000 kWh).
    let text = std::fs::read_to_string("tests/data/sample.csv").unwrap();
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.contains(",hd-main,import,") && !l.contains(":05:00"))
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    let truth = values.last().unwrap() - values.first().unwrap();
    let expected = format!("grid {} kWh", ecogate::report::num(truth, 3));
    let firm = out.split("firm hengda-motors").nth(1).unwrap();
    assert!(firm.contains(&expected), "expected `{expected}` in\n{firm}");

    // Replaying the same file into the same store counts nothing twice.
    let (code, out, _) = ecogate(&[
        "replay",
        "--config",
        "config/ecogate.example.toml",
        "--input",
        "tests/data/sample.csv",
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("electricity   0.000 kWh consumed (grid 0.000 kWh"),
        "{out}"
    );
    assert!(
        out.contains("note: 2510 readings were at or before"),
        "{out}"
    );
}

#[test]
fn bad_rows_are_reported_with_line_and_reason_and_the_rest_is_accounted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    std::fs::write(
        &input,
        "timestamp,meter,channel,value,unit\n\
         2026-01-05 08:00:00,hd-main,import,1000,kWh\n\
         2026-01-05 08:15:00,hd-main,import,abc,kWh\n\
         yesterday,hd-main,import,1010,kWh\n\
         2026-01-05 08:30:00,hd-main,import,1010,furlong\n\
         2026-01-05 08:30:00,no-such-meter,import,1010,kWh\n\
         2026-01-05 08:30:00,hd-main,import\n\
         2026-01-05 08:45:00,hd-main,import,1,MWh\n\
         2026-01-05 09:00:00,hd-main,import,1012,kWh\n",
    )
    .unwrap();
    let store = dir.path().join("s.db");
    let (code, out, err) = ecogate(&[
        "replay",
        "--config",
        "config/ecogate.example.toml",
        "--input",
        input.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{out}\n{err}");
    let path = input.display().to_string();
    for (line, reason) in [
        (3, "bad_number"),
        (4, "bad_timestamp"),
        (5, "unknown_unit"),
        (6, "unknown_meter"),
        (7, "malformed_row"),
    ] {
        assert!(
            err.contains(&format!("{path}:{line}: {reason}: ")),
            "line {line} {reason} missing in\n{err}"
        );
    }
    assert!(out.contains("8 rows, 3 accepted, 5 rejected (bad_number: 1, bad_timestamp: 1, malformed_row: 1, unknown_meter: 1, unknown_unit: 1)"), "{out}");
    // 1,000 kWh -> 1 MWh (= 1,000 kWh, no change) -> 1,012 kWh: 12 kWh accounted.
    assert!(out.contains("grid 12.000 kWh"), "{out}");
}

#[test]
fn line_protocol_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("export.lp");
    // 2026-01-05T00:00:00Z and one hour later, nanoseconds.
    std::fs::write(
        &input,
        "energy,meter=hd-gas volume=500 1767571200000000000\n\
         energy,meter=hd-gas volume=620.5 1767574800000000000\n\
         energy,meter=hd-gas volume=\"n/a\" 1767574800000000000\n",
    )
    .unwrap();
    let store = dir.path().join("s.db");
    let (code, out, err) = ecogate(&[
        "replay",
        "--config",
        "config/ecogate.example.toml",
        "--input",
        input.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains(":3: bad_number: field `volume` is a string, not a number"),
        "{err}"
    );
    // 620.5 - 500 = 120.5 Nm3 of gas.
    assert!(out.contains("natural gas   120.500 Nm3"), "{out}");
}

#[test]
fn check_prints_a_summary_and_fails_with_code_2_on_errors() {
    let (code, out, _) = ecogate(&["check", "--config", "config/ecogate.example.toml"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("3 firms, 3 sites, 10 meters, 14 channels"),
        "{out}"
    );
    assert!(
        out.contains("co2.grid_location = 0.5306 kgCO2/kWh (2023): MEE/NBS"),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[park]\nname = \"P\"\nnmae = \"x\"\n").unwrap();
    let (code, _, err) = ecogate(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{}:3:1: park.nmae: unknown field `nmae`",
            bad.display()
        )),
        "{err}"
    );
}
