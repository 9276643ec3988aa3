//! No secret appears anywhere a person or a collector reads: planted secrets of every kind (an
//! InfluxDB token given inline, by file and by environment variable, an MQTT password) are
//! grepped for in `check`'s output, the daemon's log at debug level, `/metrics` and the outbox
//! files, while the daemon talks to a broker and to an InfluxDB endpoint that answers 401.

mod common;
#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/victoria.rs"]
mod victoria;

use common::Kill;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN_INLINE: &str = "tok-inline-7d1f2a";
const TOKEN_FILE: &str = "tok-file-93be44";
const TOKEN_ENV: &str = "tok-env-c0ffee";
const MQTT_PASSWORD: &str = "mqpw-5ecr3t-81";

fn config(
    dir: &std::path::Path,
    mqtt_port: u16,
    influx_url: &str,
    token_line: &str,
    client_id: &str,
) -> String {
    format!(
        "[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"factory\"\n\
         [[meters]]\nid = \"m\"\nsite = \"s\"\nchannels = [{{ id = \"e\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 1e6 }}]\n\
         [store]\npath = \"{dir}/s.db\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nclient_id = \"{client_id}\"\nusername = \"u\"\npassword = \"{MQTT_PASSWORD}\"\n\
         [[mqtt.subscriptions]]\ntopic = \"p/{{meter}}\"\ndecoder = \"json\"\nfields = {{ e = \"/kwh\" }}\n\
         [influx]\nurl = \"{influx_url}\"\norg = \"o\"\nbucket = \"b\"\nflush_interval_ms = 50\nauth_retry_s = 1\n{token_line}\n\
         [influx.outbox]\ndir = \"{dir}/outbox\"\n",
        dir = dir.display(),
        metrics = mosquitto::free_port(),
    )
}

fn assert_clean(what: &str, text: &str) {
    for secret in [TOKEN_INLINE, TOKEN_FILE, TOKEN_ENV, MQTT_PASSWORD] {
        assert!(
            !text.contains(secret),
            "{what} shows a secret `{secret}`:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_check_logs_metrics_or_outbox() {
    let broker = mosquitto::Mosquitto::start();
    let vm = victoria::Victoria::start();
    // InfluxDB answers 401 to everything: the daemon logs its refusal.
    let proxy = fault_proxy::FaultProxy::start(
        format!("127.0.0.1:{}", vm.port),
        Box::new(|_, _| Some((401, Vec::new(), "{\"code\":\"unauthorized\"}".into()))),
    )
    .await;
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN_FILE).unwrap();
    for (kind, line) in [
        ("inline", format!("token = \"{TOKEN_INLINE}\"")),
        ("file", format!("token_file = \"{}\"", token_file.display())),
        ("env", "token_env = \"ECOGATE_TEST_TOKEN\"".to_string()),
    ] {
        let sub = dir.path().join(kind);
        std::fs::create_dir_all(&sub).unwrap();
        let cfg_path = sub.join("ecogate.toml");
        let text = config(
            &sub,
            broker.port,
            &url,
            &line,
            &format!("ecogate-secrets-{kind}"),
        );
        std::fs::write(&cfg_path, &text).unwrap();
        let metrics_port: u16 = text
            .split("listen = \"127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .parse()
            .unwrap();

        let check = Command::new(env!("CARGO_BIN_EXE_ecogate"))
            .args(["check", "--config", cfg_path.to_str().unwrap()])
            .env("ECOGATE_TEST_TOKEN", TOKEN_ENV)
            .output()
            .unwrap();
        assert!(check.status.success(), "{check:?}");
        assert_clean("check", &String::from_utf8_lossy(&check.stdout));
        assert_clean("check", &String::from_utf8_lossy(&check.stderr));

        let log = sub.join("run.log");
        let child = Kill(
            Command::new(env!("CARGO_BIN_EXE_ecogate"))
                .args(["run", "--config", cfg_path.to_str().unwrap()])
                .env("ECOGATE_TEST_TOKEN", TOKEN_ENV)
                .env("ECOGATE_LOG", "debug")
                .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
                .spawn()
                .unwrap(),
        );
        // Subscribed first (a new session keeps nothing published before it).
        let ready = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Subscribe. Topics")
        {
            assert!(Instant::now() < ready, "the daemon never subscribed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The SUBSCRIBE is out; give the broker a moment to take it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Two readings over MQTT, so that something goes to the outbox and meets the 401.
        mosquitto::publish_qos1(
            broker.port,
            &format!("secrets-pub-{kind}"),
            vec![
                ("p/m".into(), br#"{"kwh":1}"#.to_vec()),
                ("p/m".into(), br#"{"kwh":2}"#.to_vec()),
            ],
            Duration::from_secs(20),
            || {},
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let metrics = loop {
            let body = victoria::http_get(metrics_port, "/metrics").unwrap_or_default();
            let logged = std::fs::read_to_string(&log).unwrap_or_default();
            if body.contains("ecogate_influx") && logged.contains("write refused") {
                break body;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon never met the 401: {} requests\n{logged}",
                proxy.seen().len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        drop(child);
        assert_clean("/metrics", &metrics);
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains("write refused"), "{logged}");
        // A log file gets no terminal colour codes.
        assert!(!logged.contains('\u{1b}'), "colour codes in the log file");
        assert_clean("the log", &logged);
        for entry in std::fs::read_dir(sub.join("outbox")).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert_clean("the outbox", &String::from_utf8_lossy(&bytes));
        }
    }
}
