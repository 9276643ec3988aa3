//! A TCP proxy in front of the real mosquitto that reads the client's MQTT packets as they pass
//! (to see which PUBACKs went out on which connection) and cuts the connection on demand: a fault
//! the broker will not produce while keeping the client's session. Bytes go through unchanged.
//!
//! With a window it also holds the broker's QoS 1 PUBLISHes back while that many wait for the
//! client's PUBACK: a strict in-flight window, as a broker with `max_inflight_messages 20` keeps
//! it. Debian 12's mosquitto 2.0.11 does not: once its first 20 are acknowledged it sends the
//! rest without waiting (seen: 200 messages to a client that acknowledged 20).
//!
//! Its sockets keep Nagle's algorithm on, as mosquitto's do by default (`set_tcp_nodelay
//! false`): after a window's acknowledgements it sends one PUBLISH at once and holds the rest
//! until the client's side acknowledges that one at the TCP level. `start_with(.., true)` models
//! a broker that sends each packet at once.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One packet from the client: the connection it came on (0 for the first), its type (the high
/// nibble of the fixed header) and, for a PUBACK, its packet id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientPacket {
    pub connection: usize,
    pub kind: u8,
    pub pkid: Option<u16>,
}

pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const SUBSCRIBE: u8 = 8;

pub struct MqttProxy {
    pub port: u16,
    /// QoS 1 PUBLISHes the broker sent before the client acknowledged them, at most: the
    /// window the proxy held the flow to, as seen.
    pub max_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    pub seen: Arc<Mutex<Vec<ClientPacket>>>,
    cut: watch::Sender<usize>,
}

impl MqttProxy {
    /// Starts on a free loopback port, forwarding to the broker on `upstream_port`.
    pub async fn start(upstream_port: u16) -> MqttProxy {
        MqttProxy::start_with_window(upstream_port, None).await
    }

    /// As `start`, holding QoS 1 deliveries to a strict in-flight window of `window` messages.
    pub async fn start_with_window(upstream_port: u16, window: Option<usize>) -> MqttProxy {
        MqttProxy::start_with(upstream_port, window, false).await
    }

    /// As `start_with_window`; with `nodelay`, TCP_NODELAY on both sockets.
    pub async fn start_with(upstream_port: u16, window: Option<usize>, nodelay: bool) -> MqttProxy {
        let max_in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let max2 = max_in_flight.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (cut, cut_rx) = watch::channel(0usize);
        let seen2 = seen.clone();
        tokio::spawn(async move {
            let mut connection = 0;
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(broker) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                    continue;
                };
                tokio::spawn(relay(
                    client,
                    broker,
                    connection,
                    seen2.clone(),
                    cut_rx.clone(),
                    Window {
                        size: window,
                        nodelay,
                        max: max2.clone(),
                        ..Window::default()
                    },
                ));
                connection += 1;
            }
        });
        MqttProxy {
            port,
            seen,
            cut,
            max_in_flight,
        }
    }

    /// Closes every connection open now, both ways.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn seen(&self) -> Vec<ClientPacket> {
        self.seen.lock().unwrap().clone()
    }
}

/// A connection's in-flight window (unlimited without a size).
#[derive(Default, Clone)]
struct Window {
    size: Option<usize>,
    nodelay: bool,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    freed: Arc<tokio::sync::Notify>,
    max: Arc<std::sync::atomic::AtomicUsize>,
}

async fn relay(
    client: TcpStream,
    broker: TcpStream,
    connection: usize,
    seen: Arc<Mutex<Vec<ClientPacket>>>,
    mut cut: watch::Receiver<usize>,
    window: Window,
) {
    use std::sync::atomic::Ordering;
    cut.borrow_and_update();
    if window.nodelay {
        let _ = client.set_nodelay(true);
        let _ = broker.set_nodelay(true);
    }
    let (mut client_r, mut client_w) = client.into_split();
    let (mut broker_r, mut broker_w) = broker.into_split();
    let upstream = async {
        let mut parser = Parser::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            for (kind, pkid, _) in parser.feed(&buf[..n]) {
                seen.lock().unwrap().push(ClientPacket {
                    connection,
                    kind,
                    pkid,
                });
                if kind == PUBACK {
                    let _ =
                        window
                            .in_flight
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                                n.checked_sub(1)
                            });
                    window.freed.notify_one();
                }
            }
            if broker_w.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut parser = Parser::default();
        loop {
            let n = match broker_r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let Some(size) = window.size else {
                if client_w.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                continue;
            };
            // Packet by packet, each QoS 1 PUBLISH waiting for a free slot.
            for (kind, _, bytes) in parser.feed(&buf[..n]) {
                if kind == PUBLISH && (bytes[0] >> 1) & 3 == 1 {
                    loop {
                        let freed = window.freed.notified();
                        if window.in_flight.load(Ordering::Acquire) < size {
                            break;
                        }
                        freed.await;
                    }
                    let now = window.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
                    window.max.fetch_max(now, Ordering::AcqRel);
                }
                if client_w.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        }
    };
    // Either direction ending, or a cut, drops both sockets.
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = cut.changed() => {}
    }
}

/// Splits a byte stream into MQTT packets: fixed header, remaining length (a varint), body.
#[derive(Default)]
struct Parser {
    pending: Vec<u8>,
}

impl Parser {
    /// The complete packets so far: type, PUBACK packet id, the packet's bytes.
    fn feed(&mut self, bytes: &[u8]) -> Vec<(u8, Option<u16>, Vec<u8>)> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let p = &self.pending;
            if p.len() < 2 {
                break;
            }
            let (mut len, mut shift, mut i) = (0usize, 0, 1);
            let complete = loop {
                let Some(&b) = p.get(i) else {
                    break false;
                };
                len |= ((b & 0x7f) as usize) << shift;
                i += 1;
                if b & 0x80 == 0 {
                    break true;
                }
                shift += 7;
            };
            if !complete || p.len() < i + len {
                break;
            }
            let kind = p[0] >> 4;
            let pkid = (kind == PUBACK && len >= 2).then(|| u16::from_be_bytes([p[i], p[i + 1]]));
            out.push((kind, pkid, self.pending.drain(..i + len).collect()));
        }
        out
    }
}
