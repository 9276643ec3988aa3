//! The daemon's shape: the pipeline thread batches envelopes and acknowledges them only after
//! commit; `ecogate run` starts, holds and stops cleanly on SIGTERM.

mod common;

use common::*;
use ecogate::accounting::ledger::Entity;
use ecogate::accounting::metric::Metric;
use ecogate::accounting::window::WindowKind;
use ecogate::pipeline::{self, Envelope};
use ecogate::sinks::store::Store;
use std::time::{Duration, Instant};

#[test]
fn envelopes_are_acknowledged_after_they_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let cfg = config(FACTORY);
    let handle = pipeline::spawn(pipeline(&cfg, &path), cfg.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut acks = Vec::new();
        // 100 envelopes of one reading each: +1 kWh every 15 minutes, ending now (recent, so
        // the pipeline's retention pass keeps them).
        let start_ms = chrono::Utc::now().timestamp_millis() - 100 * 900_000;
        for i in 0..100 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let r = reading(
                "grid",
                "import",
                1_000.0 + i as f64,
                "kWh",
                "2024-01-01T00:00:00Z",
            );
            let r = ecogate::reading::Reading {
                ts_ms: start_ms + i * 900_000,
                ..r
            };
            handle
                .tx
                .send(Envelope {
                    readings: vec![r],
                    ack: Some(tx.into()),
                })
                .await
                .unwrap();
            acks.push(rx);
        }
        for ack in acks {
            tokio::time::timeout(Duration::from_secs(10), ack)
                .await
                .unwrap()
                .unwrap();
        }
    });
    // Every acknowledged reading is in the store, read through a separate connection:
    // 99 deltas of 1 kWh after the baseline.
    let store = Store::open(&path).unwrap();
    let acct = ecogate::accounting::Accountant::new(cfg.clone());
    let sums = store
        .sums(&acct, WindowKind::Year, Entity::Meter(0), 0, i64::MAX)
        .unwrap();
    assert_eq!(sums.get(Metric::GridImportKwh), 99.0);
    let count = store.reading_count().unwrap();
    assert_eq!(count, 100);
    drop(handle.tx);
    handle.join.join().unwrap();
}

#[test]
fn run_starts_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("run.db");
    let text = std::fs::read_to_string("config/ecogate.example.toml")
        .unwrap()
        .replace(
            "path = \"data/ecogate.db\"",
            &format!("path = \"{}\"", store.display()),
        );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!("{text}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let cfg_path = dir.path().join("ecogate.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ecogate"))
        .args(["run", "--config", cfg_path.to_str().unwrap()])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !store.exists() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(store.exists(), "the store was not created");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "ecogate run exited early"
    );
    // The daemon serves /metrics on the configured loopback port.
    let mut conn = (0..100)
        .find_map(|_| {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map_err(|_| std::thread::sleep(Duration::from_millis(50)))
                .ok()
        })
        .expect("/metrics is served");
    use std::io::{Read, Write};
    conn.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("ecogate_firm_land_mu{firm=\"hengda-motors\"} 120"),
        "{body}"
    );
    // Year-to-date CO2 comes from the store at scrape time (an empty store: 0).
    assert!(
        body.contains("ecogate_firm_co2_year_to_date_kg{firm=\"hengda-motors\"} 0"),
        "{body}"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "ecogate run did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
