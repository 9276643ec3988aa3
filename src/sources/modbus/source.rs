//! The Modbus source as the registry sees it: its `[modbus]` section, start, health and probes.

use super::config::{ModbusConfig, RawModbus};
use crate::config::{Config, Meter, Validator};
use crate::sources::health::Reason;
use crate::sources::{
    AddressProbe, ProbeFuture, ProbeOutput, SourceConfig, SourceError, SourceKind, Start, Started,
};
use std::time::Duration;

/// The registry's handle on the Modbus source.
pub struct Modbus;

impl SourceKind for Modbus {
    fn name(&self) -> &'static str {
        "modbus"
    }

    fn reasons(&self) -> Vec<&'static Reason> {
        super::reasons::FAILURE_REASONS.iter().collect()
    }

    fn configure(&self, v: &mut Validator<'_>, meters: &[Meter]) -> Box<dyn SourceConfig> {
        let raw = crate::sources::section!(v, modbus: RawModbus);
        Box::new(super::config::validate(v, &raw, meters))
    }

    fn probe_address<'a>(&'a self, target: &'a AddressProbe) -> Option<ProbeFuture<'a>> {
        Some(Box::pin(async move {
            let addr: std::net::SocketAddr = target
                .address
                .parse()
                .map_err(|e| anyhow::anyhow!("`{}` is not an address:port: {e}", target.address))?;
            let unit_id: u8 = target
                .unit
                .parse()
                .map_err(|_| anyhow::anyhow!("unit id `{}` is not a number 0-255", target.unit))?;
            let p = super::config::profile(&target.profile).ok_or_else(|| {
                anyhow::anyhow!(
                    "no shipped profile `{}`; shipped: {}",
                    target.profile,
                    super::config::profile_names().join(", ")
                )
            })?;
            let device = super::probe::device_from_profile(&p, unit_id, target.timeout_ms);
            println!(
                "profile {} ({}); CT/PT ratios not applied",
                p.name, p.description
            );
            let transport = super::config::Transport::Tcp(addr);
            let report = super::probe::probe(&transport, &device).await;
            print!("{report}");
            Ok(report.ok())
        }))
    }
}

impl SourceConfig for ModbusConfig {
    fn kind(&self) -> &'static str {
        "modbus"
    }

    fn enabled(&self) -> bool {
        self.device_count() > 0
    }

    fn meters(&self) -> Vec<String> {
        ModbusConfig::meters(self)
    }

    fn retain_meters(&mut self, keep: &dyn Fn(&str) -> bool) {
        for bus in &mut self.buses {
            bus.devices.retain(|d| keep(&d.meter));
        }
        self.buses.retain(|b| !b.devices.is_empty());
    }

    fn fingerprint(&self, _park: &Config, _read_elsewhere: &[String]) -> String {
        // Its devices carry everything of the park they read (meter, channels, units).
        format!("{self:?}")
    }

    fn describe(&self) -> String {
        format!("modbus ({} devices)", self.device_count())
    }

    fn summary(&self) -> Vec<String> {
        self.buses
            .iter()
            .map(|bus| {
                format!(
                    "modbus bus {} ({}): {} device(s)",
                    bus.id,
                    bus.transport.describe(),
                    bus.devices.len()
                )
            })
            .collect()
    }

    fn start(&self, start: Start) -> Result<Started, SourceError> {
        let m = super::spawn(self, start.ctx, start.metrics.clone());
        Ok(Started {
            tasks: m.tasks,
            refresh: vec![super::metrics::health(
                &start.metrics.registry,
                m.health.clone(),
            )],
            checks: vec![super::metrics::readiness(m.health.clone())],
            health: vec![super::metrics::statuses(m.health)],
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
        let (bus, device) = self
            .buses
            .iter()
            .find_map(|b| b.devices.iter().find(|d| d.meter == meter).map(|d| (b, d)))?;
        Some(Box::pin(async move {
            let report = super::probe::probe(&bus.transport, device).await;
            out(format!("bus {}: {}", bus.id, report.to_string().trim_end()));
            Ok(report.ok())
        }))
    }
}
