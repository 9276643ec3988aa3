//! `ecogate probe` for a meter that publishes: listens on the subscriptions that can carry the
//! meter for a while, with a client and session of its own (the daemon's session and its queued
//! messages are not touched), and prints each of the meter's messages decoded, or why it was
//! refused.

use super::config::{Decoder, MqttConfig, Subscription};
use super::decode::{self, Meters, Reject};
use crate::config::Config;
use crate::units::Unit;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::collections::BTreeMap;
use std::time::Duration;

struct ConfigMeters<'a>(&'a Config);

impl Meters for ConfigMeters<'_> {
    fn unit(&self, meter: &str, channel: &str) -> Option<Unit> {
        let m = self.0.meters.iter().find(|m| m.id == meter)?;
        m.channels.iter().find(|c| c.id == channel).map(|c| c.unit)
    }
    fn exists(&self, meter: &str) -> bool {
        self.0.meters.iter().any(|m| m.id == meter)
    }
}

/// What the probe heard of the meter.
#[derive(Debug, Default)]
pub struct Heard {
    pub messages: u64,
    pub decoded: u64,
    pub refused: BTreeMap<&'static str, u64>,
}

/// The subscriptions that can carry `meter`.
fn subscriptions_of<'a>(mqtt: &'a MqttConfig, meter: &str) -> Vec<&'a Subscription> {
    mqtt.subscriptions
        .iter()
        .filter(|s| match &s.meter {
            Some(m) => m == meter,
            None => s.pattern.has("meter"),
        })
        .collect()
}

/// Why a probe could not listen.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no [mqtt] broker configured")]
    NoBroker,
    #[error("no [[mqtt.subscriptions]] can carry meter `{0}` (none names it, none has {{meter}} in its topic)")]
    NoSubscription(String),
    #[error("the broker's TLS settings")]
    Tls(#[from] super::connect::TlsError),
    #[error("cannot subscribe")]
    Subscribe(#[from] rumqttc::ClientError),
    #[error("cannot connect to {host}:{port}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        cause: rumqttc::ConnectionError,
    },
}

/// Listens for `listen` and writes a line per message of `meter` to `out`.
pub async fn probe(
    mqtt: &MqttConfig,
    config: &Config,
    meter: &str,
    listen: Duration,
    out: &mut dyn FnMut(String),
) -> Result<Heard, ProbeError> {
    let broker = mqtt.broker.as_ref().ok_or(ProbeError::NoBroker)?;
    let subs = subscriptions_of(mqtt, meter);
    if subs.is_empty() {
        return Err(ProbeError::NoSubscription(meter.to_string()));
    }
    let client_id = format!("{}-probe-{}", broker.client_id, std::process::id());
    let mut o = super::connect::base_options(broker, &client_id)?;
    o.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let filters: Vec<String> = subs.iter().map(|s| s.pattern.filter()).collect();
    out(format!(
        "listening {} s on {}:{} for meter {meter}: {}",
        listen.as_secs(),
        broker.host,
        broker.port,
        filters.join(", ")
    ));
    let meters = ConfigMeters(config);
    let mut aliases = super::sparkplug::Aliases::default();
    let mut heard = Heard::default();
    let deadline = tokio::time::Instant::now() + listen;
    let mut connected = false;
    let mut subacks = 0;
    loop {
        let event = match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Err(_) => break,
            Ok(e) => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                for f in &filters {
                    client.subscribe(f.clone(), QoS::AtMostOnce).await?;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                subacks += 1;
                if subacks == filters.len() {
                    out("subscribed; waiting for messages".into());
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                for sub in &subs {
                    let Some(bound) = sub.pattern.bind(&p.topic, "meter") else {
                        continue;
                    };
                    if bound.is_some_and(|m| m != meter) {
                        continue;
                    }
                    heard.messages += 1;
                    let now_ms = chrono::Utc::now().timestamp_millis();
                    let result = match &sub.decoder {
                        Decoder::SparkplugB { fields } => match super::sparkplug::kind(&p.topic) {
                            None => Err(Reject::UnmatchedTopic),
                            Some(kind) => super::sparkplug::decode(
                                fields,
                                meter,
                                kind,
                                &p.payload,
                                now_ms,
                                &mut aliases,
                                |channel| meters.unit(meter, channel),
                            ),
                        },
                        _ => decode::decode(
                            sub,
                            meter,
                            &p.payload,
                            now_ms,
                            config.park.timezone,
                            &meters,
                        ),
                    };
                    let head = format!("{} ({} bytes)", p.topic, p.payload.len());
                    match result {
                        Ok(readings) => {
                            heard.decoded += 1;
                            let parts: Vec<String> = readings
                                .iter()
                                .map(|r| {
                                    let at = chrono::DateTime::from_timestamp_millis(r.ts_ms)
                                        .map(|t| {
                                            t.with_timezone(&config.park.timezone).to_rfc3339()
                                        })
                                        .unwrap_or_default();
                                    format!(
                                        "{} = {} {} at {at}",
                                        r.channel, r.amount, r.unit.symbol
                                    )
                                })
                                .collect();
                            out(format!(
                                "{head}: {}",
                                if parts.is_empty() {
                                    "nothing to read (valid)".to_string()
                                } else {
                                    parts.join("; ")
                                }
                            ));
                        }
                        Err(reason) => {
                            *heard.refused.entry(reason.name()).or_default() += 1;
                            // A short, printable excerpt: the payload is untrusted.
                            let excerpt: String = String::from_utf8_lossy(&p.payload)
                                .chars()
                                .take(120)
                                .map(|c| if c.is_control() { ' ' } else { c })
                                .collect();
                            out(format!("{head}: refused as {}: {excerpt}", reason.name()));
                        }
                    }
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                if !connected {
                    return Err(ProbeError::Connect {
                        host: broker.host.clone(),
                        port: broker.port,
                        cause: e,
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let _ = client.disconnect().await;
    Ok(heard)
}
