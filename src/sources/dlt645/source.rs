//! The DL/T 645 source as the registry sees it: its `[dlt645]` section, start, health and probes.

use super::config::{Dlt645Config, RawDlt645};
use crate::config::{Config, Meter, Validator};
use crate::sources::health::Reason;
use crate::sources::{
    AddressProbe, ProbeFuture, ProbeOutput, SourceConfig, SourceError, SourceKind, Start, Started,
};
use std::time::Duration;

/// The registry's handle on the DL/T 645 source.
pub struct Dlt645;

impl SourceKind for Dlt645 {
    fn name(&self) -> &'static str {
        "dlt645"
    }

    fn reasons(&self) -> Vec<&'static Reason> {
        super::health::REASONS.iter().collect()
    }

    fn configure(&self, v: &mut Validator<'_>, meters: &[Meter]) -> Box<dyn SourceConfig> {
        let raw = crate::sources::section!(v, dlt645: RawDlt645);
        Box::new(super::config::validate(v, &raw, meters))
    }

    /// `ecogate probe --dlt645 HOST:PORT --unit ADDRESS`: reads the meter's address (with the
    /// wildcard address when `--unit` is `AAAAAAAAAAAA`, for commissioning: only one meter may
    /// be on the line then) and its forward active energy, voltage, current and power.
    fn probe_address<'a>(&'a self, target: &'a AddressProbe) -> Option<ProbeFuture<'a>> {
        Some(Box::pin(async move { probe_address(target).await }))
    }
}

async fn probe_address(target: &AddressProbe) -> anyhow::Result<bool> {
    use super::frame::{self, Address, Edition};
    let addr: std::net::SocketAddr = target
        .address
        .parse()
        .map_err(|e| anyhow::anyhow!("`{}` is not an address:port: {e}", target.address))?;
    let transport = super::config::Transport::Tcp(addr);
    let timeout = Duration::from_millis(target.timeout_ms);
    let mut port = super::poller::open(&transport, timeout).await?;
    let mut address = Address::parse(&target.unit)?;
    let mut discarded = super::poller::Discarded::default();
    if address == Address::WILDCARD {
        // Read-address (C = 13) to the wildcard: the one meter on the line answers with its own.
        let mut req = frame::PREAMBLE.to_vec();
        req.extend(frame::encode(Address::WILDCARD, frame::READ_ADDRESS, &[]));
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        port.write_all(&req).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64];
        let found = tokio::time::timeout(timeout, async {
            loop {
                let n = port.read(&mut chunk).await?;
                if n == 0 {
                    anyhow::bail!("the connection was closed");
                }
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match frame::decode(&buf) {
                        frame::Decoded::Frame(f, _) if f.is_reply() => return Ok(f.address),
                        frame::Decoded::Frame(_, used) => {
                            buf.drain(..used);
                        }
                        frame::Decoded::Bad(_, skip) => {
                            buf.drain(..skip);
                        }
                        frame::Decoded::Incomplete => break,
                    }
                }
            }
        })
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no meter answered the read-address within {} ms",
                target.timeout_ms
            )
        })??;
        println!("meter address {found} (answered the wildcard)");
        address = found;
    }
    let mut all_ok = true;
    for name in [
        "forward_active_total",
        "voltage_a",
        "current_a",
        "active_power_total",
    ] {
        let q = super::data::quantity(name).expect("known quantity");
        let r = super::poller::read_one(
            port.as_mut(),
            true,
            address,
            Edition::Y2007,
            &q.di,
            timeout,
            &mut discarded,
        )
        .await;
        match r {
            Ok(f) if f.is_error() => {
                all_ok = false;
                println!(
                    "  {name} ({}): refused: {}",
                    q.zh,
                    frame::error_names(f.data.first().copied().unwrap_or(0)).join(", ")
                );
            }
            Ok(f) => match super::data::decode_value(&q.di, q.format, q.timed, &f.data) {
                Ok(v) => println!("  {name} ({}): {} {}", q.zh, v.amount, q.unit),
                Err(e) => {
                    all_ok = false;
                    println!("  {name} ({}): {e}", q.zh);
                }
            },
            Err(e) => {
                all_ok = false;
                println!("  {name} ({}): {}: {}", q.zh, e.code, e.detail);
                if e.broken {
                    break;
                }
            }
        }
    }
    Ok(all_ok)
}

impl SourceConfig for Dlt645Config {
    fn kind(&self) -> &'static str {
        "dlt645"
    }

    fn enabled(&self) -> bool {
        self.meter_count() > 0
    }

    fn meters(&self) -> Vec<String> {
        self.lines
            .iter()
            .flat_map(|l| l.meters.iter().map(|m| m.meter.clone()))
            .collect()
    }

    fn retain_meters(&mut self, keep: &dyn Fn(&str) -> bool) {
        for line in &mut self.lines {
            line.meters.retain(|m| keep(&m.meter));
        }
        self.lines.retain(|l| !l.meters.is_empty());
    }

    fn fingerprint(&self, _park: &Config, _read_elsewhere: &[String]) -> String {
        format!("{self:?}")
    }

    fn describe(&self) -> String {
        format!(
            "dlt645 ({} meters on {} lines)",
            self.meter_count(),
            self.lines.len()
        )
    }

    fn summary(&self) -> Vec<String> {
        self.lines
            .iter()
            .map(|l| {
                format!(
                    "dlt645 line {} ({}): {} meter(s)",
                    l.id,
                    l.transport.describe(),
                    l.meters.len()
                )
            })
            .collect()
    }

    fn start(&self, start: Start) -> Result<Started, SourceError> {
        let (tasks, health) = super::poller::spawn(self, start.ctx, start.metrics);
        Ok(Started {
            tasks,
            refresh: Vec::new(),
            checks: vec![super::health::readiness(health.clone())],
            health: vec![super::health::statuses(health)],
            notices: Vec::new(),
        })
    }

    fn probe<'a>(
        &'a self,
        _park: &'a Config,
        meter: &'a str,
        _listen: Duration,
        out: ProbeOutput<'a>,
    ) -> Option<ProbeFuture<'a>> {
        let (line, m) = self
            .lines
            .iter()
            .find_map(|l| l.meters.iter().find(|m| m.meter == meter).map(|m| (l, m)))?;
        Some(Box::pin(async move {
            let timeout = Duration::from_millis(line.timeout_ms);
            let mut port =
                super::poller::open(&line.transport, timeout.max(Duration::from_secs(1)))
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("line {} ({}): {e}", line.id, line.transport.describe())
                    })?;
            out(format!(
                "line {} ({}), meter address {}, DL/T 645-{}",
                line.id,
                line.transport.describe(),
                m.address,
                m.edition.name()
            ));
            let metrics = super::health::Dlt645Metrics::register(&prometheus::Registry::new());
            let mut ok = true;
            for p in &m.points {
                let mut discarded = super::poller::Discarded::default();
                let one = super::config::MeterConfig {
                    points: vec![p.clone()],
                    ..m.clone()
                };
                // One point a request: the probe shows each register on its own.
                let r = super::poller::read_meter(
                    port.as_mut(),
                    line,
                    &one,
                    &mut true,
                    || 0,
                    &mut discarded,
                    &metrics,
                )
                .await;
                match r {
                    Ok(readings) => {
                        for x in readings {
                            out(format!(
                                "  {} <- {} ({}): {} {}",
                                x.channel, p.quantity.name, p.quantity.zh, x.amount, x.unit
                            ));
                        }
                    }
                    Err(e) => {
                        ok = false;
                        out(format!(
                            "  {} <- {}: {}: {}",
                            p.channel, p.quantity.name, e.code, e.detail
                        ));
                        if e.broken {
                            break;
                        }
                    }
                }
            }
            Ok(ok)
        }))
    }
}
