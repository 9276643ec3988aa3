//! `ecogate report`, `evaluate` and `stats import` as a user runs them, on the sample park:
//! the sample readings replayed into a store, the sample statistics imported, reports made as of
//! 2026-12-01 00:00 (+08:00).
//!
//! Every format is compared with a golden file in tests/data/golden (`ECOGATE_UPDATE_GOLDEN=1`
//! rewrites them; read the diff before committing it); the XLSX workbook is read back with
//! calamine; the HTML report is opened in headless Chromium, which must log no console error, and
//! its screenshot is kept in target/screenshots.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const NOW: &str = "2026-12-01T00:00:00+08:00";

struct Park {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

fn run(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ecogate"))
        .args(args)
        .env("ECOGATE_NOW", NOW)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The example configuration with its store in a temporary folder, the sample replayed into it
/// and the sample statistics imported.
fn park() -> Park {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("config/ecogate.example.toml")
        .unwrap()
        .replace(
            "path = \"data/ecogate.db\"",
            &format!("path = \"{}\"", dir.path().join("ecogate.db").display()),
        );
    let config = dir.path().join("ecogate.toml");
    std::fs::write(&config, text).unwrap();
    let c = config.to_str().unwrap();
    let (code, _, err) = run(&["replay", "--config", c, "--input", "tests/data/sample.csv"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&[
        "stats",
        "import",
        "--config",
        c,
        "config/statistics.example.csv",
    ]);
    assert_eq!(code, 0, "{err}");
    // The digest is the file's SHA-256 (sha256sum config/statistics.example.csv).
    assert!(
        String::from_utf8_lossy(&out)
            .starts_with("import #1 (sha256 e57294e0268d6e57): 3 rows (3 firms; years 2026)"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    Park { _dir: dir, config }
}

/// The first firm's tax per mu (万元/亩) in the November 2026 report.
fn first_firms_tax_per_mu(config: &str) -> Option<f64> {
    let (_, out, _) = run(&[
        "report", "--config", config, "--period", "2026-11", "--format", "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    v["tables"][0]["rows"][0]["tax_per_mu_10k_cny"].as_f64()
}

fn golden(name: &str, got: &[u8]) {
    let path = Path::new("tests/data/golden").join(name);
    if std::env::var("ECOGATE_UPDATE_GOLDEN").is_ok() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read(&path).unwrap_or_else(|_| {
        panic!(
            "{} missing: run with ECOGATE_UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if want != got {
        let fresh = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&fresh, got).unwrap();
        panic!(
            "{name} differs from its golden file: diff {} {}",
            path.display(),
            fresh.display()
        );
    }
}

#[test]
fn every_report_format_matches_its_golden_file() {
    let p = park();
    let c = p.config.to_str().unwrap();
    for (format, ext) in [
        ("table", "txt"),
        ("csv", "csv"),
        ("json", "json"),
        ("md", "md"),
        ("html", "html"),
    ] {
        for lang in ["zh", "en"] {
            let (code, out, err) = run(&[
                "report", "--config", c, "--period", "2026-11", "--format", format, "--lang", lang,
            ]);
            assert_eq!(code, 0, "{format} {lang}: {err}");
            golden(&format!("report-2026-11.{lang}.{ext}"), &out);
        }
    }
    let (code, out, err) = run(&[
        "evaluate", "--config", c, "--year", "2026", "--format", "md",
    ]);
    assert_eq!(code, 0, "{err}");
    golden("evaluate-2026.zh.md", &out);
    // The whole JSON of an evaluation, as docs/evaluation.md shows it.
    let (code, out, err) = run(&[
        "evaluate", "--config", c, "--year", "2026", "--format", "json", "--lang", "en",
    ]);
    assert_eq!(code, 0, "{err}");
    golden("evaluate-2026.en.json", &out);
    let (code, out, _) = run(&[
        "report",
        "--config",
        c,
        "--period",
        "2026-11",
        "--format",
        "csv",
        "--table",
        "evaluation",
    ]);
    assert_eq!(code, 0);
    golden("report-2026-11.evaluation.zh.csv", &out);
}

#[test]
fn the_figures_are_those_of_the_sample_and_the_statistics() {
    let p = park();
    let c = p.config.to_str().unwrap();
    let (code, out, err) = run(&[
        "report", "--config", c, "--period", "2026-11", "--format", "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let firms = &v["tables"][0]["rows"];
    let hengda = &firms[0];
    // The replay's own summary of the sample: 77,934.592 kWh consumed, 15.8743 tce.
    assert_eq!(hengda["firm_id"], "hengda-motors");
    assert!((hengda["electricity_consumed_kwh"].as_f64().unwrap() - 77_934.592).abs() < 1e-6);
    assert!((hengda["energy_equivalent_tce"].as_f64().unwrap() - 15.8743).abs() < 5e-5);
    // Tax per mu from the import: 1,800 万元 / 120 mu = 15 万元/亩.
    assert_eq!(hengda["tax_per_mu_10k_cny"].as_f64(), Some(15.0));
    // The park row adds the firms.
    let park = firms.as_array().unwrap().last().unwrap();
    let sum: f64 = firms.as_array().unwrap()[..3]
        .iter()
        .map(|f| f["co2_t"].as_f64().unwrap())
        .sum();
    assert!((park["co2_t"].as_f64().unwrap() - sum).abs() < 1e-9);
    // Output too, though two firms' output is their annual statistic prorated to 30 days (not
    // in the park's metered sums): 330.82 + 600 x 30/365 + 4,000 x 30/365 万元.
    let output: f64 = firms.as_array().unwrap()[..3]
        .iter()
        .map(|f| f["output_10k_cny"].as_f64().unwrap())
        .sum();
    assert!(
        (output - (330.82 + 4_600.0 * 30.0 / 365.0)).abs() < 1e-6,
        "{output}"
    );
    assert!((park["output_10k_cny"].as_f64().unwrap() - output).abs() < 1e-9);
    // Tax per mu over the land: (1,800 + 45 + 520) 万元 / 153.00004 mu.
    assert!((park["tax_per_mu_10k_cny"].as_f64().unwrap() - 2_365.0 / 153.00004).abs() < 1e-9);
    // No November 2025 and no October 2026 in the store: no year-on-year, no month-on-month.
    assert!(hengda["energy_yoy_pct"].is_null() && hengda["energy_mom_pct"].is_null());
    // The evaluation uses the import and says so.
    let ev = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "evaluation")
        .unwrap();
    assert_eq!(
        ev["rows"][0]["statistics_source"],
        "config/statistics.example.csv:2 (#1, 2026-12-01 00:00 +08:00)"
    );
    // Rank is an integer; every indicator's value, benchmark, weight and score is there by its
    // stable id, and the weighted scores add up to the firm's score.
    assert!(ev["rows"][0]["rank"].is_i64(), "{}", ev["rows"][0]);
    let scores = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "indicator_scores")
        .unwrap();
    let hengda_scores: Vec<&serde_json::Value> = scores["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["firm_id"] == "hengda-motors")
        .collect();
    let tax = hengda_scores
        .iter()
        .find(|r| r["indicator"] == "tax_per_mu_10k_cny")
        .unwrap();
    assert_eq!(tax["value"].as_f64(), Some(15.0));
    assert!(tax["benchmark"].as_f64().is_some() && tax["weight"].as_f64().is_some());
    let sum: f64 = hengda_scores
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .sum();
    assert!(
        (sum - ev["rows"][0]["score"].as_f64().unwrap()).abs() < 1e-6,
        "{sum} vs {}",
        ev["rows"][0]["score"]
    );
    // A revised import wins, and is named.
    let revised = p.config.with_file_name("revised.csv");
    std::fs::write(&revised, "firm,year,tax_cny,revenue_cny,value_added_cny,employees,rd_spend_cny,pollutant_t\nhengda-motors,2026,24000000,360000000,90000000,420,14000000,35.5\n").unwrap();
    let (code, _, err) = run(&["stats", "import", "--config", c, revised.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = run(&[
        "report", "--config", c, "--period", "2026-11", "--format", "json", "--lang", "en",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    // 2,400 万元 / 120 mu = 20 万元/亩.
    assert_eq!(
        v["tables"][0]["rows"][0]["tax_per_mu_10k_cny"].as_f64(),
        Some(20.0)
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("revised.csv:2 (#2,"), "the revision is named");
}

#[test]
fn a_bad_statistics_file_names_each_problem_and_imports_nothing() {
    let p = park();
    let c = p.config.to_str().unwrap();
    let bad = p.config.with_file_name("bad.csv");
    std::fs::write(
        &bad,
        "企业名称,年度,税收(万元),人数\n恒达电机有限公司,2026,abc,\n无名公司,2026,1,\nqinghe-hydrogen,20x6,1,\n",
    )
    .unwrap();
    let (code, _, err) = run(&["stats", "import", "--config", c, bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    let shown = bad.display().to_string();
    assert!(
        err.contains(&format!("{shown}:1: unknown column `人数`")),
        "{err}"
    );
    let fixed = p.config.with_file_name("bad2.csv");
    std::fs::write(
        &fixed,
        "企业名称,年度,税收(万元)\n恒达电机有限公司,2026,abc\n无名公司,2026,1\nqinghe-hydrogen,20x6,1\nhengda-motors,2026,5\nlvneng-charging,2026,5,7\n",
    )
    .unwrap();
    let (code, _, err) = run(&["stats", "import", "--config", c, fixed.to_str().unwrap()]);
    assert_eq!(code, 2);
    let f = fixed.display().to_string();
    for needle in [
        format!("{f}:2: tax_cny `abc` is not a number"),
        format!("{f}:3: firm `无名公司` is not in the configuration"),
        format!("{f}:4: year `20x6` is not a year"),
        // A cell beyond the header's columns is refused, not dropped.
        format!("{f}:6: 4 cells, but the header names 3 columns"),
        "nothing imported (4 problem(s)".to_string(),
    ] {
        assert!(err.contains(&needle), "{needle} not in:\n{err}");
    }
    // A period that is not one is a command-line error (exit 2), named.
    let (code, _, err) = run(&["report", "--config", c, "--period", "2026-13"]);
    assert_eq!(code, 2);
    assert!(err.contains("`2026-13` is not a period"), "{err}");
    // Nothing of it was kept: the report still uses import #1 (line 5 alone was valid).
    assert_eq!(first_firms_tax_per_mu(c), Some(15.0));
}

/// A file without the tax column (the defect seen: the whole park went unrated) keeps the tax
/// in force, says so, and `--dry-run` shows what an import would change without storing it.
#[test]
fn an_import_without_a_column_keeps_its_values_and_a_dry_run_changes_nothing() {
    let p = park();
    let c = p.config.to_str().unwrap();
    let partial = p.config.with_file_name("partial.csv");
    std::fs::write(
        &partial,
        "企业名称,年度,营业收入(万元)\n恒达电机有限公司,2026,40000\n",
    )
    .unwrap();
    let (code, out, err) = run(&[
        "stats",
        "import",
        "--config",
        c,
        "--dry-run",
        partial.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8(out).unwrap();
    for line in [
        "dry run, nothing imported: 1 rows (1 firms; years 2026)",
        "changed:\n  hengda-motors 2026: revenue_cny 360,000,000 -> 400,000,000",
        "kept:\n  hengda-motors 2026: tax_cny not in this file: kept 18,000,000 from import #1",
    ] {
        assert!(out.contains(line), "{line}\nnot in:\n{out}");
    }
    let (code, out, err) = run(&["stats", "import", "--config", c, partial.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("import #2 (sha256 "), "{out}");
    // The history lists both imports, with the whole digest of the first.
    let (code, history, err) = run(&["stats", "history", "--config", c]);
    assert_eq!(code, 0, "{err}");
    let history = String::from_utf8(history).unwrap();
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(
        lines[0].starts_with("#1 ")
            && lines[0].contains("config/statistics.example.csv (3 rows) sha256 e57294e0268d6e5779970effe70cf6adb7c10475acc329636817892153277a8d by "),
        "{history}"
    );
    assert!(
        lines[1].starts_with("#2 ") && lines[1].contains("partial.csv (1 rows)"),
        "{history}"
    );
    assert!(
        out.contains("tax_cny not in this file: kept 18,000,000 from import #1"),
        "{out}"
    );
    // The tax is still in force (1,800 万元 / 120 mu = 15 万元/亩), from import #2 now.
    assert_eq!(first_firms_tax_per_mu(c), Some(15.0));
}

/// A CSV saved by Excel on Chinese Windows is GBK: it imports as the UTF-8 one would (tax per mu
/// 2,400 万元 / 120 mu = 20 万元/亩); bytes that are neither UTF-8 nor GBK are refused with what to
/// do, and nothing is imported.
#[test]
fn a_gbk_statistics_file_imports_and_an_unreadable_one_says_what_to_do() {
    let p = park();
    let c = p.config.to_str().unwrap();
    let gbk = p.config.with_file_name("gbk.csv");
    let (bytes, _, unmappable) =
        encoding_rs::GBK.encode("企业名称,年度,税收(万元)\n恒达电机有限公司,2026,2400\n");
    assert!(!unmappable);
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "not GBK-specific bytes"
    );
    std::fs::write(&gbk, &bytes).unwrap();
    let (code, _, err) = run(&["stats", "import", "--config", c, gbk.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(first_firms_tax_per_mu(c), Some(20.0));
    let bad = p.config.with_file_name("binary.csv");
    std::fs::write(&bad, b"firm,year\n\xFF\xFF,2026\n").unwrap();
    let (code, _, err) = run(&["stats", "import", "--config", c, bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{}: the file is neither UTF-8 nor GBK/GB18030: save it again as \"CSV UTF-8\"",
            bad.display()
        )),
        "{err}"
    );
}

/// Workbooks saved by a spreadsheet program (LibreOffice Calc 7.4 converted them from CSV; they
/// are in tests/data/statistics): one without the tax column, one with a firm's tax changed.
/// The first keeps every firm's tax from import #1 and says so per firm, so the whole park stays
/// rated; the second's dry run shows the change (1,800 -> 2,400 万元) and stores nothing; its import
/// makes the first firm's tax per mu 2,400 万元 / 120 mu = 20 万元/亩.
#[test]
fn spreadsheet_workbooks_import_without_losing_a_column() {
    let p = park();
    let c = p.config.to_str().unwrap();
    let without_tax = "tests/data/statistics/statistics-without-tax.xlsx";
    let (code, out, err) = run(&["stats", "import", "--config", c, without_tax]);
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8(out).unwrap();
    for line in [
        "changed:\n  hengda-motors 2026: revenue_cny 360,000,000 -> 400,000,000\n",
        "  hengda-motors 2026: tax_cny not in this file: kept 18,000,000 from import #1\n",
        "  lvneng-charging 2026: tax_cny not in this file: kept 450,000 from import #1\n",
        "  qinghe-hydrogen 2026: tax_cny not in this file: kept 5,200,000 from import #1\n",
    ] {
        assert!(out.contains(line), "{line}\nnot in:\n{out}");
    }
    assert_eq!(first_firms_tax_per_mu(c), Some(15.0));
    // Every firm is still rated.
    let (code, json, err) = run(&[
        "evaluate", "--config", c, "--year", "2026", "--format", "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let rows = v["tables"][0]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r["unrated_ids"].is_null() && r["rank"].is_u64()),
        "{rows:?}"
    );

    let revised = "tests/data/statistics/statistics-revised.xlsx";
    let (code, out, err) = run(&["stats", "import", "--config", c, "--dry-run", revised]);
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with("dry run, nothing imported: 3 rows"),
        "{out}"
    );
    assert!(
        out.contains("  hengda-motors 2026: tax_cny 18,000,000 -> 24,000,000\n"),
        "{out}"
    );
    assert_eq!(first_firms_tax_per_mu(c), Some(15.0));
    let (code, _, err) = run(&["stats", "import", "--config", c, revised]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(first_firms_tax_per_mu(c), Some(20.0));
}

#[test]
fn the_workbook_reads_back_with_its_sheets_units_and_full_precision() {
    use calamine::{open_workbook, Data, Reader, Xlsx};
    let p = park();
    let c = p.config.to_str().unwrap();
    let xlsx = p.config.with_file_name("report.xlsx");
    let (code, _, err) = run(&[
        "report",
        "--config",
        c,
        "--period",
        "2026-11",
        "--format",
        "xlsx",
        "--output",
        xlsx.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, json, _) = run(&[
        "report", "--config", c, "--period", "2026-11", "--format", "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let mut wb: Xlsx<_> = open_workbook(&xlsx).unwrap();
    let names = wb.sheet_names();
    assert_eq!(
        names.len(),
        v["tables"].as_array().unwrap().len(),
        "{names:?}"
    );
    assert_eq!(names[0], "企业能耗、碳排放与产出");
    let sheet = wb.worksheet_range(&names[0]).unwrap();
    let header: Vec<String> = sheet
        .rows()
        .next()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let col = header
        .iter()
        .position(|h| h == "综合能耗(吨标准煤,当量值)")
        .expect("units in the header");
    // The cell holds the full-precision figure (the format only rounds its display).
    let cell = sheet.get((1, col)).unwrap();
    let want = v["tables"][0]["rows"][0]["energy_equivalent_tce"]
        .as_f64()
        .unwrap();
    assert_eq!(cell, &Data::Float(want));
    assert_eq!(sheet.get((4, 1)).unwrap(), &Data::String("园区合计".into()));
}

/// The HTML report in headless Chromium: it loads from the file alone (nothing fetched), logs no
/// console error, shows the firms, and its screenshot is kept.
#[test]
fn the_html_report_renders_in_chromium_without_errors() {
    let p = park();
    let c = p.config.to_str().unwrap();
    let html = p.config.with_file_name("report.html");
    let (code, _, err) = run(&[
        "report",
        "--config",
        c,
        "--period",
        "2026-11",
        "--format",
        "html",
        "--output",
        html.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("report-2026-11.zh.png");
    let url = format!("file://{}", html.display());
    common::screenshot(&url, &shot, 1400, 2400);
    let (chromium, flags) = common::chromium();
    let profile = tempfile::tempdir().unwrap();
    let dom = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    common::assert_no_page_errors(&url, &String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout);
    for firm in [
        "恒达电机有限公司",
        "绿能充电科技",
        "清和氢能",
        "园区合计",
        "<svg",
    ] {
        assert!(dom.contains(firm), "{firm} not on the page");
    }
    eprintln!("screenshot: {}", shot.display());
}

#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/victoria.rs"]
mod victoria;

/// The running daemon exports the year-to-date evaluation as metrics (labels from the
/// configuration only) and writes it to InfluxDB (VictoriaMetrics here).
#[test]
fn the_daemon_exports_the_evaluation_as_metrics_and_to_influxdb() {
    let p = park();
    let vm = victoria::Victoria::start();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut text = std::fs::read_to_string(&p.config).unwrap();
    text = text.replace(
        "# [metrics]\n# listen = \"127.0.0.1:9108\"",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\""),
    );
    text.push_str(&format!(
        "\n[influx]\nurl = \"{}\"\norg = \"o\"\nbucket = \"b\"\n[influx.outbox]\ndir = \"{}\"\n",
        vm.url(),
        p.config.with_file_name("outbox").display()
    ));
    std::fs::write(&p.config, &text).unwrap();
    assert!(
        text.contains(&format!("listen = \"127.0.0.1:{port}\"")),
        "the example's [metrics] listen line moved"
    );
    let child = Command::new(env!("CARGO_BIN_EXE_ecogate"))
        .args(["run", "--config", p.config.to_str().unwrap()])
        .env("ECOGATE_NOW", NOW)
        .spawn()
        .unwrap();
    let _guard = common::Kill(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut body = String::new();
    while std::time::Instant::now() < deadline {
        body = victoria::http_get(port, "/metrics").unwrap_or_default();
        if body.contains("ecogate_firm_evaluation_class{") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // As in the golden evaluation: hengda first (B of 3 firms: rank 1 of 3 is past A's 25 %),
    // qinghe a 两高 firm short of its tax commitment, lvneng D.
    for line in [
        "ecogate_firm_evaluation_class{class=\"B\",firm=\"hengda-motors\"} 1",
        "ecogate_firm_evaluation_class{class=\"A\",firm=\"hengda-motors\"} 0",
        "ecogate_firm_evaluation_rank{firm=\"hengda-motors\"} 1",
        "ecogate_firm_evaluation_class{class=\"D\",firm=\"lvneng-charging\"} 1",
        "ecogate_firm_flag{firm=\"qinghe-hydrogen\",flag=\"two_high\"} 1",
        "ecogate_firm_flag{firm=\"qinghe-hydrogen\",flag=\"commitment_shortfall\"} 1",
        "ecogate_firm_flag{firm=\"hengda-motors\",flag=\"two_high\"} 0",
    ] {
        assert!(body.contains(line), "{line} not in /metrics");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let series = vm.export("{__name__=\"ecogate_evaluation_rank\",firm=\"hengda-motors\"}");
        if let Some(s) = series.first() {
            assert_eq!(s.samples.last().unwrap().1, 1.0);
            assert_eq!(s.labels.get("year").map(String::as_str), Some("2026"));
            assert_eq!(
                s.labels.get("provisional").map(String::as_str),
                Some("true")
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no evaluation in VictoriaMetrics"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
