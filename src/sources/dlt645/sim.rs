//! A simulated DL/T 645 line: meters that answer reads as real ones do (preamble, scrambled
//! data, error replies for what they do not hold), behind a TCP listener (a transparent serial
//! server) or on any byte stream (one end of a pseudo-terminal pair). For tests and
//! `ecogate demo`; it shares the frame codec with the poller, so the tests that matter for the
//! codec use frames written by hand and by other implementations (frame/tests.rs).

use super::data;
use super::frame::{self, Address, Decoded};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// One simulated meter's registers and behaviour.
#[derive(Debug, Clone)]
pub struct SimMeter {
    pub address: Address,
    /// Values by quantity name, in the quantity's unit.
    pub values: HashMap<&'static str, f64>,
    /// The maximum demand's time, YYMMDDhhmm as printed.
    pub demand_at: [u8; 5],
    /// Answers nothing (a dead meter, a cut wire).
    pub silent: bool,
    /// FE bytes before each reply (vendors send 0, 1, 2 or 4).
    pub preamble: usize,
    /// Requests answered.
    pub answered: u64,
    /// Answers a block read (DI1 = FF) with "no requested data", as some meters do.
    pub refuses_blocks: bool,
}

impl SimMeter {
    /// A meter holding `kwh` of forward active energy, split 10/30/40/20 % over tariffs 1-4
    /// (尖/峰/平/谷), at 230 V, 10 A, 2.2 kW and power factor 0.95.
    pub fn new(address: &str, kwh: f64) -> SimMeter {
        let mut m = SimMeter {
            address: Address::parse(address).expect("a valid simulated address"),
            values: HashMap::new(),
            demand_at: [0x26, 0x12, 0x01, 0x09, 0x15],
            silent: false,
            preamble: 2,
            answered: 0,
            refuses_blocks: false,
        };
        m.set_energy(kwh);
        for (name, v) in [
            ("voltage_a", 230.0),
            ("voltage_b", 230.0),
            ("voltage_c", 230.0),
            ("current_a", 10.0),
            ("current_b", 10.0),
            ("current_c", 10.0),
            ("active_power_total", 2.2),
            ("power_factor_total", 0.95),
            ("frequency", 50.0),
            ("active_demand", 2.2),
            ("forward_active_max_demand", 3.5),
        ] {
            m.values.insert(name, v);
        }
        m
    }

    /// Sets forward (and combined) active energy, tariffs split 10/30/40/20 %.
    pub fn set_energy(&mut self, kwh: f64) {
        let split = [0.1, 0.3, 0.4, 0.2];
        // Registers hold hundredths: the tariffs are rounded and the total is their sum, as a
        // meter's are.
        let parts: Vec<f64> = split
            .iter()
            .map(|s| (kwh * s * 100.0).round() / 100.0)
            .collect();
        let total: f64 = (parts.iter().sum::<f64>() * 100.0).round() / 100.0;
        for prefix in ["forward_active", "combined_active"] {
            let total_name = data::quantity(&format!("{prefix}_total"))
                .expect("known")
                .name;
            self.values.insert(total_name, total);
            for (i, p) in parts.iter().enumerate() {
                let name = data::quantity(&format!("{prefix}_tariff{}", i + 1))
                    .expect("known")
                    .name;
                self.values.insert(name, *p);
            }
        }
    }

    /// The reply to a request frame addressed to this meter (`None`: silent).
    fn reply(&mut self, req: &frame::Frame) -> Option<Vec<u8>> {
        if self.silent {
            return None;
        }
        self.answered += 1;
        let mut out = vec![0xFE; self.preamble];
        let edition = match req.function() {
            0x11 => frame::Edition::Y2007,
            0x01 => frame::Edition::Y1997,
            0x13 => {
                out.extend(frame::encode(self.address, 0x93, &self.address.0));
                return Some(out);
            }
            f => {
                // An unknown function: "other error".
                out.extend(frame::encode(self.address, 0xC0 | f, &[0x01]));
                return Some(out);
            }
        };
        let n = match edition {
            frame::Edition::Y2007 => 4,
            frame::Edition::Y1997 => 2,
        };
        let mut di: Vec<u8> = req.data.iter().take(n).copied().collect();
        di.reverse();
        if edition == frame::Edition::Y2007 && di.len() == 4 && di[2] == 0xFF {
            // A block read: the direction's total and tariffs 1-4 (DI1 = FF).
            let values: Option<Vec<f64>> = (0..5)
                .map(|place| {
                    data::QUANTITIES
                        .iter()
                        .find(|q| data::block_of(q) == Some(([di[0], di[1], di[2], di[3]], place)))
                        .and_then(|q| self.values.get(q.name).copied())
                })
                .collect();
            match values.filter(|_| !self.refuses_blocks) {
                Some(values) => {
                    let mut body: Vec<u8> = di.iter().rev().copied().collect();
                    for v in values {
                        body.extend(data::encode_value(v, data::ENERGY));
                    }
                    out.extend(frame::encode(self.address, 0x80 | req.control, &body));
                }
                None => out.extend(frame::encode(self.address, 0xC0 | req.control, &[0x02])),
            }
            return Some(out);
        }
        let found = data::QUANTITIES.iter().find_map(|q| {
            let (qdi, format) = data::identifier(q, edition)?;
            (qdi == di).then_some((q, format))
        });
        let value = found.and_then(|(q, f)| self.values.get(q.name).map(|v| (q, f, *v)));
        match value {
            Some((q, format, v)) => {
                let mut body: Vec<u8> = di.iter().rev().copied().collect();
                body.extend(data::encode_value(v, format));
                if q.timed {
                    // mm hh DD MM YY on the wire.
                    body.extend(self.demand_at.iter().rev());
                }
                out.extend(frame::encode(self.address, 0x80 | req.control, &body));
            }
            None => {
                // "No requested data" (bit 1).
                out.extend(frame::encode(self.address, 0xC0 | req.control, &[0x02]));
            }
        }
        Some(out)
    }
}

/// Meters sharing one line.
pub type SimLine = Arc<Mutex<Vec<SimMeter>>>;

/// Answers requests on `stream` until it closes: every meter whose address matches (or all, for
/// the wildcard) replies, as on a shared bus.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, line: SimLine) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match frame::decode(&buf) {
                Decoded::Incomplete => break,
                Decoded::Bad(_, skip) => {
                    buf.drain(..skip);
                }
                Decoded::Frame(req, used) => {
                    buf.drain(..used);
                    if req.is_reply() {
                        continue;
                    }
                    let replies: Vec<Vec<u8>> = {
                        let mut meters = line.lock().unwrap_or_else(|e| e.into_inner());
                        meters
                            .iter_mut()
                            .filter(|m| {
                                req.address == Address::WILDCARD || m.address == req.address
                            })
                            .filter_map(|m| m.reply(&req))
                            .collect()
                    };
                    for r in replies {
                        if stream.write_all(&r).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if buf.len() > 4096 {
            buf.clear();
        }
    }
}

/// A transparent serial server on a loopback port the OS picks: each connection is the line.
pub async fn listen(
    line: SimLine,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s, line.clone()));
        }
    });
    Ok((addr, task))
}
