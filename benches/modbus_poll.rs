//! Modbus polling at scale (prints figures; not a test). Run: `cargo bench --bench modbus_poll`.
//!
//! 1,000 simulated Modbus TCP devices (tokio-modbus servers in this process, one loopback port
//! each) with 40 registers (20 float32 values: 2 energy counters, 18 gauges) polled every second
//! by an `ecogate run` child process for 60 s, everything committed to its SQLite store. Prints
//! the requests/s the devices saw, readings/s, how many polls came on time, and the child's CPU
//! (% of one core) and peak RSS. Set ECOGATE_BENCH_SECONDS / ECOGATE_BENCH_DEVICES to change.

#[path = "../tests/common/modbus_sim.rs"]
mod modbus_sim;

use ecogate::sources::modbus::decode::{DataType, WordOrder};
use modbus_sim::Bank;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let devices = env_or("ECOGATE_BENCH_DEVICES", 1000) as usize;
    let seconds = env_or("ECOGATE_BENCH_SECONDS", 60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let mut addrs = Vec::new();
    let mut banks = Vec::new();
    rt.block_on(async {
        for _ in 0..devices {
            let bank = Bank::default();
            for i in 0..20u16 {
                bank.set(
                    1,
                    0,
                    2 * i,
                    1000.0 + i as f64,
                    DataType::F32,
                    WordOrder::Abcd,
                );
            }
            let (addr, _task) =
                modbus_sim::start_tcp(bank.clone(), "127.0.0.1:0".parse().unwrap()).await;
            addrs.push(addr);
            banks.push(bank);
        }
    });

    let mut cfg = String::from(
        "[park]\nname = \"Bench\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 10\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"factory\"\n",
    );
    let _ = writeln!(
        cfg,
        "[store]\npath = \"{}\"\nmax_batch_readings = {}",
        dir.path().join("bench.db").display(),
        env_or("ECOGATE_BENCH_BATCH", 10_000)
    );
    for (d, addr) in addrs.iter().enumerate() {
        let mut channels = vec![
            "{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 100000 }".to_string(),
            "{ id = \"export\", carrier = \"grid_export\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 100000 }".to_string(),
        ];
        for g in 2..20 {
            channels.push(format!(
                "{{ id = \"g{g}\", kind = \"gauge\", unit = \"kW\" }}"
            ));
        }
        let _ = writeln!(
            cfg,
            "[[meters]]\nid = \"m{d}\"\nsite = \"s\"\nchannels = [{}]",
            channels.join(", ")
        );
        let _ = writeln!(
            cfg,
            "[[modbus.devices]]\nmeter = \"m{d}\"\ntcp = \"{addr}\"\nunit_id = 1\npoll_interval_ms = 1000\ntimeout_ms = 800"
        );
        let names = ["import", "export"]
            .into_iter()
            .map(String::from)
            .chain((2..20).map(|g| format!("g{g}")));
        for (i, ch) in names.enumerate() {
            let _ = writeln!(
                cfg,
                "[[modbus.devices.registers]]\nchannel = \"{ch}\"\nfunction = \"holding\"\naddress = {}\naddress_base = 0\ntype = \"f32\"\nunit = \"{}\"",
                2 * i,
                if i < 2 { "kWh" } else { "kW" }
            );
        }
    }
    let cfg_path = dir.path().join("bench.toml");
    std::fs::write(&cfg_path, cfg).unwrap();

    // ECOGATE_BENCH_WRAPPER (e.g. `heaptrack`) runs ecogate under a profiler; figures are then
    // the wrapper's.
    let wrapper = std::env::var("ECOGATE_BENCH_WRAPPER").ok();
    let mut command = match &wrapper {
        Some(w) => {
            let mut c = std::process::Command::new(w);
            c.arg(env!("CARGO_BIN_EXE_ecogate"));
            c
        }
        None => std::process::Command::new(env!("CARGO_BIN_EXE_ecogate")),
    };
    let mut child = command
        .args(["run", "--config", cfg_path.to_str().unwrap()])
        .env("ECOGATE_LOG", "warn")
        .env(
            "MALLOC_ARENA_MAX",
            std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "8".into()),
        )
        .spawn()
        .unwrap();
    let pid = child.id();
    let tick_hz = 100.0; // USER_HZ on Linux
                         // Warm-up: connections open, first polls align to the second.
    std::thread::sleep(Duration::from_secs(5));
    let startup_peak = status_kb(pid, "VmHWM:");
    // Reset the peak (Linux clear_refs 5) so that the polling peak is measured apart from the
    // start-up one (configuration parsing).
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let (req_before, t_before, cpu_before) = (
        banks.iter().map(|b| b.requests(1)).sum::<u64>(),
        Instant::now(),
        cpu_ticks(pid),
    );
    let mut samples: Vec<Vec<u64>> = Vec::new();
    for _ in 0..seconds {
        std::thread::sleep(Duration::from_secs(1));
        samples.push(banks.iter().map(|b| b.requests(1)).collect());
    }
    let elapsed = t_before.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - cpu_before) as f64 / tick_hz / elapsed * 100.0;
    let hwm = status_kb(pid, "VmHWM:");
    let rss_now = status_kb(pid, "VmRSS:");
    let requests = banks.iter().map(|b| b.requests(1)).sum::<u64>() - req_before;
    // A device is on time in a second if it was asked exactly once in it.
    let mut on_time = 0u64;
    let mut total = 0u64;
    for w in samples.windows(2) {
        for (before, after) in w[0].iter().zip(&w[1]) {
            total += 1;
            if after - before == 1 {
                on_time += 1;
            }
        }
    }
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("bench.db")).unwrap();
    let stored: i64 = conn
        .query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0))
        .unwrap();
    println!(
        "modbus_poll: {devices} devices x 40 registers every 1 s for {elapsed:.1} s (after 5 s warm-up); ecogate exit {status}"
    );
    println!(
        "  requests/s {:.0} (devices saw), readings/s {:.0} (20 per request), on-time device-seconds {on_time}/{total} ({:.2} %)",
        requests as f64 / elapsed,
        requests as f64 * 20.0 / elapsed,
        on_time as f64 / total as f64 * 100.0
    );
    println!(
        "  ecogate CPU {cpu:.1} % of one core; peak RSS while polling {:.1} MB, at the end {:.1} MB, during start-up (configuration parsing) {:.1} MB; readings stored {stored}",
        hwm as f64 / 1024.0,
        rss_now as f64 / 1024.0,
        startup_peak as f64 / 1024.0
    );
}
