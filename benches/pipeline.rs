//! Throughput of the accounting pipeline into the embedded store (prints figures; not a test).
//!
//! 1,000 meters x 1 counter each, one reading per meter per simulated second, committed in
//! batches of 1,000 / 10,000 readings. Reports the median of 5 runs for: the pure accounting
//! alone (`Accountant::process`, the baseline) and accounting + SQLite commit, and their ratio.
//! Run: `cargo bench --bench pipeline`.

use ecogate::accounting::Accountant;
use ecogate::config::Config;
use ecogate::metrics::Metrics;
use ecogate::pipeline::Pipeline;
use ecogate::reading::{Quality, Reading};
use ecogate::sinks::store::Store;
use ecogate::units::Unit;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const METERS: usize = 1_000;
const SECONDS: usize = 30;

fn config() -> Arc<Config> {
    let mut text = String::from(
        "[park]\nname = \"Bench\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 10\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"factory\"\n",
    );
    for m in 0..METERS {
        text.push_str(&format!(
            "[[meters]]\nid = \"m{m}\"\nsite = \"s\"\nchannels = [{{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 100000 }}]\n"
        ));
    }
    ecogate::app::AppConfig::parse(Path::new("bench.toml"), &text)
        .expect("valid bench config")
        .core
}

fn readings() -> Vec<Reading> {
    let kwh = Unit::parse("kWh").unwrap();
    let t0 = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let mut out = Vec::with_capacity(METERS * SECONDS);
    for s in 0..SECONDS {
        for m in 0..METERS {
            out.push(Reading {
                meter: format!("m{m}"),
                channel: "import".into(),
                amount: 1_000.0 + s as f64 * 0.5 + m as f64,
                unit: kwh,
                ts_ms: t0 + s as i64 * 1000,
                quality: Quality::Good,
                stamped_on_arrival: false,
            });
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let cfg = config();
    let all = readings();
    for batch in [1_000usize, 10_000] {
        let mut pure = Vec::new();
        let mut stored = Vec::new();
        for _ in 0..5 {
            let mut acct = Accountant::new(cfg.clone());
            let start = Instant::now();
            for chunk in all.chunks(batch) {
                let b = acct.process(chunk, i64::MAX / 2);
                acct.apply(&b);
            }
            pure.push(all.len() as f64 / start.elapsed().as_secs_f64());

            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("bench.db")).unwrap();
            let mut p = Pipeline::open(cfg.clone(), store, Arc::new(Metrics::new())).unwrap();
            let start = Instant::now();
            for chunk in all.chunks(batch) {
                p.ingest(chunk).unwrap();
            }
            stored.push(all.len() as f64 / start.elapsed().as_secs_f64());
        }
        let (pure, stored) = (median(pure), median(stored));
        println!(
            "batch {batch:>6}: accounting alone {pure:>10.0} readings/s; accounting + SQLite commit {stored:>9.0} readings/s ({:.1} % of accounting alone); {} readings, median of 5",
            stored / pure * 100.0,
            all.len()
        );
    }
}
