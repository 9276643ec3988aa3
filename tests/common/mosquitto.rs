//! A real mosquitto broker for tests, on a free loopback port, with its own config and data.
//! `user root` keeps it from dropping to the mosquitto user, which could not read the
//! test's private temporary folder (certificates, persistence).

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Extra listeners and settings appended to the configuration.
    extra: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Mosquitto::start_with("")
    }

    /// Starts with extra configuration (e.g. a TLS listener) after the plain listener.
    pub fn start_with(extra: &str) -> Mosquitto {
        // The port is free when picked but not held (mosquitto binds it itself): if something
        // else took it meanwhile, mosquitto exits at once, and another port is tried.
        for _ in 0..5 {
            let mut m = Mosquitto {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().unwrap(),
                extra: extra.to_string(),
            };
            if m.try_spawn() {
                return m;
            }
        }
        panic!("mosquitto did not start on any of 5 ports");
    }

    fn conf(&self) -> PathBuf {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\nlistener {} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
                 autosave_interval 1\n{}log_dest none\n{}",
                self.port,
                self.dir.path().display(),
                // No limits unless the test sets one, or asks for the broker's own defaults
                // (`stock`: 20 in flight, 1,000 queued): the tests count every message.
                [("max_queued_messages", "0"), ("max_inflight_messages", "20000")]
                    .iter()
                    .filter(|(k, _)| !self.extra.contains(k) && !self.extra.contains("stock"))
                    .map(|(k, v)| format!("{k} {v}\n"))
                    .collect::<String>(),
                self.extra.replace("stock\n", "")
            ),
        )
        .unwrap();
        conf
    }

    fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "mosquitto did not start on port {}",
            self.port
        );
    }

    /// Starts mosquitto and waits until it accepts connections; false if it exited (its port
    /// was taken).
    fn try_spawn(&mut self) -> bool {
        let conf = self.conf();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(c) = self.child.as_mut() {
                if c.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return false;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The broker's process id (benchmarks read its CPU time from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the broker gracefully (it saves its persistence file) and starts it again.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Publishes every message with QoS 1 (persistent session, so a broker restart mid-stream is
/// ridden out) and waits until the broker has acknowledged them all, for at most `limit`;
/// calls `midway` once half are acknowledged.
pub async fn publish_qos1(
    port: u16,
    client_id: &str,
    messages: Vec<(String, Vec<u8>)>,
    limit: Duration,
    midway: impl FnOnce() + Send + 'static,
) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_clean_session(false)
        .set_inflight(200)
        .set_request_channel_capacity(1000);
    let (client, mut ev) = AsyncClient::new(o, 1000);
    let total = messages.len();
    tokio::spawn(async move {
        for (topic, payload) in messages {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    });
    let mut acked = 0;
    let mut midway = Some(midway);
    let deadline = Instant::now() + limit;
    while acked < total {
        assert!(
            Instant::now() < deadline,
            "publisher: {acked}/{total} acknowledged"
        );
        match ev.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked += 1;
                if acked == total / 2 {
                    if let Some(f) = midway.take() {
                        f();
                    }
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
