//! `ecogate probe`: read one meter once (Modbus) or listen to it for a while (MQTT) and print
//! what came, decoded, for commissioning and for finding out why a meter is down.

use super::AppConfig;
use anyhow::{anyhow, bail, Context};
use std::net::SocketAddr;
use std::time::Duration;

/// What to probe.
#[derive(Debug, Clone)]
pub enum Target {
    /// A meter of the configuration, read as the daemon reads it.
    Meter(String),
    /// A Modbus TCP device at an address, read with a shipped profile (no configuration).
    Modbus {
        addr: SocketAddr,
        unit_id: u8,
        profile: String,
    },
}

/// Probes and prints to stdout. Ok(true) when the meter delivered every value (Modbus) or at
/// least one decodable message (MQTT).
pub fn run(
    app: Option<&AppConfig>,
    target: Target,
    timeout_ms: u64,
    listen: Duration,
) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match target {
            Target::Modbus {
                addr,
                unit_id,
                profile,
            } => {
                let p = crate::sources::modbus::config::profile(&profile).ok_or_else(|| {
                    anyhow!(
                        "no shipped profile `{profile}`; shipped: {}",
                        crate::sources::modbus::config::profile_names().join(", ")
                    )
                })?;
                let device =
                    crate::sources::modbus::probe::device_from_profile(&p, unit_id, timeout_ms);
                println!("profile {} ({}); CT/PT ratios not applied", p.name, p.description);
                let transport = crate::sources::modbus::config::Transport::Tcp(addr);
                let report = crate::sources::modbus::probe::probe(&transport, &device).await;
                print!("{report}");
                Ok(report.ok())
            }
            Target::Meter(meter) => {
                let app = app.ok_or_else(|| anyhow!("--meter needs --config"))?;
                if !app.core.meters.iter().any(|m| m.id == meter) {
                    bail!(
                        "no meter `{meter}` in the configuration; its meters: {}",
                        app.core
                            .meters
                            .iter()
                            .map(|m| m.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                for bus in &app.modbus.buses {
                    if let Some(device) = bus.devices.iter().find(|d| d.meter == meter) {
                        let report =
                            crate::sources::modbus::probe::probe(&bus.transport, device).await;
                        print!("bus {}: {report}", bus.id);
                        return Ok(report.ok());
                    }
                }
                if app.mqtt.broker.is_some() {
                    let heard = crate::sources::mqtt::probe::probe(
                        &app.mqtt,
                        &app.core,
                        &meter,
                        listen,
                        &mut |line| println!("{line}"),
                    )
                    .await
                    .map_err(|e| anyhow!("mqtt: {e}"))?;
                    let refused: Vec<String> = heard
                        .refused
                        .iter()
                        .map(|(r, n)| format!("{n} {r}"))
                        .collect();
                    println!(
                        "{} message(s) for {meter}: {} decoded, {} refused{}",
                        heard.messages,
                        heard.decoded,
                        heard.refused.values().sum::<u64>(),
                        if refused.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", refused.join(", "))
                        }
                    );
                    return Ok(heard.decoded > 0);
                }
                bail!("meter `{meter}` is read by no live source (no Modbus device, no [mqtt] broker): it is loaded by replay")
            }
        }
    })
}
