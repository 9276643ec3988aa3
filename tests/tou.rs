//! Time of use and demand, hand-computed: a firm's day under Henan's 2024 calendar
//! (豫发改价管〔2024〕283号), replayed and reported; and the tariff's configuration errors.

mod common;

use std::fmt::Write;

const TARIFF: &str = r#"
[tariff]
name = "河南工商业分时电价 2024"
source = "豫发改价管〔2024〕283号"
prices_cny_per_kwh = { sharp = 1.2, peak = 1.0, flat = 0.6, valley = 0.3 }
[[tariff.seasons]]
months = [1, 12]
sharp = ["17:00-19:00"]
peak = ["16:00-24:00"]
valley = ["00:00-07:00"]
[[tariff.seasons]]
months = [2, 6]
peak = ["16:00-24:00"]
valley = ["00:00-07:00"]
[[tariff.seasons]]
months = [7, 8]
sharp = ["20:00-23:00"]
peak = ["16:00-24:00"]
valley = ["00:00-07:00"]
[[tariff.seasons]]
months = [3, 4, 5, 9, 10, 11]
peak = ["16:00-24:00"]
valley = ["00:00-06:00", "11:00-14:00"]
[tariff.demand]
contract_kw = 50
charge_cny_per_kw_month = 36.1
"#;

/// The rows of table `id` of `ecogate report --period 2026-01-15 --format json --lang en`.
fn report_rows(config: &str, id: &str) -> Vec<serde_json::Value> {
    let (code, out, err) = common::ecogate(&[
        "report",
        "--config",
        config,
        "--period",
        "2026-01-15",
        "--format",
        "json",
        "--lang",
        "en",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no {id} table in {out}"))["rows"]
        .as_array()
        .unwrap()
        .clone()
}

fn park(store: &std::path::Path) -> String {
    format!(
        "[park]\nname = \"P\"\ntimezone = \"Asia/Shanghai\"\ngrid_factor_year = 2022\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"factory\"\n\
         [[meters]]\nid = \"m\"\nsite = \"s\"\nchannels = [{{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 1000 }}]\n\
         [store]\npath = \"{}\"\n{TARIFF}",
        store.display()
    )
}

/// 15 January 2026 (Asia/Shanghai), read every quarter hour: 2.5 kWh a quarter hour (10 kW),
/// except 17:30-17:45 with 5 kWh (20 kW). January's bands: valley 00:00-07:00 (28 quarter
/// hours), sharp 17:00-19:00 (8), peak 16:00-24:00 less the sharp hours (24), flat the other
/// 36.
/// - sharp 7 x 2.5 + 5 = 22.5 kWh; peak 24 x 2.5 = 60; flat 36 x 2.5 = 90; valley 28 x 2.5 =
///   70; 242.5 in all.
/// - cost 22.5 x 1.2 + 60 x 1.0 + 90 x 0.6 + 70 x 0.3 = 27 + 60 + 54 + 21 = 162 CNY.
/// - shift potential 22.5 x (1.2 - 0.3) + 60 x (1.0 - 0.3) = 20.25 + 42 = 62.25 CNY.
/// - maximum demand 5 kWh x 4 = 20 kW at 17:30, 40 % of the 50 kW contracted.
#[test]
fn a_day_splits_into_bands_costs_and_demand_as_hand_computed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("park.toml");
    std::fs::write(&cfg, park(&dir.path().join("store.db"))).unwrap();
    let mut csv = String::from("timestamp,meter,channel,value,unit\n");
    let mut kwh = 1000.0;
    for q in 0..=96 {
        let (h, m) = (q / 4, q % 4 * 15);
        let ts = if q == 96 {
            "2026-01-16T00:00:00+08:00".to_string()
        } else {
            format!("2026-01-15T{h:02}:{m:02}:00+08:00")
        };
        let _ = writeln!(csv, "{ts},m,import,{kwh:.3},kWh");
        // The quarter hour starting at q: 17:30 is q = 70.
        kwh += if q == 70 { 5.0 } else { 2.5 };
    }
    let input = dir.path().join("day.csv");
    std::fs::write(&input, csv).unwrap();
    let c = cfg.to_str().unwrap();
    let (code, out, err) =
        common::ecogate(&["replay", "--config", c, "--input", input.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, summary, _) = common::ecogate(&["check", "--config", c]);
    assert!(
        summary.contains("tariff: 河南工商业分时电价 2024 (豫发改价管〔2024〕283号); prices sharp 1.2 / peak 1 / flat 0.6 / valley 0.3 CNY/kWh; contracted demand 50 kW"),
        "{summary}"
    );
    let rows = report_rows(c, "time_of_use");
    let firm = &rows[0];
    let f = |k: &str| firm[k].as_f64().unwrap_or_else(|| panic!("{k} in {firm}"));
    assert_eq!(firm["entity"], "F");
    for (k, want) in [
        ("sharp_kwh", 22.5),
        ("peak_kwh", 60.0),
        ("flat_kwh", 90.0),
        ("valley_kwh", 70.0),
        ("total_kwh", 242.5),
        ("energy_cost_cny", 162.0),
        ("shift_potential_cny", 62.25),
        ("max_demand_kw", 20.0),
        ("contract_kw", 50.0),
        ("demand_of_contract_pct", 40.0),
    ] {
        assert!((f(k) - want).abs() < 1e-9, "{k}: {} != {want}", f(k));
    }
    assert_eq!(firm["max_demand_at"], "2026-01-15 17:30");
    assert_eq!(f("demand_slide_min"), 15.0);
    // A sliding demand window needs minute windows, kept 14 days by default: for January the
    // report falls back to fixed quarter hours and says so.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("contract_kw = 50\n", "contract_kw = 50\nslide_min = 1\n"),
    )
    .unwrap();
    let row = report_rows(c, "time_of_use")[0].clone();
    assert_eq!(row["demand_slide_min"].as_f64(), Some(15.0));
    assert_eq!(row["max_demand_kw"].as_f64(), Some(20.0));
    std::fs::write(&cfg, text).unwrap();
    // The park row is the firm's, the park having one firm.
    assert_eq!(rows[1]["total_kwh"].as_f64(), Some(242.5));
    // The Chinese report names the bands.
    let (_, text, _) = common::ecogate(&[
        "report",
        "--config",
        c,
        "--period",
        "2026-01-15",
        "--lang",
        "zh",
    ]);
    assert!(
        text.contains("尖峰电量") && text.contains("低谷电量") && text.contains("最大需量"),
        "{text}"
    );
}

#[test]
fn tariff_errors_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = park(&dir.path().join("store.db"));
    let cases = [
        (
            base.replace(
                "valley = [\"00:00-07:00\"]\n[[tariff.seasons]]\nmonths = [2, 6]",
                "valley = [\"00:00-07:00\", \"16:30-17:00\"]\n[[tariff.seasons]]\nmonths = [2, 6]",
            ),
            "tariff.seasons[0].valley: 16:30-17:00 overlaps the peak band at 16:30",
        ),
        (
            base.replace("months = [7, 8]", "months = [7]"),
            "months 8 are in no season",
        ),
        (
            base.replace("sharp = [\"20:00-23:00\"]", "sharp = [\"20:10-23:00\"]"),
            "tariff.seasons[2].sharp: `20:10-23:00`: give HH:MM-HH:MM on quarter hours",
        ),
        (
            base.replace("months = [2, 6]", "months = [2, 6, 12]"),
            "month 12 is in two seasons",
        ),
        (
            base.replace("valley = 0.3 }", "valley = -0.3 }"),
            "tariff.prices_cny_per_kwh.valley: a price is a number >= 0",
        ),
        (
            base.replace("max_rate_per_hour = 1000 }", "max_rate_per_hour = 1000, tariff_band = \"peak\" }"),
            "meters[0].channels[0].tariff_band: a tariff register is compared, not accounted",
        ),
        (
            base.replace("max_rate_per_hour = 1000 }", "max_rate_per_hour = 1000 }, { id = \"t9\", kind = \"gauge\", unit = \"kWh\", tariff_band = \"noon\" }"),
            "meters[0].channels[1].tariff_band: unknown band `noon`",
        ),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("park.toml");
        std::fs::write(&path, &text).unwrap();
        let (code, out, err) = common::ecogate(&["check", "--config", path.to_str().unwrap()]);
        assert_eq!(code, 2, "accepted: {expected}\n{out}");
        assert!(err.contains(expected), "{expected}\nnot in:\n{err}");
    }
}

/// The month's figures on /metrics: a tariff whose every quarter hour is valley, demand in a
/// window sliding by a minute, and 12 kWh replayed between minutes 7 and 22 of the last two
/// whole quarter hours before now (readings at :00, :07, :22 and :30 of them: 100, 100, 112,
/// 112 kWh). This month's valley energy is 12 kWh, the other bands 0, the cost 12 x 0.3 = 3.6
/// CNY; the sliding window finds all 12 kWh in minutes 7-22: 48 kW, 48 / 50 = 0.96 of the
/// contract (fixed quarter hours would have seen 6.4 kWh at most: 25.6 kW).
#[test]
fn this_months_bands_and_demand_are_on_metrics() {
    use std::io::{Read, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let q0 = now_ms / 900_000 * 900_000 - 1_800_000;
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
    let local = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .with_timezone(&tz)
    };
    if local(q0).format("%Y-%m").to_string() != local(now_ms).format("%Y-%m").to_string() {
        eprintln!("skipped: the first half hour of a month");
        return;
    }
    let all_valley = "[[tariff.seasons]]\nmonths = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]\nvalley = [\"00:00-24:00\"]\n";
    let tariff_start = TARIFF.find("[[tariff.seasons]]").unwrap();
    let tariff_end = TARIFF.find("[tariff.demand]").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text = park(&dir.path().join("store.db"))
        .replace(&TARIFF[tariff_start..tariff_end], all_valley)
        .replace("contract_kw = 50\n", "contract_kw = 50\nslide_min = 1\n")
        + &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let cfg = dir.path().join("park.toml");
    std::fs::write(&cfg, text).unwrap();
    let mut csv = String::from("timestamp,meter,channel,value,unit\n");
    for (minute, kwh) in [(0, 100.0), (7, 100.0), (22, 112.0), (30, 112.0)] {
        let _ = writeln!(
            csv,
            "{},m,import,{kwh},kWh",
            local(q0 + minute * 60_000).to_rfc3339()
        );
    }
    let input = dir.path().join("now.csv");
    std::fs::write(&input, csv).unwrap();
    let c = cfg.to_str().unwrap();
    let (code, out, err) =
        common::ecogate(&["replay", "--config", c, "--input", input.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let _daemon = common::run_daemon(&cfg);
    common::wait_for_port(port);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    for line in [
        "ecogate_firm_tou_month_kwh{band=\"valley\",firm=\"f\"} 12",
        "ecogate_firm_tou_month_kwh{band=\"peak\",firm=\"f\"} 0",
        "ecogate_firm_tou_month_cost_cny{firm=\"f\"} 3.6",
        "ecogate_firm_max_demand_month_kw{firm=\"f\"} 48",
        "ecogate_firm_max_demand_of_contract_ratio{firm=\"f\"} 0.96",
    ] {
        assert!(
            body.contains(line),
            "{line} not in:\n{}",
            body.lines()
                .filter(|l| l.contains("tou") || l.contains("demand"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // The firm's status page, in both languages.
    for (query, words) in [
        (
            "",
            [
                "本月分时电量",
                "<td class=l>低谷</td><td>12.0</td>",
                "最大需量(千瓦) 48.0",
            ],
        ),
        (
            "?lang=en",
            [
                "Time of use this month",
                "<td class=l>valley</td><td>12.0</td>",
                "Max 15-min demand (kW) 48.0",
            ],
        ),
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = write!(
            s,
            "GET /firm/f{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut page = String::new();
        let _ = s.read_to_string(&mut page);
        for w in words {
            assert!(page.contains(w), "{w} not on /firm/f{query}:\n{page}");
        }
    }
}

/// Two meters with their own tariff registers (尖/峰/平/谷 = tariffs 1-4, recorded as
/// channels with `tariff_band`), 10 kW all day on 15 January. m1 is programmed with the
/// configured calendar: its registers agree with the bands computed from its total (sharp 20,
/// peak 60, flat 90, valley 70 kWh). m2 still counts 23:00-24:00 as valley (Henan's 2022
/// calendar): its valley register reads 70 + 10 = 80 and its peak 60 - 10 = 50, each 10 kWh
/// (over 1 %) off, and both are flagged; its sharp and flat agree.
#[test]
fn a_meters_tariff_registers_are_checked_against_the_calendar() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("park.toml");
    let registers = "{ id = \"t1\", kind = \"gauge\", unit = \"kWh\", tariff_band = \"sharp\" },\n  { id = \"t2\", kind = \"gauge\", unit = \"kWh\", tariff_band = \"peak\" },\n  { id = \"t3\", kind = \"gauge\", unit = \"kWh\", tariff_band = \"flat\" },\n  { id = \"t4\", kind = \"gauge\", unit = \"kWh\", tariff_band = \"valley\" }";
    let text = park(&dir.path().join("store.db")).replace(
        "[[meters]]\nid = \"m\"\nsite = \"s\"\nchannels = [{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 1000 }]\n",
        &["m1", "m2"]
            .iter()
            .map(|m| format!("[[meters]]\nid = \"{m}\"\nsite = \"s\"\nchannels = [\n  {{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 1000 }},\n  {registers},\n]\n"))
            .collect::<String>(),
    );
    std::fs::write(&cfg, text).unwrap();
    // January: valley q 0-27, sharp 68-75, peak 64-95 otherwise, flat the rest.
    let band = |q: usize, old_calendar: bool| -> usize {
        match q {
            0..=27 => 3,
            92..=95 if old_calendar => 3,
            68..=75 => 0,
            64..=95 => 1,
            _ => 2,
        }
    };
    let mut csv = String::from("timestamp,meter,channel,value,unit\n");
    for (m, old) in [("m1", false), ("m2", true)] {
        let mut regs = [100.0f64, 200.0, 300.0, 400.0];
        for q in 0..=96usize {
            let ts = if q == 96 {
                "2026-01-16T00:00:00+08:00".to_string()
            } else {
                format!("2026-01-15T{:02}:{:02}:00+08:00", q / 4, q % 4 * 15)
            };
            let total: f64 = regs.iter().sum();
            let _ = writeln!(csv, "{ts},{m},import,{total:.2},kWh");
            for (i, r) in regs.iter().enumerate() {
                let _ = writeln!(csv, "{ts},{m},t{},{r:.2},kWh", i + 1);
            }
            if q < 96 {
                regs[band(q, old)] += 2.5;
            }
        }
    }
    let input = dir.path().join("day.csv");
    std::fs::write(&input, csv).unwrap();
    let c = cfg.to_str().unwrap();
    let (code, out, err) =
        common::ecogate(&["replay", "--config", c, "--input", input.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let rows = report_rows(c, "tariff_registers");
    let row = |m: &str, ch: &str| {
        rows.iter()
            .find(|r| r["meter_id"] == m && r["channel"] == ch)
            .unwrap()
            .clone()
    };
    for (m, ch, register, computed, check) in [
        ("m1", "t1", 20.0, 20.0, "agrees"),
        ("m1", "t2", 60.0, 60.0, "agrees"),
        ("m1", "t3", 90.0, 90.0, "agrees"),
        ("m1", "t4", 70.0, 70.0, "agrees"),
        ("m2", "t1", 20.0, 20.0, "agrees"),
        (
            "m2",
            "t2",
            50.0,
            60.0,
            "differs: check the meter's time-period table",
        ),
        ("m2", "t3", 90.0, 90.0, "agrees"),
        (
            "m2",
            "t4",
            80.0,
            70.0,
            "differs: check the meter's time-period table",
        ),
    ] {
        let r = row(m, ch);
        assert!(
            (r["register_kwh"].as_f64().unwrap() - register).abs() < 1e-9,
            "{r}"
        );
        assert!(
            (r["computed_kwh"].as_f64().unwrap() - computed).abs() < 1e-9,
            "{r}"
        );
        assert_eq!(r["check"], check, "{r}");
    }
}
