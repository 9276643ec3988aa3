//! End to end with a real Prometheus: `ecogate run` fed over MQTT (mosquitto) and Modbus, scraped
//! by Prometheus with the shipped rules; every PromQL expression in the shipped Grafana
//! dashboards must return data. No panel may reference a metric ecogate does not export.

mod common;
#[path = "common/modbus_sim.rs"]
mod modbus_sim;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/victoria.rs"]
mod victoria;

use common::Kill;
use ecogate::sources::modbus::decode::{DataType, WordOrder};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn http_get(port: u16, path_and_query: &str) -> String {
    // Not listening yet: an empty answer, and the caller waits.
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Prometheus may answer chunked; the JSON is the part between the first { and the last }.
    match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => body[a..=b].to_string(),
        _ => body,
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(port: u16, q: &str) -> serde_json::Value {
    serde_json::from_str(&http_get(
        port,
        &format!("/api/v1/query?query={}", encode(q)),
    ))
    .unwrap_or(serde_json::Value::Null)
}

async fn publish(port: u16, round: u64) {
    let mut o = MqttOptions::new(format!("dash-pub-{round}"), "127.0.0.1", port);
    o.set_inflight(100);
    let (client, mut ev) = AsyncClient::new(o, 100);
    let now = chrono::Utc::now().timestamp_millis();
    let mut msgs = Vec::new();
    // f1 emits far more per CNY than f2. Cumulative values grow with each round.
    for (meter, base, step) in [
        ("f1-grid", 1000.0, 500.0),
        ("f1-gas", 100.0, 80.0),
        ("f1-line", 10.0, 2.0),
        ("f1-pv", 50.0, 40.0),
        ("f2-grid", 1000.0, 50.0),
        ("f2-line", 10.0, 20.0),
        ("h1-grid", 500.0, 550.0),
        ("h1-h2", 5.0, 10.0),
        ("ev1-out", 100.0, 60.0),
        ("ev1-sessions", 1.0, 2.0),
        ("ev1-pv", 10.0, 15.0),
        ("ev1-grid", 200.0, 50.0),
    ] {
        for k in 0..3u64 {
            let v = base + step * (round * 3 + k) as f64;
            let ts = now - (3 - k as i64) * 1000;
            msgs.push((
                format!("park/{meter}"),
                format!("{{\"v\":{v},\"ts\":{ts}}}"),
            ));
        }
    }
    let n = msgs.len();
    tokio::spawn(async move {
        for (t, p) in msgs {
            client.publish(t, QoS::AtLeastOnce, false, p).await.unwrap();
        }
    });
    let mut acked = 0;
    while acked < n {
        if let Ok(Event::Incoming(Packet::PubAck(_))) = ev.poll().await {
            acked += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data() {
    let broker = mosquitto::Mosquitto::start();
    let bank = modbus_sim::Bank::default();
    bank.set(1, 0, 0, 12.5, DataType::F32, WordOrder::Abcd);
    let (mb_addr, _mb) = modbus_sim::start_tcp(bank, "127.0.0.1:0".parse().unwrap()).await;
    let vm = victoria::Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = mosquitto::free_port();
    let counter = |id: &str, carrier: &str, unit: &str, extra: &str| {
        format!("{{ id = \"{id}\", carrier = \"{carrier}\", kind = \"counter\", unit = \"{unit}\", max_rate_per_hour = 1e9{extra} }}")
    };
    let meter = |id: &str, site: &str, ch: String| {
        format!("[[meters]]\nid = \"{id}\"\nsite = \"{site}\"\nchannels = [{ch}]\n")
    };
    let mut cfg = String::from(
        "[park]\nname = \"P\"\n[[firms]]\nid = \"f1\"\nname = \"F1\"\nland_mu = 10\n[firms.stats]\nintensity_threshold_tco2_per_10k_cny = 0.5\ncarbon_budget_tco2 = 1000\n\
         [[firms]]\nid = \"f2\"\nname = \"F2\"\nland_mu = 20\n[firms.stats]\nintensity_threshold_tco2_per_10k_cny = 0.5\n\
         [[sites]]\nid = \"s1\"\nfirm = \"f1\"\nkind = \"factory\"\n[[sites]]\nid = \"s2\"\nfirm = \"f2\"\nkind = \"factory\"\n\
         [[sites]]\nid = \"h1\"\nfirm = \"f1\"\nkind = \"hydrogen_site\"\n[[sites]]\nid = \"ev1\"\nfirm = \"f2\"\nkind = \"charging_station\"\n",
    );
    cfg += &meter("f1-grid", "s1", counter("v", "grid_import", "kWh", ""));
    cfg += &meter("f1-gas", "s1", counter("v", "natural_gas", "Nm3", ""));
    cfg += &meter(
        "f1-line",
        "s1",
        counter("v", "production", "pcs", ", unit_value_cny = 100"),
    );
    cfg += &meter("f1-pv", "s1", counter("v", "pv_generation", "kWh", ""));
    cfg += &meter("f2-grid", "s2", counter("v", "grid_import", "kWh", ""));
    cfg += &meter(
        "f2-line",
        "s2",
        counter("v", "production", "pcs", ", unit_value_cny = 100"),
    );
    cfg += &meter("h1-grid", "h1", counter("v", "grid_import", "kWh", ""));
    cfg += &meter("h1-h2", "h1", counter("v", "hydrogen_produced", "kg", ""));
    cfg += &meter(
        "ev1-out",
        "ev1",
        counter("v", "charging_delivered", "kWh", ""),
    );
    cfg += &meter(
        "ev1-sessions",
        "ev1",
        counter("v", "charging_sessions", "session", ""),
    );
    cfg += &meter("ev1-pv", "ev1", counter("v", "pv_generation", "kWh", ""));
    cfg += &meter("ev1-grid", "ev1", counter("v", "grid_import", "kWh", ""));
    cfg += &meter(
        "mb",
        "s1",
        "{ id = \"p\", kind = \"gauge\", unit = \"kW\" }".into(),
    );
    cfg += &format!(
        "[store]\npath = \"{}/s.db\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"ecogate-dashboards\"\n\
         [[mqtt.subscriptions]]\ntopic = \"park/{{meter}}\"\ndecoder = \"json\"\nfields = {{ v = \"/v\" }}\ntimestamp = \"/ts\"\n\
         [[modbus.devices]]\nmeter = \"mb\"\ntcp = \"{mb_addr}\"\npoll_interval_ms = 500\n\
         [[modbus.devices.registers]]\nchannel = \"p\"\nfunction = \"holding\"\naddress = 0\naddress_base = 0\ntype = \"f32\"\nunit = \"kW\"\n\
         [influx]\nurl = \"{}\"\norg = \"o\"\nbucket = \"b\"\n\
         [tariff]\nprices_cny_per_kwh = {{ sharp = 1.2, peak = 1.0, flat = 0.6, valley = 0.3 }}\n\
         [[tariff.seasons]]\nmonths = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]\npeak = [\"16:00-24:00\"]\nvalley = [\"00:00-07:00\"]\n\
         [tariff.demand]\ncontract_kw = 100\n",
        dir.path().display(),
        broker.port,
        vm.url()
    );
    let cfg_path = dir.path().join("ecogate.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let _ecogate = Kill(
        Command::new(env!("CARGO_BIN_EXE_ecogate"))
            .args(["run", "--config", cfg_path.to_str().unwrap()])
            .env("ECOGATE_LOG", "error")
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    publish(broker.port, 0).await;

    let prom_port = mosquitto::free_port();
    let rules = std::fs::canonicalize("deploy/prometheus/ecogate.rules.yml").unwrap();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: ecogate\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let _prometheus = Kill(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!("--storage.tsdb.path={}/prom", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus must be installed (scripts/test.sh installs it)"),
    );
    // Scrapes before and after a second round of readings, so that increase() sees them grow.
    let started = Instant::now();
    while query(prom_port, "ecogate_firm_land_mu")["data"]["result"]
        .as_array()
        .is_none_or(|r| r.is_empty())
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Prometheus never scraped ecogate"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    publish(broker.port, 1).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut checked = 0;
    let mut empty = Vec::new();
    for file in [
        "deploy/grafana/dashboards/park-overview.json",
        "deploy/grafana/dashboards/gateway-health.json",
        "deploy/grafana/dashboards/firm-detail.json",
        "deploy/grafana/dashboards/hydrogen-charging.json",
    ] {
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for panel in dash["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                // Template variables take a configured value, as Grafana would fill them.
                let expr = &target["expr"].as_str().unwrap().replace("$firm", "f1");
                let answer = query(prom_port, expr);
                assert_eq!(answer["status"], "success", "{file}: `{expr}`: {answer}");
                if answer["data"]["result"]
                    .as_array()
                    .is_none_or(|r| r.is_empty())
                {
                    empty.push(format!("{file} / {}: {expr}", panel["title"]));
                }
                checked += 1;
            }
        }
    }
    assert!(
        empty.is_empty(),
        "queries with no data:\n{}",
        empty.join("\n")
    );
    assert!(checked >= 45, "{checked} expressions checked");
    // h1 imports 550 kWh per 10 kg: 550 x 0.5306 / 10 = 29.2 kgCO2e/kg: conventional (3).
    let class = query(prom_port, "ecogate_site_hydrogen_class{site=\"h1\"}");
    assert_eq!(class["data"]["result"][0]["value"][1], "3", "{class}");
    // The high-emission firm is above its threshold in the recorded intensity.
    let f1 = query(
        prom_port,
        "ecogate:firm_carbon_intensity_tco2_per_10k_cny:1d{firm=\"f1\"}",
    );
    let v: f64 = f1["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(v > 0.5, "f1 intensity {v}");
}
