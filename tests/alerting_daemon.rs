//! In-daemon alerting: `ecogate run` evaluates the high-emission conditions from its store and
//! posts Alertmanager-compatible events to a webhook, once per state change.

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/webhook.rs"]
mod webhook;

use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_emission_conditions_are_posted_once() {
    let (hook_port, got) = webhook::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg_path, bin) = prepare(
        &dir,
        &format!("webhook_url = \"http://127.0.0.1:{hook_port}/hook\""),
        "",
    );
    let mut child = Command::new(bin)
        .args(["run", "--config", cfg_path.to_str().unwrap()])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Three more evaluations: nothing is repeated.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let alerts = got.lock().unwrap().clone();
    let names: Vec<(String, String)> = alerts
        .iter()
        .map(|a| {
            let l = &a["labels"];
            (
                format!(
                    "{} {}",
                    a["status"].as_str().unwrap(),
                    l["alertname"].as_str().unwrap()
                ),
                l["firm"]
                    .as_str()
                    .or(l["site"].as_str())
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            (
                "firing EcogateFirmCarbonBudgetAtRisk".to_string(),
                "f1".to_string()
            ),
            (
                "firing EcogateFirmCarbonIntensityHigh".to_string(),
                "f1".to_string()
            ),
            (
                "firing EcogateHydrogenAboveLowCarbon".to_string(),
                "h2".to_string()
            ),
        ],
        "{alerts:#?}"
    );
    let intensity = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "EcogateFirmCarbonIntensityHigh")
        .unwrap();
    assert_eq!(
        intensity["annotations"]["summary"],
        "firm f1: 59.0260 above its threshold 1.0000"
    );
    let h2 = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "EcogateHydrogenAboveLowCarbon")
        .unwrap();
    assert_eq!(
        h2["annotations"]["summary"],
        "site h2: 53.6600 above its threshold 14.5100"
    );
}

/// Writes the configuration (one firm over its intensity threshold and budget, one hydrogen site
/// over 14.51 kgCO2e/kg) and replays an hour of readings into its store.
fn prepare(
    dir: &tempfile::TempDir,
    alerting: &str,
    extra: &str,
) -> (std::path::PathBuf, &'static str) {
    let store = dir.path().join("s.db");
    let cfg_path = dir.path().join("ecogate.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[park]\nname = \"P\"\ngrid_factor_year = 2022\n\
             [[firms]]\nid = \"f1\"\nname = \"F1\"\nland_mu = 10\n[firms.stats]\nintensity_threshold_tco2_per_10k_cny = 1.0\ncarbon_budget_tco2 = 1.0\n\
             [[sites]]\nid = \"plant\"\nfirm = \"f1\"\nkind = \"factory\"\n[[sites]]\nid = \"h2\"\nfirm = \"f1\"\nkind = \"hydrogen_site\"\n\
             [[meters]]\nid = \"grid\"\nsite = \"plant\"\nchannels = [{{ id = \"v\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 1e9 }}]\n\
             [[meters]]\nid = \"line\"\nsite = \"plant\"\nchannels = [{{ id = \"v\", carrier = \"production\", kind = \"counter\", unit = \"pcs\", max_rate_per_hour = 1e9, unit_value_cny = 100 }}]\n\
             [[meters]]\nid = \"ely\"\nsite = \"h2\"\nchannels = [{{ id = \"grid\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 1e9 }}, {{ id = \"h2\", carrier = \"hydrogen_produced\", kind = \"counter\", unit = \"kg\", max_rate_per_hour = 1e9 }}]\n\
             [store]\npath = \"{}\"\n[metrics]\nenabled = false\n[alerting]\n{alerting}\ninterval_s = 1\n{extra}",
            store.display()
        ),
    )
    .unwrap();
    // An hour ago and now: the plant imports 10,000 kWh and the firm's electrolyser 1,000 kWh:
    // 11,000 x 0.5366 = 5.9026 t for 10 pieces (1,000 CNY = 0.1 x 10,000 CNY): 59.026 tCO2 per
    // 10,000 CNY > 1.0. The electrolyser site alone: 1,000 kWh = 536.6 kg CO2 for 10 kg H2 =
    // 53.66 kgCO2e/kg > 14.51. Year to date 5.9026 t > any prorated share of a 1 t budget.
    let now = chrono::Utc::now();
    let t0 = (now - chrono::Duration::hours(1)).to_rfc3339();
    let t1 = (now - chrono::Duration::minutes(1)).to_rfc3339();
    let csv = dir.path().join("in.csv");
    std::fs::write(
        &csv,
        format!(
            "timestamp,meter,channel,value,unit\n{t0},grid,v,0,kWh\n{t0},line,v,0,pcs\n{t0},ely,grid,0,kWh\n{t0},ely,h2,0,kg\n\
             {t1},grid,v,10000,kWh\n{t1},line,v,10,pcs\n{t1},ely,grid,1000,kWh\n{t1},ely,h2,10,kg\n"
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_ecogate");
    let out = Command::new(bin)
        .args([
            "replay",
            "--config",
            cfg_path.to_str().unwrap(),
            "--input",
            csv.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cfg_path, bin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_events_are_published_over_mqtt() {
    let broker = mosquitto::Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (cfg_path, bin) = prepare(
        &dir,
        "mqtt_topic = \"park/alerts\"",
        &format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"ecogate-alert-test\"\n",
            broker.port
        ),
    );
    let mut o = rumqttc::MqttOptions::new("alert-listener", "127.0.0.1", broker.port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut ev) = rumqttc::AsyncClient::new(o, 100);
    client
        .subscribe("park/alerts", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) = ev.poll().await {
            break;
        }
    }
    let mut child = Command::new(bin)
        .args(["run", "--config", cfg_path.to_str().unwrap()])
        .spawn()
        .unwrap();
    let mut names = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Keep listening for a while after the third event, to see that nothing repeats.
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        let until = quiet_until.unwrap_or(deadline).min(deadline);
        match tokio::time::timeout_at(until, ev.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                for a in v["alerts"].as_array().unwrap() {
                    names.push(format!(
                        "{} {}",
                        a["status"].as_str().unwrap(),
                        a["labels"]["alertname"].as_str().unwrap()
                    ));
                }
                if names.len() >= 3 && quiet_until.is_none() {
                    quiet_until = Some(tokio::time::Instant::now() + Duration::from_millis(3500));
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    names.sort();
    assert_eq!(
        names,
        vec![
            "firing EcogateFirmCarbonBudgetAtRisk",
            "firing EcogateFirmCarbonIntensityHigh",
            "firing EcogateHydrogenAboveLowCarbon"
        ]
    );
}
