//! `ecogate probe`: a Modbus meter read once against a real tokio-modbus server (by shipped
//! profile without a configuration, and as a configured meter), and an MQTT meter listened to
//! through a real mosquitto.

mod common;
#[path = "common/modbus_sim.rs"]
mod common_sim;
#[path = "common/mosquitto.rs"]
mod mosquitto;

use common_sim::{start_tcp, Bank, Behaviour};
use ecogate::sources::modbus::decode::{DataType, WordOrder};
use std::time::Duration;

async fn run(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::ecogate(&args)
    })
    .await
    .unwrap()
}

fn line<'a>(out: &'a str, starts: &str) -> &'a str {
    out.lines()
        .find(|l| l.trim_start().starts_with(starts))
        .unwrap_or_else(|| panic!("no line starting with {starts:?} in:\n{out}"))
}

/// CHINT DTSU666 at unit 1: import 12,345.5 kWh (f32 0x4640E6 = 0x4640 0xE600), export
/// 67.25 kWh, total power 15,000 x 0.1 = 1,500 W. Unit 7 answers every read with exception 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modbus_meter_is_read_once_with_raw_registers_and_decoded_values() {
    let bank = Bank::default();
    let f32_abcd =
        |bank: &Bank, unit, addr, v| bank.set(unit, 0, addr, v, DataType::F32, WordOrder::Abcd);
    f32_abcd(&bank, 1, 0x101E, 12_345.5);
    f32_abcd(&bank, 1, 0x1028, 67.25);
    f32_abcd(&bank, 1, 0x2012, 15_000.0);
    bank.behave(
        7,
        Behaviour::Exception(tokio_modbus::ExceptionCode::IllegalDataAddress),
    );
    let (addr, _server) = start_tcp(bank, "127.0.0.1:0".parse().unwrap()).await;
    let (code, out, err) = run([
        "probe",
        "--modbus",
        &addr.to_string(),
        "--unit",
        "1",
        "--profile",
        "chint-dtsu666",
    ]
    .map(String::from)
    .to_vec())
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("tcp {addr}, unit 1: connected in")),
        "{out}"
    );
    let import = line(&out, "import_kwh");
    assert!(import.contains("holding 4126 (0x101E)"), "{import}");
    assert!(import.contains("4640 E600"), "{import}");
    assert!(import.contains(" 12345.5 kWh"), "{import}");
    assert!(line(&out, "export_kwh").contains(" 67.25 kWh"), "{out}");
    assert!(line(&out, "power_total_w").contains(" 1500 W"), "{out}");
    // One request per register block the plan coalesced, each timed.
    assert!(out.contains("holding 4126..4137 (12 registers)"), "{out}");

    let (code, out, err) = run([
        "probe",
        "--modbus",
        &addr.to_string(),
        "--unit",
        "7",
        "--profile",
        "chint-dtsu666",
    ]
    .map(String::from)
    .to_vec())
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        line(&out, "import_kwh").contains("refused (exception 2 (illegal_data_address))"),
        "{out}"
    );

    let (code, _, err) = run([
        "probe",
        "--modbus",
        &addr.to_string(),
        "--profile",
        "no-such-meter",
    ]
    .map(String::from)
    .to_vec())
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("no shipped profile `no-such-meter`; shipped: chint-dtsu666"),
        "{err}"
    );
}

/// A configured meter is read as the daemon reads it: its channel names, its CT ratio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_modbus_meter_is_read_with_its_channels() {
    let bank = Bank::default();
    bank.set(3, 0, 0x101E, 1_000.0, DataType::F32, WordOrder::Abcd);
    let (addr, _server) = start_tcp(bank, "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ecogate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"factory\"\n\
             [[meters]]\nid = \"main\"\nsite = \"s\"\nchannels = [{{ id = \"import\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 100000 }}]\n\
             [store]\npath = \"{}\"\n\
             [[modbus.devices]]\nmeter = \"main\"\ntcp = \"{addr}\"\nunit_id = 3\nprofile = \"chint-dtsu666\"\nchannels = {{ import = \"import_kwh\" }}\napply_ratios = true\nct_ratio = 40\n",
            dir.path().join("store.db").display()
        ),
    )
    .unwrap();
    let (code, out, err) = run([
        "probe",
        "--config",
        cfg.to_str().unwrap(),
        "--meter",
        "main",
    ]
    .map(String::from)
    .to_vec())
    .await;
    assert_eq!(code, 0, "{out}{err}");
    // 1,000 kWh on the meter's secondary side x CT 40 = 40,000 kWh.
    assert!(line(&out, "import ").contains(" 40000 kWh"), "{out}");

    let (code, _, err) = run([
        "probe",
        "--config",
        cfg.to_str().unwrap(),
        "--meter",
        "nope",
    ]
    .map(String::from)
    .to_vec())
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("no meter `nope` in the configuration; its meters: main"),
        "{err}"
    );
}

/// An MQTT meter: the probe subscribes with a session of its own and prints c0's messages
/// decoded or refused with the reason; c1's message on the same subscription is not c0's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_meter_is_listened_to_and_each_message_decoded_or_refused() {
    let broker = mosquitto::Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ecogate.toml");
    let mut text = String::from("[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"charging_station\"\n");
    for m in ["c0", "c1"] {
        text.push_str(&format!("[[meters]]\nid = \"{m}\"\nsite = \"s\"\nchannels = [{{ id = \"delivered\", carrier = \"charging_delivered\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 1000 }}]\n"));
    }
    text.push_str(&format!(
        "[store]\npath = \"{}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"probe-test\"\n\
         [[mqtt.subscriptions]]\ntopic = \"p/{{meter}}\"\ndecoder = \"json\"\nfields = {{ delivered = \"/kwh\" }}\ntimestamp = \"/ts\"\n",
        dir.path().join("store.db").display(),
        broker.port
    ));
    std::fs::write(&cfg, text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ecogate"))
        .args([
            "probe",
            "--config",
            cfg.to_str().unwrap(),
            "--meter",
            "c0",
            "--listen-s",
            "4",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rx = common::stdout_lines(&mut child);
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.starts_with("subscribed")) {
        lines.push(
            rx.recv_timeout(Duration::from_secs(10))
                .expect("the probe subscribes"),
        );
    }
    mosquitto::publish_qos1(
        broker.port,
        "probe-publisher",
        vec![
            (
                "p/c0".into(),
                b"{\"kwh\": 10.5, \"ts\": \"2026-11-30T08:00:00+08:00\"}".to_vec(),
            ),
            ("p/c1".into(), b"{\"kwh\": 3}".to_vec()),
            ("p/c0".into(), b"{\"kwh\": \"ten\"}".to_vec()),
        ],
        Duration::from_secs(10),
        || {},
    )
    .await;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    // Until the reader thread has passed on the last line and seen the pipe close.
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(10)) {
        lines.push(l);
    }
    let out = lines.join("\n");
    assert!(status.success(), "{out}");
    assert!(
        out.contains("p/c0 (48 bytes): delivered = 10.5 kWh at 2026-11-30T08:00:00+08:00"),
        "{out}"
    );
    assert!(
        out.contains("p/c0 (14 bytes): refused as wrong_type: {\"kwh\": \"ten\"}"),
        "{out}"
    );
    assert!(!out.contains("p/c1"), "{out}");
    assert!(
        out.contains("2 message(s) for c0: 1 decoded, 1 refused (1 wrong_type)"),
        "{out}"
    );
}
