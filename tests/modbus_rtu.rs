//! Modbus RTU on a serial line: ecogate and tokio-modbus's RTU server talk over pseudo-terminal
//! pairs made by socat, with a relay in between that adds noise bytes and corrupts a CRC, the
//! faults an RS-485 line produces that a real server will not on demand.

mod common;
use common::pty::PtyPair;
#[path = "common/modbus_sim.rs"]
mod common_sim;

use common_sim::{Bank, Sim};
use ecogate::app::AppConfig as Config;
use ecogate::metrics::Metrics;
use ecogate::pipeline::Envelope;
use ecogate::sources::modbus::decode::{DataType, WordOrder};
use ecogate::sources::SourceContext;
use std::io::{Read, Write};
use std::path::Path;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

fn open(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// Copies bytes between two ptys; `fault(n, chunk)` may change the n-th chunk going back to
/// the client.
fn relay(client_side: &Path, server_side: &Path, faults: Arc<AtomicUsize>) {
    let mut c_read = open(client_side);
    let mut c_write = c_read.try_clone().unwrap();
    let mut s_read = open(server_side);
    let mut s_write = s_read.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok(n) = c_read.read(&mut buf) {
            if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let mut chunk = 0usize;
        while let Ok(n) = s_read.read(&mut buf) {
            if n == 0 {
                break;
            }
            chunk += 1;
            let mut out = buf[..n].to_vec();
            if chunk % 7 == 3 {
                // Line noise before a response.
                let mut noisy = vec![0x00, 0xFF, 0x55];
                noisy.extend_from_slice(&out);
                out = noisy;
                faults.fetch_add(1, Ordering::Relaxed);
            } else if chunk % 7 == 5 {
                // A flipped bit in the CRC.
                let last = out.len() - 1;
                out[last] ^= 0x10;
                faults.fetch_add(1, Ordering::Relaxed);
            }
            if c_write.write_all(&out).is_err() {
                break;
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_over_a_serial_line_with_noise_and_crc_errors() {
    let dir = tempfile::tempdir().unwrap();
    let client = PtyPair::new(dir.path(), "client");
    let server = PtyPair::new(dir.path(), "server");
    let faults = Arc::new(AtomicUsize::new(0));
    relay(&client.b, &server.a, faults.clone());

    let bank = Bank::default();
    bank.set(7, 1, 0x0048, 4321.5, DataType::F32, WordOrder::Abcd);
    let rtu_server = tokio_modbus::server::rtu::Server::new_from_path(&server.b, 9600).unwrap();
    let server_bank = bank.clone();
    let _server_task = tokio::spawn(async move {
        let _ = rtu_server.serve_forever(Sim(server_bank)).await;
    });

    let text = format!(
        "[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"factory\"\n\
         [[meters]]\nid = \"sdm\"\nsite = \"s\"\nchannels = [{{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 100 }}]\n\
         [[modbus.buses]]\nid = \"line1\"\ntransport = \"rtu\"\ndevice = \"{}\"\nbaud = 9600\n\
         [[modbus.devices]]\nmeter = \"sdm\"\nbus = \"line1\"\nunit_id = 7\nprofile = \"eastron-sdm630\"\nchannels = {{ import = \"import_kwh\" }}\npoll_interval_ms = 200\ntimeout_ms = 300\nretries = 2\n",
        client.a.display()
    );
    let cfg = Config::parse(Path::new("rtu.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let (tx, mut rx) = mpsc::channel::<Envelope>(10_000);
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let source = ecogate::sources::modbus::spawn(
        cfg.source::<ecogate::sources::modbus::config::ModbusConfig>()
            .unwrap(),
        SourceContext {
            output: tx,
            shutdown: stop_rx,
            clock: ecogate::util::Clock::real(),
        },
        metrics.clone(),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop_tx.send(true).unwrap();
    let mut values = Vec::new();
    while let Ok(Some(env)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        values.extend(env.readings.into_iter().map(|r| r.amount));
    }
    let failed = metrics
        .component(ecogate::sources::modbus::metrics::ModbusMetrics::register)
        .requests
        .with_label_values(&["timeout"])
        .get()
        + metrics
            .component(ecogate::sources::modbus::metrics::ModbusMetrics::register)
            .requests
            .with_label_values(&["transport_error"])
            .get();
    eprintln!(
        "rtu: {} faults injected, {failed} requests failed, {} readings",
        faults.load(Ordering::Relaxed),
        values.len()
    );
    // Faults were injected and seen, yet every value that came through is the true one, and
    // polling went on: 5 s at 200 ms is 25 polls; at least half must succeed.
    assert!(
        faults.load(Ordering::Relaxed) >= 2,
        "faults injected: {}",
        faults.load(Ordering::Relaxed)
    );
    assert!(failed >= 1, "no fault was noticed");
    assert!(values.len() >= 12, "{} readings", values.len());
    assert!(values.iter().all(|v| *v == 4321.5), "{values:?}");
    assert!(
        source.health.devices["sdm"]
            .polls_ok
            .load(Ordering::Relaxed)
            >= 12
    );
}
