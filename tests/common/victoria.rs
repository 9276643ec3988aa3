//! A real VictoriaMetrics for tests (Debian package `victoria-metrics`), on a free loopback port
//! with its own data folder. It takes InfluxDB's `/api/v2/write`; points are read back through
//! `/api/v1/export`, exactly as stored.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Victoria {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// One exported series: its labels (with `__name__`) and its samples in time order.
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(i64, f64)>,
}

impl Victoria {
    pub fn start() -> Victoria {
        // The port is free when picked, but another process may take it before the server
        // binds it: then the server exits, and it starts again on another port.
        for _ in 0..5 {
            let mut v = Victoria {
                child: None,
                port: super::mosquitto::free_port(),
                dir: tempfile::tempdir().unwrap(),
            };
            if v.try_spawn() {
                return v;
            }
        }
        panic!("victoria-metrics did not start on any of 5 free ports");
    }

    /// On a given port (to bring the server up where a client already points).
    pub fn start_on(port: u16) -> Victoria {
        let mut v = Victoria {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        v.spawn();
        v
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "victoria-metrics exited at start: port {} is taken by another process",
            self.port
        );
    }

    /// Starts the server and waits until it answers; false if it exited (its port was taken:
    /// a health check answered then would come from someone else's server).
    fn try_spawn(&mut self) -> bool {
        let child = Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", self.dir.path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            // Test data is stamped up to a year back; and read back at once.
            .arg("-retentionPeriod=100y")
            .arg("-search.latencyOffset=0s")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(c) = self.child.as_mut() {
                if c.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return false;
                }
            }
            // Ours only if it names our data folder (a server already on the port answers
            // /health as well).
            let ours = self.dir.path().display().to_string();
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && http_get(self.port, "/health").is_some_and(|b| b.contains("OK"))
                && http_get(self.port, "/flags").is_some_and(|b| b.contains(&ours))
            {
                return true;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "victoria-metrics did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (data kept) for an outage.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Every series matching `selector`, after making recent writes searchable.
    pub fn export(&self, selector: &str) -> Vec<Series> {
        let _ = http_get(self.port, "/internal/force_flush");
        let q: String = url_encode(selector);
        let body = http_get(self.port, &format!("/api/v1/export?match[]={q}")).unwrap_or_default();
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let labels = v["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let ts = v["timestamps"].as_array().unwrap();
                let vals = v["values"].as_array().unwrap();
                let mut samples: Vec<(i64, f64)> = ts
                    .iter()
                    .zip(vals)
                    .map(|(t, x)| (t.as_i64().unwrap(), x.as_f64().unwrap()))
                    .collect();
                samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
                Series { labels, samples }
            })
            .collect()
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An unlabelled sample from the `/metrics` of the ecogate listening on `port`; `None` when it
/// is not served (not started yet) or not there.
pub fn scraped(port: u16, name: &str) -> Option<f64> {
    http_get(port, "/metrics")?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A plain blocking GET; `None` when the server is not there.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        Some(dechunk(body))
    } else {
        Some(body.to_string())
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}
