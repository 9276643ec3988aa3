//! `/metrics`: the accounting figures per firm, real scrapes, and promtool's verdict.

mod common;

use common::*;
use ecogate::metrics::Metrics;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

fn scrape(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no series {series}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firm_figures_are_scraped_and_promtool_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(FACTORY);
    let metrics = Arc::new(Metrics::new());
    let store = ecogate::sinks::store::Store::open(&store_path(&dir)).unwrap();
    let mut p = ecogate::pipeline::Pipeline::open(cfg.clone(), store, metrics.clone()).unwrap();
    p.ingest(&[
        reading("grid", "import", 40_000.0, "kWh", "2022-05-31T16:00:00Z"),
        reading("gas", "vol", 500.0, "Nm3", "2022-05-31T16:00:00Z"),
        reading("nope", "x", 1.0, "kWh", "2022-05-31T16:00:00Z"),
    ])
    .unwrap();
    p.ingest(&[
        reading("grid", "import", 52_000.0, "kWh", "2022-06-01T15:59:00Z"),
        reading("gas", "vol", 1_500.0, "Nm3", "2022-06-01T15:59:00Z"),
    ])
    .unwrap();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (addr, _task) = ecogate::metrics::http::serve(
        "127.0.0.1:0".parse().unwrap(),
        ecogate::metrics::http::Endpoints {
            registries: vec![metrics.registry.clone()],
            refresh: vec![],
            checks: vec![],
            pages: None,
            token: None,
        },
        stop_rx,
    )
    .await
    .unwrap();
    let (status, body) = tokio::task::spawn_blocking(move || scrape(addr, "/metrics"))
        .await
        .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    // 12,000 kWh x 0.5366 = 6,439.2 kg; 1,000 Nm3 x 2.162 = 2,162 kg.
    assert_eq!(
        value(
            &body,
            r#"ecogate_firm_co2_kg_total{firm="f1",scope="scope2_location"}"#
        ),
        6439.2
    );
    assert_eq!(
        value(
            &body,
            r#"ecogate_firm_co2_kg_total{firm="f1",scope="scope1"}"#
        ),
        2162.0
    );
    assert_eq!(
        value(
            &body,
            r#"ecogate_firm_electricity_kwh_total{firm="f1",flow="grid_import"}"#
        ),
        12_000.0
    );
    assert_eq!(value(&body, r#"ecogate_firm_land_mu{firm="f1"}"#), 50.0);
    // 500 -> 1,500 Nm3 of gas.
    assert_eq!(
        value(&body, r#"ecogate_firm_natural_gas_nm3_total{firm="f1"}"#),
        1000.0
    );
    assert_eq!(
        value(
            &body,
            r#"ecogate_readings_rejected_total{reason="unknown_meter"}"#
        ),
        1.0
    );
    assert_eq!(value(&body, "ecogate_readings_accepted_total"), 4.0);
    // The unknown meter made no series of its own.
    assert!(!body.contains("nope"));

    // promtool (Debian package prometheus) checks names, units and help texts.
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be installed (scripts/test.sh installs prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics:\n{said}");

    let (status, _) = tokio::task::spawn_blocking(move || scrape(addr, "/other"))
        .await
        .unwrap();
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}
