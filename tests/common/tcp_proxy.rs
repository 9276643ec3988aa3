//! A TCP proxy for the fault suite, in front of a real server (the Modbus gateway, the InfluxDB
//! endpoint). On demand it adds latency to every chunk, stalls (a blackhole: bytes are taken
//! and held, nothing comes back, as on a link that drops every packet; they go on once it
//! heals, as TCP's retransmission would), or resets every open connection.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Pass,
    /// Every chunk, either way, waits this long.
    Latency(Duration),
    /// Nothing moves; new connections wait too.
    Blackhole,
}

struct Shared {
    mode: Mutex<Mode>,
    resets: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }

    /// Waits while the link is down; false if a reset came meanwhile.
    async fn wait_up(&self, resets: &mut tokio::sync::watch::Receiver<u64>) -> bool {
        while self.mode() == Mode::Blackhole {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = resets.changed() => return false,
            }
        }
        true
    }
}

pub struct TcpProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl TcpProxy {
    /// Listens on a free loopback port (held from bind to the end), forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            resets: tokio::sync::watch::channel(0).0,
        });
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, upstream, s.clone()));
            }
        });
        TcpProxy { port, shared }
    }

    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Resets every open connection (the client sees a TCP RST).
    pub fn reset(&self) {
        self.shared.resets.send_modify(|n| *n += 1);
    }
}

async fn serve(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut resets = shared.resets.subscribe();
    if !shared.wait_up(&mut resets).await {
        let _ = client.set_zero_linger();
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let reset = tokio::select! {
        _ = pump(&mut cr, &mut sw, &shared) => false,
        _ = pump(&mut sr, &mut cw, &shared) => false,
        _ = resets.changed() => true,
    };
    if reset {
        let _ = cr.as_ref().set_zero_linger();
        let _ = sr.as_ref().set_zero_linger();
    }
}

async fn pump(r: &mut OwnedReadHalf, w: &mut OwnedWriteHalf, shared: &Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            match shared.mode() {
                Mode::Pass => break,
                Mode::Latency(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Mode::Blackhole => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
