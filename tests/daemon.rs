//! The daemon's shape: the pipeline thread batches envelopes and acknowledges them only after
//! commit; `ecogate run` starts, holds and stops cleanly on SIGTERM.

mod common;

use common::*;
use ecogate::accounting::ledger::Entity;
use ecogate::accounting::metric::Metric;
use ecogate::accounting::window::WindowKind;
use ecogate::pipeline::{self, Envelope};
use ecogate::sinks::store::Store;
use std::time::{Duration, Instant};

/// The `grid` meter's import over all time, read from the store through a connection of its own.
fn grid_import_kwh(cfg: &std::sync::Arc<ecogate::config::Config>, path: &std::path::Path) -> f64 {
    let store = Store::open(path).unwrap();
    let acct = ecogate::accounting::Accountant::new(cfg.clone());
    store
        .sums(&acct, WindowKind::Year, Entity::Meter(0), 0, i64::MAX)
        .unwrap()
        .get(Metric::GridImportKwh)
}

#[test]
fn envelopes_are_acknowledged_after_they_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let cfg = config(FACTORY);
    let handle = pipeline::spawn(pipeline(&cfg, &path), cfg.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut acks = Vec::new();
        // 100 envelopes of one reading each: +1 kWh every 15 minutes, ending now (recent, so
        // the pipeline's retention pass keeps them).
        let start_ms = chrono::Utc::now().timestamp_millis() - 100 * 900_000;
        for i in 0..100 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let r = reading(
                "grid",
                "import",
                1_000.0 + i as f64,
                "kWh",
                "2024-01-01T00:00:00Z",
            );
            let r = ecogate::reading::Reading {
                ts_ms: start_ms + i * 900_000,
                ..r
            };
            handle
                .tx
                .send(Envelope {
                    readings: vec![r],
                    ack: Some(tx.into()),
                    commit_now: false,
                })
                .await
                .unwrap();
            acks.push(rx);
        }
        for ack in acks {
            tokio::time::timeout(Duration::from_secs(10), ack)
                .await
                .unwrap()
                .unwrap();
        }
    });
    // Every acknowledged reading is in the store, read through a separate connection:
    // 99 deltas of 1 kWh after the baseline.
    assert_eq!(grid_import_kwh(&cfg, &path), 99.0);
    let count = Store::open(&path).unwrap().reading_count().unwrap();
    assert_eq!(count, 100);
    drop(handle.tx);
    handle.join.join().unwrap();
}

/// Sends one envelope without an acknowledgement (as Modbus and MQTT QoS 0 do) of `n` readings
/// of the `grid` import counter, +1 kWh each, one a second from `start_ms`, and returns how long
/// until the store, read through a connection of its own, holds `expect` readings. One envelope,
/// so that no pause in the sending can split it.
fn send_and_time(
    rt: &tokio::runtime::Runtime,
    tx: &tokio::sync::mpsc::Sender<Envelope>,
    path: &std::path::Path,
    first_kwh: f64,
    n: usize,
    start_ms: i64,
    expect: i64,
) -> Duration {
    let readings = (0..n)
        .map(|i| ecogate::reading::Reading {
            ts_ms: start_ms + i as i64 * 1000,
            ..reading(
                "grid",
                "import",
                first_kwh + i as f64,
                "kWh",
                "2024-01-01T00:00:00Z",
            )
        })
        .collect();
    let sent = Instant::now();
    rt.block_on(tx.send(Envelope {
        readings,
        ack: None,
        commit_now: false,
    }))
    .unwrap();
    let store = Store::open(path).unwrap();
    while store.reading_count().unwrap() < expect {
        assert!(
            sent.elapsed() < Duration::from_secs(30),
            "not committed in 30 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    sent.elapsed()
}

#[test]
fn a_stream_commits_at_its_end_and_a_trickle_waits_for_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    // A 4 s commit interval: long enough that a commit at a pause cannot be mistaken for one at
    // the interval's end.
    let cfg = config(&format!(
        "{FACTORY}\n[store]\npath = \"{}\"\ncommit_interval_ms = 4000\n",
        path.display()
    ));
    let handle = pipeline::spawn(pipeline(&cfg, &path), cfg.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start_ms = chrono::Utc::now().timestamp_millis() - 10_000_000;
    let time = |first_kwh, n, offset_ms, expect| {
        send_and_time(
            &rt,
            &handle.tx,
            &path,
            first_kwh,
            n,
            start_ms + offset_ms,
            expect,
        )
    };
    // A burst of 3,000 readings (more than the 1,024 that make a batch worth committing at a
    // pause) is in the store 20 ms after it ends, not 4 s after it began.
    let burst = time(1_000.0, 3_000, 0, 3_000);
    assert!(
        burst < Duration::from_secs(2),
        "burst committed after {burst:?}"
    );
    // The next batch, however small, is the tail of that stream: committed at the first pause.
    let tail = time(4_000.0, 5, 3_000_000, 3_005);
    assert!(
        tail < Duration::from_secs(2),
        "tail committed after {tail:?}"
    );
    // After a small batch the stream is over: a trickle waits for the interval.
    let trickle = time(4_005.0, 5, 4_000_000, 3_010);
    assert!(
        trickle >= Duration::from_millis(3_900),
        "trickle committed after {trickle:?}, before the interval"
    );
    drop(handle.tx);
    handle.join.join().unwrap();
    // 3,000 + 5 + 5 readings of one counter, +1 kWh each after the first: 3,009 kWh.
    assert_eq!(grid_import_kwh(&cfg, &path), 3_009.0);
}

#[test]
fn run_starts_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("run.db");
    let text = std::fs::read_to_string("config/ecogate.example.toml")
        .unwrap()
        .replace(
            "path = \"data/ecogate.db\"",
            &format!("path = \"{}\"", store.display()),
        );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!("{text}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let cfg_path = dir.path().join("ecogate.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ecogate"))
        .args(["run", "--config", cfg_path.to_str().unwrap()])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !store.exists() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(store.exists(), "the store was not created");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "ecogate run exited early"
    );
    // The daemon serves /metrics on the configured loopback port.
    let mut conn = (0..100)
        .find_map(|_| {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map_err(|_| std::thread::sleep(Duration::from_millis(50)))
                .ok()
        })
        .expect("/metrics is served");
    use std::io::{Read, Write};
    conn.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("ecogate_firm_land_mu{firm=\"hengda-motors\"} 120"),
        "{body}"
    );
    // Year-to-date CO2 comes from the store at scrape time (an empty store: 0).
    assert!(
        body.contains("ecogate_firm_co2_year_to_date_kg{firm=\"hengda-motors\"} 0"),
        "{body}"
    );
    // Which build runs, and the process's own figures read from /proc.
    assert!(
        body.contains("ecogate_build_info{arch=\"x86_64\",os=\"linux\",version=\"0.1.0\"} 1")
            || body
                .contains("ecogate_build_info{arch=\"aarch64\",os=\"linux\",version=\"0.1.0\"} 1"),
        "{body}"
    );
    for family in [
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_cpu_seconds_total ",
    ] {
        assert!(body.contains(family), "{family} missing: {body}");
    }
    // Alive, and ready: the store takes commits (no live source here to wait for).
    let (status, body) = http(port, "GET", "/healthz");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
    let (status, body) = http(port, "HEAD", "/healthz");
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", ""));
    let (status, body) = http(port, "GET", "/readyz");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert_eq!(body, "ok   store: takes commits\n");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "ecogate run did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// (status line, body) of one request to the daemon's listener.
fn http(port: u16, method: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// A broker that accepts the connection and never answers: /readyz says 503 and why, /healthz
/// stays 200 (the process is alive; restarting it would not help).
#[test]
fn readyz_is_503_with_the_reason_while_the_broker_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    // Held for the whole test: connections queue in its backlog and never get a CONNACK.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let broker_port = silent.local_addr().unwrap().port();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let text = format!(
        "[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"charging_station\"\n\
         [[meters]]\nid = \"c0\"\nsite = \"s\"\nchannels = [{{ id = \"delivered\", carrier = \"charging_delivered\", kind = \"counter\", unit = \"Wh\", max_rate_per_hour = 1000000 }}]\n\
         [store]\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {broker_port}\nclient_id = \"readyz\"\n\
         [[mqtt.subscriptions]]\ntopic = \"park/{{meter}}/energy\"\ndecoder = \"json\"\nfields = {{ delivered = \"/wh\" }}\n",
        dir.path().join("store.db").display()
    );
    let cfg_path = dir.path().join("ecogate.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let _child = run_daemon(&cfg_path);
    wait_for_port(port);
    let (status, body) = http(port, "GET", "/readyz");
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{body}");
    assert_eq!(
        body,
        format!("ok   store: takes commits\nFAIL mqtt: not connected to 127.0.0.1:{broker_port}\n")
    );
    let (status, _) = http(port, "HEAD", "/readyz");
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    let (status, _) = http(port, "GET", "/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK");
    drop(silent);
}

/// Listening beyond loopback, the status pages and /metrics ask for the token ([metrics]
/// token_file); the probes do not. The token is never printed by `check`.
#[test]
fn a_token_guards_the_pages_and_metrics_but_not_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let token = "s3cret-status-token-4711";
    std::fs::write(dir.path().join("status.token"), format!("{token}\n")).unwrap();
    let text = std::fs::read_to_string("config/ecogate.example.toml")
        .unwrap()
        .replace(
            "path = \"data/ecogate.db\"",
            &format!("path = \"{}\"", dir.path().join("s.db").display()),
        );
    let text = format!(
        "{text}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"status.token\"\n"
    );
    let cfg_path = dir.path().join("ecogate.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let (code, out, err) = ecogate(&["check", "--config", cfg_path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(token) && !err.contains(token));
    let _child = run_daemon(&cfg_path);
    wait_for_port(port);
    for path in ["/", "/metrics", "/meters", "/firm/hengda-motors"] {
        assert_eq!(
            http(port, "GET", path).0,
            "HTTP/1.1 401 Unauthorized",
            "{path}"
        );
        assert_eq!(
            http(port, "GET", &format!("{path}?token=wrong-token-000000000")).0,
            "HTTP/1.1 401 Unauthorized"
        );
    }
    assert_eq!(http(port, "GET", "/healthz").0, "HTTP/1.1 200 OK");
    assert_eq!(http(port, "GET", "/readyz").0, "HTTP/1.1 200 OK");
    let (status, body) = http(port, "GET", &format!("/?token={token}"));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("恒达电机有限公司"), "{body}");
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(!text.contains(token));
}
