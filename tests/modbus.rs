//! Modbus source against real tokio-modbus servers on loopback ports the tests pick.

mod common;
#[path = "common/modbus_sim.rs"]
mod common_sim;

use common::*;
use common_sim::{start_rtu_over_tcp, start_tcp, Bank, Behaviour};
use ecogate::app::AppConfig as Config;
use ecogate::metrics::Metrics;
use ecogate::pipeline::Envelope;
use ecogate::reading::Reading;
use ecogate::sources::modbus::decode::{DataType, WordOrder};
use ecogate::sources::SourceContext;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_modbus::ExceptionCode;

const PARK: &str = "[park]\nname = \"P\"\ngrid_factor_year = 2022\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"factory\"\n";

fn parse(text: &str) -> Arc<Config> {
    Arc::new(Config::parse(Path::new("modbus.toml"), text).unwrap_or_else(|e| panic!("{e}")))
}

/// Runs the Modbus source for `run_for` and returns every reading it produced.
async fn collect(
    config: &Config,
    run_for: Duration,
) -> (
    Vec<Reading>,
    ecogate::sources::modbus::ModbusSource,
    Arc<Metrics>,
) {
    let (tx, mut rx) = mpsc::channel::<Envelope>(10_000);
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let source = ecogate::sources::modbus::spawn(
        config
            .source::<ecogate::sources::modbus::config::ModbusConfig>()
            .unwrap(),
        SourceContext {
            output: tx,
            shutdown: stop_rx,
            clock: ecogate::util::Clock::real(),
        },
        metrics.clone(),
    );
    tokio::time::sleep(run_for).await;
    stop_tx.send(true).unwrap();
    let mut readings = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(env)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        readings.extend(env.readings);
    }
    (readings, source, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_word_order_decodes_to_the_right_value() {
    let bank = Bank::default();
    let (addr, _server) = start_tcp(bank.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let cases: &[(&str, DataType, f64)] = &[
        ("u16", DataType::U16, 54_321.0),
        ("i16", DataType::I16, -1_234.0),
        ("u32", DataType::U32, 3_000_000_000.0),
        ("i32", DataType::I32, -2_000_000_000.0),
        ("u64", DataType::U64, 9_007_199_254_740_000.0),
        ("i64", DataType::I64, -9_007_199_254_740_000.0),
        ("f32", DataType::F32, -0.15625),
        ("f64", DataType::F64, 12_345_678.901234),
        ("bcd16", DataType::Bcd16, 9_876.0),
        ("bcd32", DataType::Bcd32, 87_654_321.0),
    ];
    let orders = [
        ("ABCD", WordOrder::Abcd),
        ("CDAB", WordOrder::Cdab),
        ("BADC", WordOrder::Badc),
        ("DCBA", WordOrder::Dcba),
    ];
    let mut channels = Vec::new();
    let mut registers = String::new();
    let mut expected = HashMap::new();
    let mut address = 100u16;
    for (name, ty, value) in cases {
        for (oname, order) in orders {
            let ch = format!("{name}_{}", oname.to_lowercase());
            // Holding registers for even types, input registers for odd, both through 1-based numbering half the time.
            let table = (address / 4 % 2) as u8;
            bank.set(1, table, address, *value, *ty, order);
            let function = if table == 0 { "holding" } else { "input" };
            let base = (address / 8 % 2) as u32;
            channels.push(format!(
                "{{ id = \"{ch}\", kind = \"gauge\", unit = \"ratio\" }}"
            ));
            registers.push_str(&format!(
                "[[modbus.devices.registers]]\nchannel = \"{ch}\"\nfunction = \"{function}\"\naddress = {}\naddress_base = {base}\ntype = \"{name}\"\nword_order = \"{oname}\"\nunit = \"ratio\"\n",
                address as u32 + base
            ));
            expected.insert(ch, *value);
            address += 8;
        }
    }
    // A coil and a scaled, offset register.
    bank.set(1, 2, 7, 1.0, DataType::Bool, WordOrder::Abcd);
    bank.set(1, 0, 20, 1234.0, DataType::U16, WordOrder::Abcd);
    channels.push("{ id = \"coil\", kind = \"gauge\", unit = \"ratio\" }".into());
    channels.push("{ id = \"scaled\", kind = \"gauge\", unit = \"V\" }".into());
    registers.push_str("[[modbus.devices.registers]]\nchannel = \"coil\"\nfunction = \"coil\"\naddress = 7\naddress_base = 0\ntype = \"bool\"\nunit = \"ratio\"\n");
    registers.push_str("[[modbus.devices.registers]]\nchannel = \"scaled\"\nfunction = \"holding\"\naddress = 20\naddress_base = 0\ntype = \"u16\"\nscale = 0.1\noffset = -3\nunit = \"V\"\n");
    expected.insert("coil".into(), 1.0);
    // 1234 x 0.1 - 3 = 120.4 V
    expected.insert("scaled".into(), 120.4);
    let text = format!(
        "{PARK}[[meters]]\nid = \"m\"\nsite = \"s\"\nchannels = [{}]\n[[modbus.devices]]\nmeter = \"m\"\ntcp = \"{addr}\"\nunit_id = 1\npoll_interval_ms = 200\ntimeout_ms = 500\n{registers}",
        channels.join(", ")
    );
    let cfg = parse(&text);
    let (readings, _source, _) = collect(&cfg, Duration::from_millis(700)).await;
    let mut seen: HashMap<String, f64> = HashMap::new();
    for r in &readings {
        seen.insert(r.channel.clone(), r.amount);
    }
    assert_eq!(
        seen.len(),
        expected.len(),
        "channels read: {:?}",
        seen.keys()
    );
    for (ch, v) in &expected {
        let got = seen[ch];
        assert!(
            (got - v).abs() <= 1e-9 * v.abs().max(1.0),
            "{ch}: {got} != {v}"
        );
    }
}

fn dtsu_config(addr: std::net::SocketAddr, interval_ms: u64) -> String {
    format!(
        "{PARK}[[meters]]\nid = \"m\"\nsite = \"s\"\nchannels = [\n\
         {{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 10000 }},\n\
         {{ id = \"power\", kind = \"gauge\", unit = \"kW\" }},\n\
         {{ id = \"v1\", kind = \"gauge\", unit = \"V\" }},\n\
         {{ id = \"v2\", kind = \"gauge\", unit = \"V\" }},\n\
         {{ id = \"pf\", kind = \"gauge\", unit = \"ratio\" }},\n\
         {{ id = \"hz\", kind = \"gauge\", unit = \"Hz\" }},\n\
         {{ id = \"export\", carrier = \"grid_export\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 10000 }},\n]\n\
         [[modbus.devices]]\nmeter = \"m\"\ntcp = \"{addr}\"\nunit_id = 3\nprofile = \"chint-dtsu666\"\npoll_interval_ms = {interval_ms}\ntimeout_ms = 500\n\
         channels = {{ import = \"import_kwh\", export = \"export_kwh\", power = \"power_total_w\", v1 = \"voltage_l1_v\", v2 = \"voltage_l2_v\", pf = \"power_factor\", hz = \"frequency_hz\" }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_is_coalesced_and_polled_end_to_end_in_the_right_units() {
    let bank = Bank::default();
    let (addr, _server) = start_tcp(bank.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let f = |a: u16, v: f64| bank.set(3, 0, a, v, DataType::F32, WordOrder::Abcd);
    f(0x101E, 1500.25); // import kWh
    f(0x1028, 12.5); // export kWh
    f(0x2012, 123_450.0); // power, x0.1 W -> 12,345 W = 12.345 kW
    f(0x2006, 2305.0); // V L1 x0.1 -> 230.5 V
    f(0x2008, 2301.0);
    f(0x202A, 987.0); // PF x0.001 -> 0.987
    f(0x2044, 5001.0); // Hz x0.01 -> 50.01
    let cfg = parse(&dtsu_config(addr, 250));
    let (readings, source, _) = collect(&cfg, Duration::from_millis(1_200)).await;
    let health = &source.health.devices["m"];
    let polls = health.polls_ok.load(Ordering::Relaxed);
    assert!(polls >= 3, "polls {polls}");
    // Planned requests: import+export (0x101E..0x102A, gap 8) = 1; V1, V2, P (0x2006..0x2014) = 1;
    // PF (0x202A, gap 22 from 0x2014) = 1; Hz (0x2044) = 1: 4 requests per poll.
    assert_eq!(bank.requests(3), polls * 4, "requests per poll");
    let last = |ch: &str| {
        readings
            .iter()
            .rev()
            .find(|r| r.channel == ch)
            .unwrap()
            .clone()
    };
    assert_eq!(last("import").amount, 1500.25);
    assert_eq!(last("import").unit.symbol, "kWh");
    let p = last("power");
    // 123,450 x 0.1 = 12,345 W; the reading keeps its unit (W), normalised to kW on entry.
    assert_eq!((p.amount, p.unit.symbol), (12_345.0, "W"));
    assert!((last("v1").amount - 230.5).abs() < 1e-9);
    assert!((last("pf").amount - 0.987).abs() < 1e-6);
    assert!((last("hz").amount - 50.01).abs() < 1e-6);
    // Timestamps follow the schedule: consecutive imports about 250 ms apart.
    let ts: Vec<i64> = readings
        .iter()
        .filter(|r| r.channel == "import")
        .map(|r| r.ts_ms)
        .collect();
    for w in ts.windows(2) {
        let gap = w[1] - w[0];
        assert!((150..=400).contains(&gap), "poll gap {gap} ms");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_devices_on_one_bus_do_not_disturb_the_healthy_ones() {
    let bank = Bank::default();
    let (addr, _server) = start_rtu_over_tcp(bank.clone()).await;
    for unit in 1..=6u8 {
        bank.set(
            unit,
            0,
            0,
            100.0 + unit as f64,
            DataType::F32,
            WordOrder::Abcd,
        );
    }
    bank.behave(3, Behaviour::Silent);
    bank.behave(4, Behaviour::Late(Duration::from_millis(400)));
    bank.behave(5, Behaviour::Exception(ExceptionCode::IllegalDataAddress));
    bank.behave(6, Behaviour::Exception(ExceptionCode::ServerDeviceBusy));
    let mut text = format!("{PARK}[[modbus.buses]]\nid = \"line1\"\ntransport = \"rtu_over_tcp\"\naddress = \"{addr}\"\n");
    for unit in 1..=6 {
        text.push_str(&format!(
            "[[meters]]\nid = \"m{unit}\"\nsite = \"s\"\nchannels = [{{ id = \"p\", kind = \"gauge\", unit = \"kW\" }}]\n\
             [[modbus.devices]]\nmeter = \"m{unit}\"\nbus = \"line1\"\nunit_id = {unit}\npoll_interval_ms = 500\ntimeout_ms = 150\nretries = 1\n\
             [[modbus.devices.registers]]\nchannel = \"p\"\nfunction = \"holding\"\naddress = 0\naddress_base = 0\ntype = \"f32\"\nunit = \"kW\"\n"
        ));
    }
    let cfg = parse(&text);
    let run = Duration::from_millis(6_000);
    let (readings, source, metrics) = collect(&cfg, run).await;
    for healthy in ["m1", "m2"] {
        let ts: Vec<i64> = readings
            .iter()
            .filter(|r| r.meter == healthy)
            .map(|r| r.ts_ms)
            .collect();
        // 6 s at one poll per 500 ms = 12 polls; allow the first slot and scheduling slack.
        assert!(ts.len() >= 10, "{healthy}: {} readings", ts.len());
        let worst = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(worst <= 900, "{healthy}: worst gap {worst} ms");
    }
    for faulty in ["m3", "m4", "m5", "m6"] {
        assert!(
            readings.iter().all(|r| r.meter != faulty),
            "{faulty} produced readings"
        );
        let h = &source.health.devices[faulty];
        assert!(!h.up.load(Ordering::Relaxed), "{faulty} up");
        assert!(
            h.consecutive_failures.load(Ordering::Relaxed) >= 2,
            "{faulty}"
        );
    }
    // Back-off keeps the silent device from costing a timeout every poll: fewer requests than polls.
    assert!(
        bank.requests(3) < 12,
        "silent device asked {} times",
        bank.requests(3)
    );
    let exc = |code: &str| {
        metrics
            .component(ecogate::sources::modbus::metrics::ModbusMetrics::register)
            .exceptions
            .with_label_values(&[code])
            .get()
    };
    assert!(exc("illegal_data_address") >= 2);
    assert!(exc("server_device_busy") >= 2);
    assert!(
        metrics
            .component(ecogate::sources::modbus::metrics::ModbusMetrics::register)
            .requests
            .with_label_values(&["timeout"])
            .get()
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_resumes_after_the_server_restarts() {
    let bank = Bank::default();
    let (addr, server) = start_tcp(bank.clone(), "127.0.0.1:0".parse().unwrap()).await;
    bank.set(3, 0, 0x101E, 10.0, DataType::F32, WordOrder::Abcd);
    let cfg = parse(&dtsu_config(addr, 200));
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
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(first
        .readings
        .iter()
        .any(|r| r.channel == "import" && r.amount == 10.0));
    server.abort();
    let _ = server.await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    while rx.try_recv().is_ok() {}
    assert!(
        !source.health.devices["m"].up.load(Ordering::Relaxed),
        "device should be down while the server is"
    );
    bank.set(3, 0, 0x101E, 11.0, DataType::F32, WordOrder::Abcd);
    let (_addr, _server2) = start_tcp(bank.clone(), addr).await;
    let resumed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let env = rx.recv().await.unwrap();
            if env
                .readings
                .iter()
                .any(|r| r.channel == "import" && r.amount == 11.0)
            {
                return;
            }
        }
    })
    .await;
    assert!(resumed.is_ok(), "no readings after the server came back");
    assert!(
        metrics
            .component(ecogate::sources::modbus::metrics::ModbusMetrics::register)
            .connects
            .get()
            >= 2
    );
    stop_tx.send(true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modbus_readings_are_accounted_through_the_pipeline() {
    let bank = Bank::default();
    let (addr, _server) = start_tcp(bank.clone(), "127.0.0.1:0".parse().unwrap()).await;
    bank.set(3, 0, 0x101E, 1000.0, DataType::F32, WordOrder::Abcd);
    let cfg = parse(&dtsu_config(addr, 200));
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let handle = ecogate::pipeline::spawn(pipeline(&cfg.core, &path), cfg.core.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let source = ecogate::sources::modbus::spawn(
        cfg.source::<ecogate::sources::modbus::config::ModbusConfig>()
            .unwrap(),
        SourceContext {
            output: handle.tx.clone(),
            shutdown: stop_rx,
            clock: ecogate::util::Clock::real(),
        },
        Arc::new(Metrics::new()),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The meter advances by 2.5 kWh.
    bank.set(3, 0, 0x101E, 1002.5, DataType::F32, WordOrder::Abcd);
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop_tx.send(true).unwrap();
    for t in source.tasks {
        t.await.unwrap();
    }
    drop(handle.tx);
    tokio::task::spawn_blocking(move || handle.join.join().unwrap())
        .await
        .unwrap();
    let p = pipeline(&cfg.core, &path);
    let sums = p
        .store()
        .sums(
            p.accountant(),
            ecogate::accounting::window::WindowKind::Year,
            ecogate::accounting::Entity::Meter(0),
            0,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(
        sums.get(ecogate::accounting::metric::Metric::GridImportKwh),
        2.5
    );
}

#[test]
fn modbus_configuration_errors_name_their_place() {
    let head = format!("{PARK}[[meters]]\nid = \"m\"\nsite = \"s\"\nchannels = [{{ id = \"import_kwh\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 100 }}]\n");
    let err = |tail: &str| match Config::parse(Path::new("mb.toml"), &format!("{head}{tail}")) {
        Ok(_) => panic!("should be invalid: {tail}"),
        Err(e) => e.to_string(),
    };
    let e = err("[[modbus.devices]]\nmeter = \"nope\"\ntcp = \"127.0.0.1:502\"\nprofile = \"eastron-sdm630\"\n");
    assert!(
        e.contains("mb.toml:17:9: modbus.devices[0].meter: unknown meter `nope`"),
        "{e}"
    );
    let e = err(
        "[[modbus.devices]]\nmeter = \"m\"\ntcp = \"localhost\"\nprofile = \"eastron-sdm630\"\n",
    );
    assert!(
        e.contains("modbus.devices[0].tcp: `localhost` is not an address"),
        "{e}"
    );
    let e = err("[[modbus.devices]]\nmeter = \"m\"\ntcp = \"127.0.0.1:502\"\nprofile = \"chint-dtsu-666\"\n");
    assert!(e.contains("modbus.devices[0].profile: unknown profile `chint-dtsu-666`: known profiles are acrel-adl400, chint-ddsu666"), "{e}");
    let e = err("[[modbus.devices]]\nmeter = \"m\"\ntcp = \"127.0.0.1:502\"\nprofile = \"eastron-sdm630\"\nchannels = { import_kwh = \"power_total_w\" }\n");
    assert!(e.contains("modbus.devices[0].channels.import_kwh: the register's unit W (power) does not fit channel `import_kwh` in kWh (energy)"), "{e}");
    let e = err("[[modbus.devices]]\nmeter = \"m\"\ntcp = \"127.0.0.1:502\"\n[[modbus.devices.registers]]\nchannel = \"import_kwh\"\nfunction = \"holding\"\naddress = 0\naddress_base = 1\ntype = \"f32\"\nunit = \"kWh\"\n");
    assert!(e.contains("modbus.devices[0].registers[0].address: address 0 with address_base 1 is outside 0-65535 on the wire"), "{e}");
    let e = err("[[modbus.devices]]\nmeter = \"m\"\ntcp = \"127.0.0.1:502\"\n[[modbus.devices.registers]]\nchannel = \"import_kwh\"\nfunction = \"coil\"\naddress = 0\naddress_base = 0\ntype = \"f32\"\nunit = \"kWh\"\n");
    assert!(
        e.contains("registers[0].type: coils and discrete inputs are `bool`"),
        "{e}"
    );
    let e = err("[[modbus.buses]]\nid = \"l\"\ntransport = \"rtu\"\n[[modbus.devices]]\nmeter = \"m\"\nbus = \"l\"\nprofile = \"eastron-sdm630\"\n");
    assert!(
        e.contains("modbus.buses[0].device: an RTU bus needs `device`"),
        "{e}"
    );
    // Name matching: the meter's channel `import_kwh` reads the profile point of that name.
    let ok = Config::parse(Path::new("mb.toml"), &format!("{head}[[modbus.devices]]\nmeter = \"m\"\ntcp = \"127.0.0.1:502\"\nprofile = \"eastron-sdm630\"\n")).unwrap();
    let points = &ok
        .source::<ecogate::sources::modbus::config::ModbusConfig>()
        .unwrap()
        .buses[0]
        .devices[0]
        .points;
    assert_eq!(
        (
            points.len(),
            points[0].channel.as_str(),
            points[0].span.address
        ),
        (1, "import_kwh", 0x0048)
    );
}

#[test]
fn users_own_profiles_load_from_profiles_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("profiles")).unwrap();
    std::fs::write(
        dir.path().join("profiles/gas-corrector.toml"),
        "name = \"gas-corrector\"\ndescription = \"volume corrector\"\nsource = \"vendor sheet rev 3, p. 7\"\nfunction = \"input\"\nword_order = \"CDAB\"\naddress_base = 1\n[points]\nvolume_nm3 = { address = 30001, type = \"u32\", scale = 0.01, unit = \"Nm3\" }\n",
    )
    .unwrap();
    let text = format!(
        "{PARK}[modbus]\nprofiles_dir = \"profiles\"\n[[meters]]\nid = \"g\"\nsite = \"s\"\nchannels = [{{ id = \"volume_nm3\", carrier = \"natural_gas\", kind = \"counter\", unit = \"Nm3\", max_rate_per_hour = 100 }}]\n[[modbus.devices]]\nmeter = \"g\"\ntcp = \"127.0.0.1:502\"\nprofile = \"gas-corrector\"\n"
    );
    let path = dir.path().join("ecogate.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let p = &cfg
        .source::<ecogate::sources::modbus::config::ModbusConfig>()
        .unwrap()
        .buses[0]
        .devices[0]
        .points[0];
    // Register 30001 counted from 1 is address 30000 on the wire.
    assert_eq!(
        (p.span.address, p.word_order, p.scale),
        (30_000, WordOrder::Cdab, 0.01)
    );
    // A broken profile file is named in the error.
    std::fs::write(dir.path().join("profiles/bad.toml"), "name = \"bad\"\n").unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("modbus.profiles_dir: profile ") && e.contains("bad.toml: "),
        "{e}"
    );
}

#[test]
fn overlapping_registers_of_one_device_are_refused() {
    // Two float32 values at input registers 72-73 and 73-74 share register 73.
    let text = format!("{PARK}[[meters]]\nid = \"m\"\nsite = \"s\"\nchannels = [{{ id = \"a\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 100 }}, {{ id = \"b\", kind = \"gauge\", unit = \"kW\" }}]\n\
        [[modbus.devices]]\nmeter = \"m\"\ntcp = \"127.0.0.1:502\"\n\
        [[modbus.devices.registers]]\nchannel = \"a\"\nfunction = \"input\"\naddress = 72\naddress_base = 0\ntype = \"f32\"\nunit = \"kWh\"\n\
        [[modbus.devices.registers]]\nchannel = \"b\"\nfunction = \"input\"\naddress = 73\naddress_base = 0\ntype = \"f32\"\nunit = \"kW\"\n");
    let e = Config::parse(Path::new("mb.toml"), &text)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("channels `a` (input registers 72-73) and `b` (input registers 73-74) overlap"),
        "{e}"
    );
}

/// A silent unit and an exception unit on one TCP gateway with two healthy ones. A failing
/// device is probed only in the line's slack, never ahead of a healthy poll that is due, so the
/// healthy polls start in their slots; a failing device's skipped slots are not misses; each
/// meter says why its last poll failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_unit_never_delays_its_healthy_neighbours() {
    let bank = Bank::default();
    bank.record_arrivals();
    let (addr, _server) = start_tcp(bank.clone(), "127.0.0.1:0".parse().unwrap()).await;
    for unit in 1..=4u8 {
        bank.set(
            unit,
            0,
            0,
            10.0 * unit as f64,
            DataType::F32,
            WordOrder::Abcd,
        );
    }
    bank.behave(3, Behaviour::Silent);
    bank.behave(4, Behaviour::Exception(ExceptionCode::IllegalDataAddress));
    let mut text =
        format!("{PARK}[[modbus.buses]]\nid = \"gw\"\ntransport = \"tcp\"\naddress = \"{addr}\"\n");
    for unit in 1..=4 {
        // A 450 ms timeout in a 500 ms interval: a probe started anywhere in the last 450 ms
        // before a slot would hold the line into it.
        text.push_str(&format!(
            "[[meters]]\nid = \"m{unit}\"\nsite = \"s\"\nchannels = [{{ id = \"p\", kind = \"gauge\", unit = \"kW\" }}]\n\
             [[modbus.devices]]\nmeter = \"m{unit}\"\nbus = \"gw\"\nunit_id = {unit}\npoll_interval_ms = 500\ntimeout_ms = 450\nretries = 1\n\
             [[modbus.devices.registers]]\nchannel = \"p\"\nfunction = \"holding\"\naddress = 0\naddress_base = 0\ntype = \"f32\"\nunit = \"kW\"\n"
        ));
    }
    let cfg = parse(&text);
    let (readings, source, metrics) = collect(&cfg, Duration::from_millis(12_000)).await;
    for unit in [1u8, 2] {
        let arrivals = bank.arrivals(unit);
        assert!(
            arrivals.len() >= 20,
            "unit {unit}: {} polls",
            arrivals.len()
        );
        // Lateness past the wall-clock slot (polls are aligned to multiples of 500 ms); the
        // first slot is left out (the source was starting). Two healthy units share the line,
        // so the second waits for the first's answer: a few ms (150 leaves room for a loaded
        // machine; a probe in the way would cost up to 450).
        let worst = arrivals[1..].iter().map(|a| a % 500).max().unwrap();
        assert!(
            worst < 150,
            "unit {unit}: a poll came {worst} ms after its slot"
        );
    }
    assert!(readings.iter().any(|r| r.meter == "m1"));
    let m = metrics.component(ecogate::sources::modbus::metrics::ModbusMetrics::register);
    assert_eq!(m.polls_missed.get(), 0, "no healthy poll was missed");
    for healthy in ["m1", "m2"] {
        assert_eq!(
            source.health.devices[healthy]
                .polls_missed
                .load(Ordering::Relaxed),
            0
        );
    }
    // Why each failing meter is down, per meter: the index in FAILURE_REASONS plus one.
    let reason = |m: &str| {
        source.health.devices[m]
            .last_failure
            .load(Ordering::Relaxed)
    };
    let reasons = ecogate::sources::modbus::reasons::FAILURE_REASONS;
    assert_eq!(reasons[reason("m3") as usize - 1].code, "timeout");
    assert_eq!(reasons[reason("m4") as usize - 1].code, "exception");
    assert_eq!(reason("m1"), 0);
}

/// Register dumps written by hand from each shipped profile's register map (not by ecogate's
/// own encoder), decoded through the profile as a configured device reads them: address, type,
/// word order, scale and the CT/PT ratio.
#[test]
fn each_shipped_profile_decodes_a_documented_register_dump() {
    use ecogate::sources::modbus::decode::decode;
    // (profile, import register words as the meter sends them, ct_ratio, kWh they mean)
    let dumps: &[(&str, [u16; 2], f64, f64)] = &[
        // u32 x 0.1 at 0x084C: 0x0001E240 = 123,456 -> 12,345.6 kWh.
        ("acrel-adl400", [0x0001, 0xE240], 1.0, 12_345.6),
        // f32 ABCD at 0x4000: 0x4640E6AE = 12,345.669921875 kWh.
        ("chint-ddsu666", [0x4640, 0xE6AE], 1.0, 12_345.669_921_875),
        // f32 ABCD at 0x101E, a secondary value (with apply_ratios) x CT x PT: 0x45000800 =
        // 2,048.5 x 40 x 1 = 81,940 kWh.
        ("chint-dtsu666", [0x4500, 0x0800], 40.0, 81_940.0),
        ("chint-dtsu666-4000", [0x4500, 0x0800], 40.0, 81_940.0),
        // f32 ABCD input registers at 0x0048: 0x49712065 = 987,654.3125 kWh.
        ("eastron-sdm120", [0x4971, 0x2065], 1.0, 987_654.312_5),
        ("eastron-sdm630", [0x4971, 0x2065], 1.0, 987_654.312_5),
    ];
    for &(profile, words, ct, kwh) in dumps {
        let text = format!(
            "{PARK}[[meters]]\nid = \"m\"\nsite = \"s\"\nchannels = [{{ id = \"import_kwh\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 1e6 }}]\n\
             [[modbus.devices]]\nmeter = \"m\"\ntcp = \"127.0.0.1:502\"\nprofile = \"{profile}\"\napply_ratios = true\nct_ratio = {ct}\n"
        );
        let cfg = parse(&text);
        let p = &cfg
            .source::<ecogate::sources::modbus::config::ModbusConfig>()
            .unwrap()
            .buses[0]
            .devices[0]
            .points[0];
        assert_eq!(p.channel, "import_kwh", "{profile}");
        let raw = decode(&words, p.data_type, p.word_order).unwrap();
        let value = (raw * p.scale + p.offset) * p.multiplier;
        assert!(
            (value - kwh).abs() < 1e-9,
            "{profile}: {value} kWh, expected {kwh}"
        );
    }
}

/// 64-bit and BCD values in every word order, from words written by hand.
#[test]
fn sixty_four_bit_and_bcd_word_orders_from_hand_written_words() {
    use ecogate::sources::modbus::decode::decode;
    // 1,234,567,890,123 = 0x0000_011F_71FB_04CB.
    let cases: &[(DataType, WordOrder, &[u16], f64)] = &[
        (
            DataType::U64,
            WordOrder::Abcd,
            &[0x0000, 0x011F, 0x71FB, 0x04CB],
            1_234_567_890_123.0,
        ),
        (
            DataType::U64,
            WordOrder::Cdab,
            &[0x04CB, 0x71FB, 0x011F, 0x0000],
            1_234_567_890_123.0,
        ),
        (
            DataType::U64,
            WordOrder::Badc,
            &[0x0000, 0x1F01, 0xFB71, 0xCB04],
            1_234_567_890_123.0,
        ),
        (
            DataType::U64,
            WordOrder::Dcba,
            &[0xCB04, 0xFB71, 0x1F01, 0x0000],
            1_234_567_890_123.0,
        ),
        // -1,234,567,890,123 = 0xFFFF_FEE0_8E04_FB35 in two's complement.
        (
            DataType::I64,
            WordOrder::Abcd,
            &[0xFFFF, 0xFEE0, 0x8E04, 0xFB35],
            -1_234_567_890_123.0,
        ),
        (
            DataType::I64,
            WordOrder::Cdab,
            &[0xFB35, 0x8E04, 0xFEE0, 0xFFFF],
            -1_234_567_890_123.0,
        ),
        // 12,345,678 in BCD is 0x1234_5678.
        (
            DataType::Bcd32,
            WordOrder::Abcd,
            &[0x1234, 0x5678],
            12_345_678.0,
        ),
        (
            DataType::Bcd32,
            WordOrder::Cdab,
            &[0x5678, 0x1234],
            12_345_678.0,
        ),
        (
            DataType::Bcd32,
            WordOrder::Badc,
            &[0x3412, 0x7856],
            12_345_678.0,
        ),
        (
            DataType::Bcd32,
            WordOrder::Dcba,
            &[0x7856, 0x3412],
            12_345_678.0,
        ),
        (DataType::Bcd16, WordOrder::Abcd, &[0x9876], 9_876.0),
        (DataType::Bcd16, WordOrder::Badc, &[0x7698], 9_876.0),
    ];
    for &(ty, order, words, expected) in cases {
        assert_eq!(decode(words, ty, order), Ok(expected), "{ty:?} {order:?}");
    }
}

/// A unit silent for a while, then back, on a line whose healthy neighbour is polled more often
/// (every 100 ms) than the silent one's timeout (300 ms): the line never has 300 ms of slack, and
/// a probe that had to fit its whole timeout into the slack never went, so the unit was never
/// read again (found by tests/chaos.rs: three of four meters on a gateway stopped for good after
/// a blackhole). Probed with the slack as its timeout, it is read again within a few back-offs,
/// and the neighbour keeps its schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_that_comes_back_is_read_again_though_the_line_never_idles_for_its_timeout() {
    let bank = Bank::default();
    let (addr, _server) = start_tcp(bank.clone(), "127.0.0.1:0".parse().unwrap()).await;
    for unit in 1..=2u8 {
        bank.set(unit, 0, 0, 7.0, DataType::F32, WordOrder::Abcd);
    }
    bank.behave(2, Behaviour::Silent);
    let mut text = String::from(PARK);
    for (unit, interval) in [(1, 100), (2, 500)] {
        text.push_str(&format!(
            "[[meters]]\nid = \"m{unit}\"\nsite = \"s\"\nchannels = [{{ id = \"p\", kind = \"gauge\", unit = \"kW\" }}]\n\
             [[modbus.devices]]\nmeter = \"m{unit}\"\ntcp = \"{addr}\"\nunit_id = {unit}\npoll_interval_ms = {interval}\ntimeout_ms = 300\nretries = 0\n\
             [[modbus.devices.registers]]\nchannel = \"p\"\nfunction = \"holding\"\naddress = 0\naddress_base = 0\ntype = \"f32\"\nunit = \"kW\"\n"
        ));
    }
    let cfg = parse(&text);
    let back_at = chrono::Utc::now().timestamp_millis() + 2_000;
    let flip = bank.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        flip.behave(2, Behaviour::Normal);
    });
    let (readings, _source, _) = collect(&cfg, Duration::from_millis(7_000)).await;
    let m2: Vec<i64> = readings
        .iter()
        .filter(|r| r.meter == "m2")
        .map(|r| r.ts_ms)
        .collect();
    // Two failures back it off 500 ms x 2^k with jitter: its first probe after coming back is
    // due within about 2 s, then it is polled every 500 ms again.
    assert!(
        m2.iter().any(|&t| t > back_at),
        "m2 was not read again in the 5 s after it came back"
    );
    assert!(
        m2.iter().filter(|&&t| t > back_at + 3_000).count() >= 3,
        "m2 not back on its 500 ms schedule: {m2:?}"
    );
    let m1: Vec<i64> = readings
        .iter()
        .filter(|r| r.meter == "m1")
        .map(|r| r.ts_ms)
        .collect();
    // The one wait m1 may see: m2's first timeout, while m2 was still believed healthy (300 ms
    // plus its own 100 ms). Every later probe of m2 fits the slack.
    let gaps: Vec<i64> = m1.windows(2).map(|w| w[1] - w[0]).collect();
    let long: Vec<i64> = gaps.iter().copied().filter(|&g| g > 250).collect();
    assert!(
        long.len() <= 1 && long.iter().all(|&g| g <= 500),
        "m1 (every 100 ms) waited {long:?} ms"
    );
}
