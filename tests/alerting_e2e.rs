//! The alert path end to end: `ecogate run` fed over MQTT with a high-emission firm, a real
//! Prometheus evaluating the shipped intensity rule (windows shortened for the test), a real
//! Alertmanager, and a webhook receiver here. The alert must fire for that firm only, then
//! resolve when its figures fall back, without repeats.

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/webhook.rs"]
mod webhook;

use common::Kill;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_emission_alert_fires_and_resolves() {
    let broker = mosquitto::Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = mosquitto::free_port();
    let mut cfg = String::from("[park]\nname = \"P\"\n");
    for f in ["f1", "f2"] {
        cfg += &format!(
            "[[firms]]\nid = \"{f}\"\nname = \"{f}\"\nland_mu = 10\n[firms.stats]\nintensity_threshold_tco2_per_10k_cny = 1.0\n\
             [[sites]]\nid = \"{f}-s\"\nfirm = \"{f}\"\nkind = \"factory\"\n\
             [[meters]]\nid = \"{f}-grid\"\nsite = \"{f}-s\"\nchannels = [{{ id = \"v\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 1e9 }}]\n\
             [[meters]]\nid = \"{f}-line\"\nsite = \"{f}-s\"\nchannels = [{{ id = \"v\", carrier = \"production\", kind = \"counter\", unit = \"pcs\", max_rate_per_hour = 1e9, unit_value_cny = 100 }}]\n"
        );
    }
    cfg += &format!(
        "[store]\npath = \"{}/s.db\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"ecogate-alerting\"\n\
         [[mqtt.subscriptions]]\ntopic = \"park/{{meter}}\"\ndecoder = \"json\"\nfields = {{ v = \"/v\" }}\ntimestamp = \"/ts\"\n",
        dir.path().display(),
        broker.port
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

    // Webhook receiver, Alertmanager, Prometheus.
    let (hook_port, got) = webhook::start().await;
    let am_port = mosquitto::free_port();
    let am_cfg = dir.path().join("am.yml");
    std::fs::write(
        &am_cfg,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname, firm]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook_port}/\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let _am = Kill(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", am_cfg.display()))
            .arg(format!("--storage.path={}/am", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager must be installed (scripts/test.sh installs it)"),
    );
    // The shipped rule, with its one-day window and two-hour hold shortened to test time.
    let rules = std::fs::read_to_string("deploy/prometheus/ecogate.rules.yml")
        .unwrap()
        .replace("[1d]", "[15s]")
        .replace("for: 2h", "for: 3s");
    let rules_path = dir.path().join("rules.yml");
    std::fs::write(&rules_path, rules).unwrap();
    let prom_port = mosquitto::free_port();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n\
             scrape_configs:\n  - job_name: ecogate\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n",
            rules_path.display()
        ),
    )
    .unwrap();
    let _prom = Kill(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!("--storage.tsdb.path={}/prom", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Readings every 500 ms. Each step f1 imports 500 kWh (0.5366 kg/kWh by default: 268 kg) for
    // 1 piece (100 CNY): 0.268 t per 0.01 units of 10,000 CNY = 26.8 tCO2 per 10,000 CNY, far
    // above its threshold of 1.0; f2 imports 1 kWh per piece: 0.0537, below. After the switch
    // f1 also imports 1 kWh per piece.
    let high = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut o = MqttOptions::new("alerting-publisher", "127.0.0.1", broker.port);
    o.set_inflight(100);
    let (client, mut ev) = AsyncClient::new(o, 100);
    // Drive the publisher's event loop for the whole test, riding out any hiccup.
    tokio::spawn(async move {
        loop {
            if ev.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let h = high.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (mut f1_kwh, mut f2_kwh, mut pcs) = (1000.0, 1000.0, 0.0);
        loop {
            f1_kwh += if h.load(std::sync::atomic::Ordering::Relaxed) {
                500.0
            } else {
                1.0
            };
            f2_kwh += 1.0;
            pcs += 1.0;
            let ts = chrono::Utc::now().timestamp_millis();
            for (m, v) in [
                ("f1-grid", f1_kwh),
                ("f2-grid", f2_kwh),
                ("f1-line", pcs),
                ("f2-line", pcs),
            ] {
                let _ = client
                    .publish(
                        format!("park/{m}"),
                        QoS::AtLeastOnce,
                        false,
                        format!("{{\"v\":{v},\"ts\":{ts}}}"),
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    let wait_for = |status: &'static str, within: Duration| {
        let got = got.clone();
        async move {
            let deadline = Instant::now() + within;
            loop {
                if webhook::summary(&got).iter().any(|(s, a, f)| {
                    s == status && a == "EcogateFirmCarbonIntensityHigh" && f == "f1"
                }) {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let fired_after = Instant::now();
    assert!(
        wait_for("firing", Duration::from_secs(90)).await,
        "no firing alert for f1: {:?}",
        webhook::summary(&got)
    );
    eprintln!(
        "firing reached the webhook after {:.1} s",
        fired_after.elapsed().as_secs_f64()
    );
    high.store(false, std::sync::atomic::Ordering::Relaxed);
    let resolved_after = Instant::now();
    assert!(
        wait_for("resolved", Duration::from_secs(90)).await,
        "no resolved alert for f1: {:?}",
        webhook::summary(&got)
    );
    eprintln!(
        "resolved reached the webhook after {:.1} s",
        resolved_after.elapsed().as_secs_f64()
    );
    let seen = webhook::summary(&got);
    assert!(
        seen.iter().all(|(_, _, f)| f != "f2"),
        "f2 alerted: {seen:?}"
    );
    let firing = seen
        .iter()
        .filter(|(s, a, f)| s == "firing" && a == "EcogateFirmCarbonIntensityHigh" && f == "f1")
        .count();
    assert_eq!(firing, 1, "repeated notifications: {seen:?}");
}
