//! The DL/T 645 source against simulated meters: over a transparent serial server (TCP), over a
//! serial line (a socat pseudo-terminal pair), in the daemon (readings to the store), and
//! through `ecogate probe`; a dead meter must not delay its line-mates.

mod common;
use common::park::{counter, gauge, ParkToml};
use common::pty::PtyPair;

use ecogate::app::AppConfig;
use ecogate::metrics::Metrics;
use ecogate::pipeline::Envelope;
use ecogate::reading::Reading;
use ecogate::sources::dlt645::config::Dlt645Config;
use ecogate::sources::dlt645::sim::{self, SimLine, SimMeter};
use ecogate::sources::SourceContext;
use std::path::Path;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Park `P` (one firm, one factory site) with meters `ids`, each with a grid import counter and
/// three recorded gauges (a tariff register, phase A voltage, power).
fn park(ids: &[&str]) -> String {
    let mut p = ParkToml::one_site("factory");
    for id in ids {
        p = p.meter(
            id,
            "s",
            &[
                counter("import", "grid_import", "kWh", 100_000.0),
                gauge("import_t4", "kWh", ""),
                gauge("ua", "V", ""),
                gauge("p", "kW", ""),
            ],
        );
    }
    p.to_string()
}

fn parse(text: &str) -> AppConfig {
    AppConfig::parse(Path::new("dlt645.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the source for `run_for`; every reading it produced.
async fn collect(app: &AppConfig, run_for: Duration) -> Vec<Reading> {
    let (tx, mut rx) = mpsc::channel::<Envelope>(10_000);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (tasks, _health) = ecogate::sources::dlt645::poller::spawn(
        app.source::<Dlt645Config>().unwrap(),
        SourceContext {
            output: tx,
            shutdown: stop_rx,
            clock: ecogate::util::Clock::real(),
        },
        Arc::new(Metrics::new()),
    );
    tokio::time::sleep(run_for).await;
    stop_tx.send(true).unwrap();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let mut readings = Vec::new();
    while let Ok(env) = rx.try_recv() {
        readings.extend(env.readings);
    }
    readings
}

fn line(meters: Vec<SimMeter>) -> SimLine {
    Arc::new(Mutex::new(meters))
}

/// Three meters behind one serial server, the second dead. Each live meter is polled every
/// 200 ms; the dead one costs a 500 ms timeout per try. Polled in turn, every round would wait
/// out that timeout and the live meters would get about 8 polls in 4 s (4 / 0.5); tried only in
/// the line's slack, they lose its first timeout and keep about 17 ((4 - 0.5) / 0.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_meter_does_not_delay_its_line_mates_and_values_are_exact() {
    let mut dead = SimMeter::new("000000000002", 0.0);
    dead.silent = true;
    let mut a = SimMeter::new("000000000001", 12345.67);
    a.preamble = 4;
    let mut c = SimMeter::new("202208310002", 100.0);
    c.preamble = 0;
    let sim_line = line(vec![a, dead, c]);
    let (addr, _server) = sim::listen(sim_line.clone()).await.unwrap();
    let text = format!(
        "{}[[dlt645.lines]]\nid = \"l1\"\ntcp = \"{addr}\"\ntimeout_ms = 500\ngap_ms = 0\n\
         [[dlt645.meters]]\nmeter = \"a\"\nline = \"l1\"\naddress = \"000000000001\"\npoll_interval_ms = 200\nchannels = {{ import = \"forward_active_total\", import_t4 = \"forward_active_tariff4\", ua = \"voltage_a\", p = \"active_power_total\" }}\n\
         [[dlt645.meters]]\nmeter = \"b\"\nline = \"l1\"\naddress = \"000000000002\"\npoll_interval_ms = 200\nchannels = {{ import = \"forward_active_total\" }}\n\
         [[dlt645.meters]]\nmeter = \"c\"\nline = \"l1\"\naddress = \"202208310002\"\npoll_interval_ms = 200\nchannels = {{ import = \"forward_active_total\" }}\n",
        park(&["a", "b", "c"])
    );
    let app = parse(&text);
    let readings = collect(&app, Duration::from_secs(4)).await;
    let of = |m: &str, ch: &str| -> Vec<f64> {
        readings
            .iter()
            .filter(|r| r.meter == m && r.channel == ch)
            .map(|r| r.amount)
            .collect()
    };
    // 12345.67 kWh split 10/30/40/20 %: tariff 4 holds 2469.13 (12345.67 x 0.2 = 2469.134,
    // registers in hundredths); the total is the sum of the rounded tariffs: 1234.57 + 3703.70
    // + 4938.27 + 2469.13 = 12345.67.
    let a_import = of("a", "import");
    assert!(a_import.iter().all(|v| *v == 12345.67), "{a_import:?}");
    assert!(of("a", "import_t4").iter().all(|v| *v == 2469.13));
    assert!(of("a", "ua").iter().all(|v| *v == 230.0));
    assert!(of("a", "p").iter().all(|v| *v == 2.2));
    assert!(of("b", "import").is_empty(), "the dead meter delivered");
    let c_import = of("c", "import");
    assert!(c_import.iter().all(|v| *v == 100.0), "{c_import:?}");
    // Past the dead meter's first timeout, no live meter waits longer than twice its interval:
    // each try of the dead one would cost a 500 ms gap.
    for m in ["a", "c"] {
        let mut ts: Vec<i64> = readings
            .iter()
            .filter(|r| r.meter == m && r.channel == "import")
            .map(|r| r.ts_ms)
            .collect();
        ts.sort();
        let settled: Vec<i64> = ts.iter().copied().filter(|t| *t >= ts[0] + 1000).collect();
        let widest = settled.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        assert!(
            widest <= 400,
            "meter {m} waited {widest} ms between polls: {ts:?}"
        );
    }
    assert!(
        a_import.len() >= 13 && c_import.len() >= 13,
        "live meters polled {} and {} times in 4 s at 200 ms: the dead one held them up",
        a_import.len(),
        c_import.len()
    );
}

/// The same reads over a serial line (2400 baud 8E1 as configured; a pty ignores the rate):
/// the meter answers on the other end of the pair, in the 1997 edition for one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meters_on_a_serial_line_are_read_in_both_editions() {
    use tokio_serial::SerialPortBuilderExt;
    let dir = tempfile::tempdir().unwrap();
    let pty = PtyPair::new(dir.path(), "tty");
    let sim_line = line(vec![
        SimMeter::new("000000000011", 4321.5),
        SimMeter::new("000000000012", 77.0),
    ]);
    let port = tokio_serial::new(pty.b.to_string_lossy(), 2400)
        .open_native_async()
        .unwrap();
    let server = tokio::spawn(sim::serve(port, sim_line.clone()));
    let text = format!(
        "{}[[dlt645.lines]]\nid = \"rs485\"\ndevice = \"{}\"\nbaud = 2400\n\
         [[dlt645.meters]]\nmeter = \"m1\"\nline = \"rs485\"\naddress = \"11\"\npoll_interval_ms = 300\nchannels = {{ import = \"forward_active_total\", ua = \"voltage_a\" }}\n\
         [[dlt645.meters]]\nmeter = \"m2\"\nline = \"rs485\"\naddress = \"12\"\nedition = \"1997\"\npoll_interval_ms = 300\nchannels = {{ import = \"forward_active_total\", ua = \"voltage_a\" }}\n",
        park(&["m1", "m2"]),
        pty.a.display()
    );
    let app = parse(&text);
    let readings = collect(&app, Duration::from_secs(2)).await;
    server.abort();
    let first = |m: &str, ch: &str| {
        readings
            .iter()
            .find(|r| r.meter == m && r.channel == ch)
            .map(|r| (r.amount, r.unit.symbol))
    };
    // 4321.5 kWh: tariffs 432.15 + 1296.45 + 1728.60 + 864.30 = 4321.50.
    assert_eq!(first("m1", "import"), Some((4321.5, "kWh")));
    assert_eq!(first("m1", "ua"), Some((230.0, "V")));
    // 1997: 9010 for energy, B611 for voltage (XXX V, no decimal).
    assert_eq!(first("m2", "import"), Some((77.0, "kWh")));
    assert_eq!(first("m2", "ua"), Some((230.0, "V")));
}

#[test]
fn configuration_errors_name_their_key() {
    let cases = [
        (
            "[[dlt645.lines]]\nid = \"l\"\ntcp = \"127.0.0.1:1\"\n[[dlt645.meters]]\nmeter = \"a\"\nline = \"l\"\naddress = \"1\"\nchannels = { import = \"forward_energy\" }\n",
            "dlt645.meters[0].channels.import: unknown quantity `forward_energy`",
        ),
        (
            "[[dlt645.lines]]\nid = \"l\"\ntcp = \"127.0.0.1:1\"\n[[dlt645.meters]]\nmeter = \"a\"\nline = \"l2\"\naddress = \"1\"\nchannels = { import = \"forward_active_total\" }\n",
            "dlt645.meters[0].line: no [[dlt645.lines]] has id `l2`",
        ),
        (
            "[[dlt645.lines]]\nid = \"l\"\ntcp = \"127.0.0.1:1\"\n[[dlt645.meters]]\nmeter = \"a\"\nline = \"l\"\naddress = \"12345X\"\nchannels = { import = \"forward_active_total\" }\n",
            "dlt645.meters[0].address: `12345X` is not a meter address",
        ),
        (
            "[[dlt645.lines]]\nid = \"l\"\ntcp = \"127.0.0.1:1\"\n[[dlt645.meters]]\nmeter = \"a\"\nline = \"l\"\naddress = \"1\"\nedition = \"1997\"\nchannels = { import = \"combined_active_total\" }\n",
            "DL/T 645-1997 has no identifier for `combined_active_total`",
        ),
        (
            "[[dlt645.lines]]\nid = \"l\"\ndevice = \"/dev/ttyUSB9\"\nbaud = 2500\n",
            "dlt645.lines[0].baud: 2500 is not a DL/T 645 rate",
        ),
        (
            "[[dlt645.lines]]\nid = \"l\"\ntcp = \"127.0.0.1:1\"\n[[dlt645.meters]]\nmeter = \"a\"\nline = \"l\"\naddress = \"1\"\nchannels = { ua = \"forward_active_total\" }\n",
            "`forward_active_total` is in kWh (energy), channel `ua` in V (voltage)",
        ),
    ];
    for (section, expected) in cases {
        let text = format!("{}{section}", park(&["a"]));
        let err = AppConfig::parse(Path::new("park.toml"), &text)
            .err()
            .unwrap_or_else(|| panic!("accepted: {section}"))
            .to_string();
        assert!(err.contains(expected), "{expected}\nnot in:\n{err}");
        assert!(err.contains("park.toml:"), "not located: {err}");
    }
}

/// The daemon reads a meter whose register rises from 1000.00 to 1012.34 kWh: the store holds
/// 12.34 kWh of grid import for it (1012.34 - 1000.00), and `ecogate probe` reads the same
/// meter by configuration and by address.
#[test]
fn the_daemon_stores_the_energy_a_meter_counted_and_probe_reads_it() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim_line = line(vec![SimMeter::new("202208310002", 1000.0)]);
    let (addr, _server) = runtime.block_on(sim::listen(sim_line.clone())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let cfg = dir.path().join("park.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[store]\npath = \"{}\"\n[metrics]\nenabled = false\n[[dlt645.lines]]\nid = \"l1\"\ntcp = \"{addr}\"\n\
             [[dlt645.meters]]\nmeter = \"a\"\nline = \"l1\"\naddress = \"202208310002\"\npoll_interval_ms = 200\nchannels = {{ import = \"forward_active_total\" }}\n",
            park(&["a"]),
            store.display()
        ),
    )
    .unwrap();
    let (code, out, err) = common::ecogate(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("dlt645 line l1 (tcp 127.0.0.1:"), "{out}");
    let _daemon = common::run_daemon(&cfg);
    let answered = || sim_line.lock().unwrap()[0].answered;
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered() < 3 {
        assert!(Instant::now() < deadline, "the daemon never read the meter");
        std::thread::sleep(Duration::from_millis(50));
    }
    sim_line.lock().unwrap()[0].set_energy(1012.34);
    let kwh = || {
        use ecogate::accounting::metric::Metric;
        use ecogate::accounting::window::WindowKind;
        use ecogate::accounting::{Accountant, Entity};
        let Ok(s) = ecogate::sinks::store::Store::open(&store) else {
            return 0.0;
        };
        let app = AppConfig::load(&cfg).unwrap();
        let acct = Accountant::new(app.core.clone());
        s.sums(&acct, WindowKind::Year, Entity::Meter(0), 0, i64::MAX)
            .map_or(0.0, |x| x.get(Metric::GridImportKwh))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = kwh();
    while (got - 12.34).abs() > 1e-9 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        got = kwh();
    }
    assert!(
        (got - 12.34).abs() < 1e-9,
        "stored {got} kWh, counted 12.34"
    );
    let (code, out, err) =
        common::ecogate(&["probe", "--config", cfg.to_str().unwrap(), "--meter", "a"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("import <- forward_active_total (正向有功总电能): 1012.34 kWh"),
        "{out}"
    );
    let (code, out, err) = common::ecogate(&["probe", "--dlt645", &addr.to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("meter address 202208310002 (answered the wildcard)"),
        "{out}"
    );
    assert!(
        out.contains("forward_active_total (正向有功总电能): 1012.34 kWh"),
        "{out}"
    );
    drop(runtime);
}

/// A meter read for its forward energy total and tariffs 1-4 answers one block read (DI
/// 00 01 FF 00) per poll instead of five requests; a meter that refuses block reads (some do)
/// answers the first with "no requested data", and is read register by register from then on,
/// with the same exact values (5,000 kWh: 500 + 1,500 + 2,000 + 1,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn energy_registers_are_read_in_one_block_where_the_meter_allows() {
    let mut refusing = SimMeter::new("000000000022", 5000.0);
    refusing.refuses_blocks = true;
    let sim_line = line(vec![SimMeter::new("000000000021", 5000.0), refusing]);
    let (addr, _server) = sim::listen(sim_line.clone()).await.unwrap();
    let registers = ["total", "tariff1", "tariff2", "tariff3", "tariff4"];
    let channels: Vec<String> = registers
        .iter()
        .map(|r| gauge(&format!("e_{r}"), "kWh", ""))
        .collect();
    let binding = registers
        .iter()
        .map(|r| format!("e_{r} = \"forward_active_{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = ParkToml::one_site("factory")
        .meter("a", "s", &channels)
        .meter("b", "s", &channels)
        .section(&format!(
            "[[dlt645.lines]]\nid = \"l1\"\ntcp = \"{addr}\"\ngap_ms = 0\n\
             [[dlt645.meters]]\nmeter = \"a\"\nline = \"l1\"\naddress = \"21\"\npoll_interval_ms = 200\nchannels = {{ {binding} }}\n\
             [[dlt645.meters]]\nmeter = \"b\"\nline = \"l1\"\naddress = \"22\"\npoll_interval_ms = 200\nchannels = {{ {binding} }}\n"
        ))
        .to_string();
    let readings = collect(&parse(&text), Duration::from_millis(1500)).await;
    for m in ["a", "b"] {
        for (r, kwh) in registers
            .iter()
            .zip([5000.0, 500.0, 1500.0, 2000.0, 1000.0])
        {
            let got: Vec<f64> = readings
                .iter()
                .filter(|x| x.meter == m && x.channel == format!("e_{r}"))
                .map(|x| x.amount)
                .collect();
            assert!(
                !got.is_empty() && got.iter().all(|v| *v == kwh),
                "{m} {r}: {got:?}"
            );
        }
    }
    let polls = |m: &str| {
        readings
            .iter()
            .filter(|x| x.meter == m && x.channel == "e_total")
            .count() as u64
    };
    let answered: Vec<u64> = sim_line
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.answered)
        .collect();
    // A poll in flight when the source stopped may have been answered without its readings.
    let (pa, pb) = (polls("a"), polls("b"));
    assert!(
        (pa..=pa + 1).contains(&answered[0]),
        "a: {} requests for {pa} polls (one block read a poll)",
        answered[0]
    );
    // b: the refused block read, then five requests a poll.
    assert!(
        (1 + 5 * pb..=1 + 5 * pb + 5).contains(&answered[1]),
        "b: {} requests for {pb} polls",
        answered[1]
    );
}

/// A line no meter uses is not opened, and `check` says so (a typo in a meter's `line` would
/// otherwise leave the intended line silently unused).
#[test]
fn an_unused_line_is_warned_about() {
    let text = format!(
        "{}[[dlt645.lines]]\nid = \"l1\"\ntcp = \"127.0.0.1:1\"\n[[dlt645.lines]]\nid = \"spare\"\ntcp = \"127.0.0.1:2\"\n\
         [[dlt645.meters]]\nmeter = \"a\"\nline = \"l1\"\naddress = \"1\"\nchannels = {{ import = \"forward_active_total\" }}\n",
        park(&["a"])
    );
    let app = parse(&text);
    assert_eq!(app.source::<Dlt645Config>().unwrap().lines.len(), 1);
    assert!(
        app.core
            .warnings
            .iter()
            .any(|w| w.contains("line `spare` has no [[dlt645.meters]]: it is not opened")),
        "{:?}",
        app.core.warnings
    );
}
