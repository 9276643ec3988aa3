//! Helpers shared by the integration tests: a configuration from text, a pipeline on a
//! temporary store, readings from short literals.

#![allow(dead_code)]

pub mod park;
pub mod pty;

use ecogate::config::Config;
use ecogate::metrics::Metrics;
use ecogate::pipeline::Pipeline;
use ecogate::reading::{Quality, Reading};
use ecogate::sinks::store::Store;
use ecogate::units::Unit;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn config(text: &str) -> Arc<Config> {
    ecogate::app::AppConfig::parse(Path::new("test.toml"), text)
        .unwrap_or_else(|e| panic!("config should be valid:\n{e}"))
        .core
}

pub fn store_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("store.db")
}

pub fn pipeline(config: &Arc<Config>, path: &Path) -> Pipeline {
    Pipeline::open(
        config.clone(),
        Store::open(path).unwrap(),
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

/// Epoch milliseconds of an RFC 3339 time.
pub fn ts(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

pub fn reading(meter: &str, channel: &str, amount: f64, unit: &str, at: &str) -> Reading {
    Reading {
        meter: meter.into(),
        channel: channel.into(),
        amount,
        unit: Unit::parse(unit).unwrap(),
        ts_ms: ts(at),
        quality: Quality::Good,
        stamped_on_arrival: false,
    }
}

/// A park with one firm (50 mu) and one factory site, metering grid import/export, PV, gas and
/// a production line; national 2022 grid factors.
pub const FACTORY: &str = r#"
[park]
name = "Test Park"
grid_region = "national"
grid_factor_year = 2022

[[firms]]
id = "f1"
name = "Firm One"
land_mu = 50

[[sites]]
id = "s1"
firm = "f1"
kind = "factory"

[[meters]]
id = "grid"
site = "s1"
channels = [
  { id = "import", carrier = "grid_import", kind = "counter", unit = "kWh", max_rate_per_hour = 5000, rollover = 100000 },
  { id = "export", carrier = "grid_export", kind = "counter", unit = "kWh", max_rate_per_hour = 5000 },
]

[[meters]]
id = "pv"
site = "s1"
channels = [{ id = "gen", carrier = "pv_generation", kind = "counter", unit = "kWh", max_rate_per_hour = 2000 }]

[[meters]]
id = "gas"
site = "s1"
channels = [{ id = "vol", carrier = "natural_gas", kind = "counter", unit = "Nm3", max_rate_per_hour = 500 }]

[[meters]]
id = "line"
site = "s1"
channels = [{ id = "pcs", carrier = "production", kind = "counter", unit = "pcs", max_rate_per_hour = 100, unit_value_cny = 250 }]
"#;

/// Kills a child process (a server or `ecogate run`) when the test ends, however it ends.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the `ecogate` binary to completion: (exit code, stdout, stderr).
pub fn ecogate(args: &[&str]) -> (i32, String, String) {
    ecogate_run(args, None)
}

/// As [`ecogate`], as of `now` (`ECOGATE_NOW`): a provisional year's figures are annualised by
/// the time elapsed, which would differ between two runs a second apart.
pub fn ecogate_as_of(now: &str, args: &[&str]) -> (i32, String, String) {
    ecogate_run(args, Some(now))
}

fn ecogate_run(args: &[&str], now: Option<&str>) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ecogate"));
    if let Some(now) = now {
        cmd.env("ECOGATE_NOW", now);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One number from a SQLite file (`SELECT COUNT(*) ...`); -1 while it cannot be read.
pub fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(-1)
}

/// `ecogate run --config CFG`, killed when the guard drops.
pub fn run_daemon(cfg: &Path) -> Kill {
    Kill(
        std::process::Command::new(env!("CARGO_BIN_EXE_ecogate"))
            .args(["run", "--config", cfg.to_str().unwrap()])
            .spawn()
            .unwrap(),
    )
}

/// Waits (20 s at most) until something accepts connections on the loopback `port`.
pub fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The child's stdout, line by line, from a thread of its own (the channel closes at EOF).
pub fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    rx
}

/// Headless Chromium's command (scripts/test.sh installs it) and the flags every test uses.
pub fn chromium() -> (&'static str, [&'static str; 9]) {
    let bin = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok()
        })
        .expect("chromium must be installed (scripts/test.sh installs it)");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
    ];
    (bin, flags)
}

/// Fails on a line of Chromium's log that reports a page error or a failed load.
pub fn assert_no_page_errors(what: &str, log: &str) {
    for line in log.lines() {
        assert!(
            !line.contains("CONSOLE") && !line.contains("Uncaught") && !line.contains("net::ERR_"),
            "chromium on {what}: {line}"
        );
    }
}

/// Takes a screenshot of `url` at `width` x `height` into `shot` (kept under
/// target/screenshots/); fails on a page error or an empty page. Returns Chromium's log.
pub fn screenshot(url: &str, shot: &Path, width: u32, height: u32) -> String {
    let (bin, flags) = chromium();
    let _ = std::fs::remove_file(shot);
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(shot.exists(), "no screenshot of {url}:\n{log}");
    assert!(
        std::fs::metadata(shot).unwrap().len() > 20_000,
        "{url}: an empty page?"
    );
    assert_no_page_errors(url, &log);
    log
}

/// `ECOGATE_TEST_LOG=ecogate=debug` shows an in-process component's log in a test's output.
#[allow(dead_code)]
pub fn init_log() {
    if let Ok(filter) = std::env::var("ECOGATE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}
