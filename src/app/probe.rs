//! `ecogate probe`: read one meter once (Modbus) or listen to it for a while (MQTT) and print
//! what came, decoded, for commissioning and for finding out why a meter is down.

use super::AppConfig;
use anyhow::{anyhow, bail, Context};
use std::time::Duration;

/// What to probe.
#[derive(Debug, Clone)]
pub enum Target {
    /// A meter of the configuration, read as the daemon reads it.
    Meter(String),
    /// A device at an address, read by the source `kind` with a shipped profile (no
    /// configuration).
    Address {
        kind: String,
        probe: crate::sources::AddressProbe,
    },
}

/// Probes and prints to stdout. Ok(true) when the meter delivered every value (Modbus) or at
/// least one decodable message (MQTT).
pub fn run(app: Option<&AppConfig>, target: Target, listen: Duration) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match target {
            Target::Address { kind, probe } => {
                let k = crate::sources::registry::kind(&kind)
                    .ok_or_else(|| anyhow!("no source `{kind}`"))?;
                let run = k
                    .probe_address(&probe)
                    .ok_or_else(|| anyhow!("the {kind} source has no probe by address"))?;
                run.await
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
                let mut out = |line: String| println!("{line}");
                for source in app.live_sources() {
                    if let Some(run) = source.probe(&app.core, &meter, listen, &mut out) {
                        return run.await;
                    }
                }
                bail!("meter `{meter}` is read by no live source (no source reads it): it is loaded by replay")
            }
        }
    })
}
