//! `ecogate replay` end to end, through the binary: the shipped sample, bad rows, line protocol.

mod common;

use common::ecogate;

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

/// Per channel of the shipped sample: (first, last) value in the file, in the file's unit,
/// leaving out the one glitched row (hd-main import at 01:05, a spike of +1,000,000 kWh).
fn sample_span(meter: &str, channel: &str) -> (f64, f64) {
    let text = std::fs::read_to_string("tests/data/sample.csv").unwrap();
    let values: Vec<f64> = text
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f[1] == meter && f[2] == channel && !f[0].contains(":05:00")
        })
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    (values[0], *values.last().unwrap())
}

fn delta(meter: &str, channel: &str) -> f64 {
    let (first, last) = sample_span(meter, channel);
    last - first
}

#[test]
fn the_shipped_samples_printed_figures_follow_from_the_file() {
    use ecogate::report::num;
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
    let section = |name: &str| -> String {
        out.split(&format!("firm {name}"))
            .nth(1)
            .unwrap()
            .split("\nfirm ")
            .next()
            .unwrap()
            .to_string()
    };
    let has = |text: &str, want: String| assert!(text.contains(&want), "`{want}` not in\n{text}");
    // National grid 2023: 0.5306 kgCO2/kWh location-based; electricity 0.1229 kgce/kWh;
    // natural gas 2.162 kgCO2/Nm3 and 1.2143 kgce/Nm3.

    // hengda-motors. The gas meter wraps at 100,000 Nm3 once: used = last + 100,000 - first.
    let hd = section("hengda-motors");
    let (gas_first, gas_last) = sample_span("hd-gas", "volume");
    assert!(gas_last < gas_first, "the sample's gas meter rolls over");
    let gas = gas_last + 100_000.0 - gas_first;
    has(&hd, format!("natural gas   {} Nm3", num(gas, 3)));
    let grid = delta("hd-main", "import");
    let consumed = grid + delta("hd-pv", "generation") - delta("hd-main", "export");
    has(
        &hd,
        format!(
            "{} kWh consumed (grid {} kWh",
            num(consumed, 3),
            num(grid, 3)
        ),
    );
    // tce (equivalent) = consumed x 0.1229 + gas x 1.2143, in tonnes.
    let tce = (consumed * 0.1229 + gas * 1.2143) / 1000.0;
    has(
        &hd,
        format!("energy        {} tce equivalent value", num(tce, 4)),
    );
    // CO2 = gas x 2.162 (scope 1) + grid x 0.5306 (scope 2), in tonnes.
    let (s1, s2) = (gas * 2.162 / 1000.0, grid * 0.5306 / 1000.0);
    has(
        &hd,
        format!(
            "scope 1 {} t + scope 2 {} t location-based",
            num(s1, 4),
            num(s2, 4)
        ),
    );
    has(&hd, format!("CO2           {} t total", num(s1 + s2, 4)));
    // Output: pieces x 850 CNY (unit_value_cny in the example).
    let pieces = delta("hd-line1", "units");
    has(
        &hd,
        format!(
            "output        {} CNY (production counters)",
            num(pieces * 850.0, 2)
        ),
    );

    // lvneng-charging: chargers' delivered energy and sessions as counted.
    let ln = section("lvneng-charging");
    has(
        &ln,
        format!(
            "charging: {} kWh delivered in {} sessions",
            num(delta("ln-chargers", "delivered"), 3),
            num(delta("ln-chargers", "sessions"), 0)
        ),
    );
    // Grid import plus PV (Wh in the file) is what the station consumed.
    let ln_consumed = delta("ln-grid", "import") + delta("ln-pv", "generation") / 1000.0;
    has(&ln, format!("{} kWh consumed", num(ln_consumed, 3)));

    // qinghe-hydrogen: grid in MWh in the file. kWh/kg = consumed / produced; kgCO2e/kg = grid
    // kWh x 0.5306 / produced (PV counts zero); above 14.51: conventional.
    let qh = section("qinghe-hydrogen");
    let qh_grid = delta("qh-grid", "import") * 1000.0;
    let qh_consumed = qh_grid + delta("qh-pv", "generation");
    let kg = delta("qh-h2", "produced");
    let kgco2_per_kg = qh_grid * 0.5306 / kg;
    assert!(kgco2_per_kg > 14.51);
    has(
        &qh,
        format!(
            "{} kg produced, {} kg dispensed, {} kWh/kg, {} kgCO2e/kg: conventional",
            num(kg, 3),
            num(delta("qh-h2", "dispensed"), 3),
            num(qh_consumed / kg, 2),
            num(kgco2_per_kg, 3)
        ),
    );
    // The park: the three firms' CO2 added.
    let park_co2 =
        s1 + s2 + delta("ln-grid", "import") * 0.5306 / 1000.0 + qh_grid * 0.5306 / 1000.0;
    let park = out.split("park Zhongyuan").nth(1).unwrap();
    has(park, format!("CO2           {} t total", num(park_co2, 4)));
}

/// Under ECOGATE_NOW a replay is made as of that moment, as reports are: a reading dated after
/// it is refused as in the future (exit 3, named), one before it is accounted; without
/// ECOGATE_NOW the same file is all in the past and all accounted.
#[test]
fn a_replay_under_ecogate_now_refuses_what_is_later() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("park.toml");
    let text = common::park::ParkToml::one_site("factory")
        .meter(
            "m",
            "s",
            &[common::park::counter(
                "import",
                "grid_import",
                "kWh",
                1000.0,
            )],
        )
        .section(&format!(
            "[store]\npath = \"{}\"\n",
            dir.path().join("s.db").display()
        ))
        .to_string();
    std::fs::write(&cfg, text).unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        "timestamp,meter,channel,value,unit\n2026-01-15T10:00:00+08:00,m,import,100,kWh\n2026-01-15T11:00:00+08:00,m,import,110,kWh\n2026-01-15T13:00:00+08:00,m,import,130,kWh\n",
    )
    .unwrap();
    let run = |now: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ecogate"));
        cmd.args([
            "replay",
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ]);
        match now {
            Some(n) => cmd.env("ECOGATE_NOW", n),
            None => cmd.env_remove("ECOGATE_NOW"),
        };
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = run(Some("2026-01-15T12:00:00+08:00"));
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("future_timestamp"), "{out}");
    assert!(
        out.contains(":4:"),
        "the refused row is named by its line: {out}"
    );
    std::fs::remove_file(dir.path().join("s.db")).unwrap();
    let (code, out) = run(None);
    assert_eq!(code, 0, "{out}");
}
