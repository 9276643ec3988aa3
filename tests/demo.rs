//! `ecogate demo` as a new user runs it: data flows within 30 s, the probes answer, the status
//! pages show the demo's firms and meters in both languages and load in headless Chromium with
//! no console error (screenshots kept in target/screenshots/), the high emitter's alert fires,
//! and SIGTERM stops it cleanly.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> (String, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (String::new(), String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

const FIRMS: &[&str] = &[
    "恒达电机有限公司",
    "晶华玻璃制品有限公司",
    "瑞丰纺织有限公司",
    "芯创电子科技有限公司",
    "博远制药有限公司",
    "华美食品有限公司",
    "绿能充电科技",
    "清和氢能",
];

#[test]
fn the_demo_shows_data_within_30_s_and_its_pages_load_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // An hour of simulated time per second: the glass works' day shift (and its alert) comes
    // within the test's time.
    let mut child = common::Kill(
        Command::new(env!("CARGO_BIN_EXE_ecogate"))
            .args([
                "demo",
                "--speed",
                "3600",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let rx = common::stdout_lines(&mut child.0);
    let mut console = Vec::new();
    // The first summary with readings: "[time] N readings (R/s), meters up U/T, ...".
    let flowing = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30).saturating_sub(started.elapsed()))
            .unwrap_or_else(|_| panic!("no data within 30 s:\n{}", console.join("\n")));
        console.push(line.clone());
        let readings = line
            .split_once("] ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        if readings.is_some_and(|n| n > 0) {
            break started.elapsed();
        }
    };
    eprintln!(
        "data flowing after {:.1} s:\n{}",
        flowing.as_secs_f64(),
        console.join("\n")
    );
    assert!(
        console[0].starts_with(
            "ecogate demo: 8 firms, 17 meters: 6 factories on Modbus TCP gateways at 127.0.0.1:"
        ),
        "{}",
        console[0]
    );
    assert!(console
        .iter()
        .any(|l| l.contains(&format!("status page http://127.0.0.1:{port}/"))));

    assert_eq!(get(port, "/healthz").0, "HTTP/1.1 200 OK");
    // Ready once every source is connected and a Modbus meter answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ready = get(port, "/readyz");
    while ready.0 != "HTTP/1.1 200 OK" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        ready = get(port, "/readyz");
    }
    assert_eq!(ready.0, "HTTP/1.1 200 OK", "{}", ready.1);
    assert!(
        ready.1.contains("ok   modbus: 10 of 10 meters answer"),
        "{}",
        ready.1
    );
    assert!(
        ready
            .1
            .contains("ok   dlt645: 1 of 1 DL/T 645 meters answer"),
        "{}",
        ready.1
    );
    assert!(
        ready.1.contains("ok   mqtt: connected to 127.0.0.1:"),
        "{}",
        ready.1
    );

    // The glass works runs 3,500 kW on 60 M CNY a year: over 24 hours about 2 tCO2 per
    // 10,000 CNY against a threshold of 0.5; it fires once enough of the day is in the store.
    let deadline = Instant::now() + Duration::from_secs(90);
    let overview = loop {
        let (status, body) = get(port, "/");
        let row = body
            .split("<tr>")
            .find(|r| r.contains("晶华玻璃制品有限公司"))
            .unwrap_or("")
            .to_string();
        if status == "HTTP/1.1 200 OK" && row.contains("单位产值碳排放超标") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the glass works' alert did not fire:\n{row}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    for firm in FIRMS {
        assert!(overview.contains(firm), "{firm} not on the overview");
    }
    assert!(
        overview.contains("园区总览") && overview.contains("今日") && overview.contains("本月")
    );
    let (_, en) = get(port, "/?lang=en");
    assert!(
        en.contains("Park overview") && en.contains("carbon intensity over threshold"),
        "{en}"
    );
    let (status, firm) = get(port, "/firm/jinghua-glass");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(firm.contains("最近24小时") && firm.contains("<svg") && firm.contains("jh-main"));
    let (_, meters) = get(port, "/meters");
    assert_eq!(
        meters.matches("<span class=up>在线</span>").count(),
        17,
        "{meters}"
    );
    assert_eq!(get(port, "/firm/nobody").0, "HTTP/1.1 404 Not Found");

    // Headless Chromium: each page loads (nothing fetched beyond it), logs nothing, and its
    // screenshot is kept.
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for (path, file, width) in [
        ("/", "status-overview.zh.png", 1200),
        ("/firm/jinghua-glass?lang=en", "status-firm.en.png", 1200),
        ("/meters", "status-meters.phone.zh.png", 412),
    ] {
        let shot = shots.join(file);
        common::screenshot(
            &format!("http://127.0.0.1:{port}{path}"),
            &shot,
            width,
            1800,
        );
        eprintln!("screenshot: {}", shot.display());
    }

    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
}
