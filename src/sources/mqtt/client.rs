//! The rumqttc side: connection, subscriptions, the event loop, acknowledgements.
//!
//! - The event loop task only polls and decodes; it never awaits the broker for anything it
//!   publishes (rumqttc deadlocks when the polling task publishes), and acknowledgements are sent
//!   by a separate acker task.
//! - QoS 1 messages are acknowledged manually, in order, once the pipeline has committed their
//!   readings: a kill -9 before that leaves them with the broker, which redelivers them to our
//!   persistent session (clean session off, stable client id). A redelivered cumulative reading
//!   is a duplicate to the counters and adds nothing.
//! - Refused messages (bad payloads, unknown topics or meters) are counted by reason, logged with
//!   a rate limit, and acknowledged at once: they never hold a delivery slot, and they create no
//!   state and no metric series.
//! - rumqttc does not pause between reconnect attempts; this loop backs off exponentially with
//!   jitter, and subscribes again after every ConnAck without a session.

use super::config::{Broker, MqttConfig};
use super::decode::{self, Meters, Reject};
use crate::accounting::ledger::FastHash;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::{Ack, AckCount, Envelope};
use crate::sources::SourceContext;
use crate::units::Unit;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, SubscribeFilter,
    TlsConfiguration, Transport,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Debug)]
pub struct MqttSource {
    pub task: tokio::task::JoinHandle<()>,
}

/// Units of the configured channels, by meter and channel id (topics and payloads name them).
struct ConfiguredMeters {
    units: HashMap<String, HashMap<String, Unit, FastHash>, FastHash>,
}

impl Meters for ConfiguredMeters {
    fn unit(&self, meter: &str, channel: &str) -> Option<Unit> {
        self.units.get(meter)?.get(channel).copied()
    }
    fn exists(&self, meter: &str) -> bool {
        self.units.contains_key(meter)
    }
}

fn tls_config(tls: &super::config::Tls) -> Result<Arc<rustls::ClientConfig>, String> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut read(&tls.ca_file)?.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: {e}", tls.ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", tls.ca_file.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
                .map_err(|e| format!("{}: {e}", key.display()))?
                .ok_or_else(|| format!("{}: no private key", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| e.to_string())?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn options(b: &Broker) -> Result<MqttOptions, String> {
    let mut o = base_options(b, &b.client_id)?;
    o.set_clean_session(false).set_manual_acks(true);
    Ok(o)
}

/// Connection options shared by the subscriber and the alert publisher.
pub(crate) fn base_options(b: &Broker, client_id: &str) -> Result<MqttOptions, String> {
    let mut o = MqttOptions::new(client_id.to_string(), b.host.clone(), b.port);
    o.set_keep_alive(Duration::from_secs(b.keep_alive_s))
        .set_max_packet_size(b.max_packet_bytes, b.max_packet_bytes)
        .set_request_channel_capacity(10_000);
    if let Some(user) = &b.username {
        o.set_credentials(user.clone(), b.password.clone().unwrap_or_default());
    }
    if let Some(tls) = &b.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls_config(tls)?,
        )));
    }
    Ok(o)
}

/// Starts the MQTT source. Errors in the TLS files are reported here, before any connection.
pub fn spawn(
    mqtt: &MqttConfig,
    config: Arc<Config>,
    ctx: SourceContext,
    metrics: Arc<Metrics>,
) -> Result<MqttSource, String> {
    let broker = mqtt.broker.clone().ok_or("no [mqtt] broker configured")?;
    let opts = options(&broker)?;
    let (client, eventloop) = AsyncClient::new(opts, 10_000);
    let mut units: HashMap<String, HashMap<String, Unit, FastHash>, FastHash> = HashMap::default();
    for m in &config.meters {
        units.insert(
            m.id.clone(),
            m.channels.iter().map(|c| (c.id.clone(), c.unit)).collect(),
        );
    }
    let accepted_total = metrics.mqtt_messages.with_label_values(&["accepted"]);
    let state = Loop {
        mqtt: mqtt.clone(),
        broker,
        tz: config.park.timezone,
        meters: ConfiguredMeters { units },
        client,
        ctx,
        metrics,
        log: HashMap::new(),
        committed: Arc::new(AckCount::default()),
        accepted_total,
        aliases: Default::default(),
    };
    Ok(MqttSource {
        task: tokio::spawn(state.run(eventloop)),
    })
}

struct Loop {
    mqtt: MqttConfig,
    broker: Broker,
    tz: chrono_tz::Tz,
    meters: ConfiguredMeters,
    client: AsyncClient,
    ctx: SourceContext,
    metrics: Arc<Metrics>,
    log: HashMap<Reject, (Instant, u64)>,
    /// How many of this source's envelopes the pipeline has committed.
    committed: Arc<AckCount>,
    /// `ecogate_mqtt_messages_total{result="accepted"}`, resolved once: looking a labelled
    /// counter up by name on every message showed in the profile.
    accepted_total: prometheus::IntCounter,
    /// Sparkplug B metric aliases, by configured meter.
    aliases: super::sparkplug::Aliases,
}

/// A message to acknowledge: `true` once the pipeline has committed its envelope, `false` at
/// once (refused input, or nothing to read). Kept in arrival order, which is the order envelopes commit in.
type PendingAck = (bool, Publish);

impl Loop {
    async fn run(mut self, mut eventloop: EventLoop) {
        let (ack_tx, ack_rx) = mpsc::channel::<PendingAck>(100_000);
        let acker = tokio::spawn(acker(self.client.clone(), ack_rx, self.committed.clone()));
        let mut failures: u32 = 0;
        let mut shutdown = self.ctx.shutdown.clone();
        tracing::info!(host = %self.broker.host, port = self.broker.port, client_id = %self.broker.client_id, "mqtt source started");
        loop {
            let event = tokio::select! {
                _ = shutdown.changed() => break,
                e = eventloop.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    failures = 0;
                    self.metrics.mqtt_connected.set(1);
                    tracing::info!(session_present = ack.session_present, "mqtt connected");
                    if !ack.session_present {
                        let filters: Vec<SubscribeFilter> = self
                            .mqtt
                            .subscriptions
                            .iter()
                            .map(|s| {
                                SubscribeFilter::new(
                                    s.pattern.filter(),
                                    if s.qos == 0 {
                                        QoS::AtMostOnce
                                    } else {
                                        QoS::AtLeastOnce
                                    },
                                )
                            })
                            .collect();
                        // From another task: the request channel must not be awaited here.
                        let client = self.client.clone();
                        tokio::spawn(async move {
                            if let Err(e) = client.subscribe_many(filters).await {
                                tracing::error!("mqtt subscribe failed: {e}");
                            }
                        });
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => self.on_publish(p, &ack_tx).await,
                Ok(_) => {}
                Err(e) => {
                    self.metrics.mqtt_connected.set(0);
                    failures += 1;
                    let delay_ms = crate::sources::backoff_ms(250.0, failures, 30_000.0) as f64;
                    if failures <= 3 || failures % 20 == 0 {
                        tracing::warn!(
                            failures,
                            "mqtt connection failed, retrying in {:.1} s: {e}",
                            delay_ms / 1000.0
                        );
                    }
                    self.metrics.mqtt_reconnects.inc();
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = tokio::time::sleep(Duration::from_millis(delay_ms as u64)) => {}
                    }
                }
            }
        }
        drop(ack_tx);
        // Acknowledge what was committed before the shutdown; the rest the broker redelivers.
        let _ = tokio::time::timeout(Duration::from_secs(5), acker).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.client.disconnect().await;
            while let Ok(ev) = eventloop.poll().await {
                if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
        self.metrics.mqtt_connected.set(0);
        tracing::info!("mqtt source stopped");
    }

    async fn on_publish(&mut self, p: Publish, ack_tx: &mpsc::Sender<PendingAck>) {
        let arrival_ms = chrono::Utc::now().timestamp_millis();
        let result = self.decode(&p, arrival_ms);
        let ack = match result {
            Ok(readings) if readings.is_empty() => {
                // A valid message with nothing to read (a Sparkplug DEATH): acknowledged at once,
                // without an empty commit.
                self.accepted_total.inc();
                if p.qos == QoS::AtMostOnce {
                    return;
                }
                false
            }
            Ok(readings) => {
                self.accepted_total.inc();
                if p.qos == QoS::AtMostOnce {
                    let _ = self
                        .ctx
                        .output
                        .send(Envelope {
                            readings,
                            ack: None,
                        })
                        .await;
                    return;
                }
                let _ = self
                    .ctx
                    .output
                    .send(Envelope {
                        readings,
                        ack: Some(Ack::Count(self.committed.clone())),
                    })
                    .await;
                true
            }
            Err(reason) => {
                self.metrics
                    .mqtt_messages
                    .with_label_values(&["rejected"])
                    .inc();
                self.metrics
                    .mqtt_rejected
                    .with_label_values(&[reason.name()])
                    .inc();
                self.log_reject(reason, &p.topic);
                if p.qos == QoS::AtMostOnce {
                    return;
                }
                false
            }
        };
        let _ = ack_tx.send((ack, p)).await;
    }

    fn decode(
        &mut self,
        p: &Publish,
        arrival_ms: i64,
    ) -> Result<Vec<crate::reading::Reading>, Reject> {
        if p.payload.len() > self.broker.max_payload_bytes {
            return Err(Reject::Oversized);
        }
        for sub in &self.mqtt.subscriptions {
            let Some(bound) = sub.pattern.bind(&p.topic, "meter") else {
                continue;
            };
            let meter = match (bound, &sub.meter) {
                (Some(m), _) if self.meters.exists(m) => m,
                (Some(_), _) => return Err(Reject::UnknownMeter),
                (None, Some(m)) => m.as_str(),
                (None, None) => return Err(Reject::UnknownMeter),
            };
            if let super::config::Decoder::SparkplugB { fields } = &sub.decoder {
                let kind = super::sparkplug::kind(&p.topic).ok_or(Reject::UnmatchedTopic)?;
                let meters = &self.meters;
                return super::sparkplug::decode(
                    fields,
                    meter,
                    kind,
                    &p.payload,
                    arrival_ms,
                    &mut self.aliases,
                    |channel| meters.unit(meter, channel),
                );
            }
            return decode::decode(sub, meter, &p.payload, arrival_ms, self.tz, &self.meters);
        }
        Err(Reject::UnmatchedTopic)
    }

    /// At most one line per reason every 10 s; the topic is cut short (it is untrusted).
    fn log_reject(&mut self, reason: Reject, topic: &str) {
        let now = Instant::now();
        let entry = self.log.entry(reason).or_insert((now, u64::MAX));
        if entry.1 == u64::MAX || now.duration_since(entry.0) >= Duration::from_secs(10) {
            let suppressed = if entry.1 == u64::MAX { 0 } else { entry.1 };
            let topic: String = topic.chars().take(80).collect();
            tracing::warn!(
                reason = reason.name(),
                suppressed,
                "mqtt message refused on topic {topic:?}"
            );
            *entry = (now, 0);
        } else {
            entry.1 += 1;
        }
    }
}

/// Acknowledges messages in arrival order: refused ones at once, the others as the pipeline's
/// commit count passes them. Once the source stops (`rx` closed), it acknowledges what is
/// committed within a few seconds and leaves the rest to the broker's redelivery.
async fn acker(client: AsyncClient, mut rx: mpsc::Receiver<PendingAck>, committed: Arc<AckCount>) {
    let mut pending: std::collections::VecDeque<PendingAck> = std::collections::VecDeque::new();
    let mut acked_commits = 0u64;
    let mut open = true;
    let mut stop_by: Option<tokio::time::Instant> = None;
    loop {
        if open {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(x) => pending.push_back(x),
                    None => open = false,
                },
                _ = committed.changed.notified() => {}
            }
            while let Ok(x) = rx.try_recv() {
                pending.push_back(x);
            }
        } else {
            let by = *stop_by
                .get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_secs(4));
            if pending.is_empty()
                || tokio::time::timeout_at(by, committed.changed.notified())
                    .await
                    .is_err()
            {
                return;
            }
        }
        let done = committed.committed();
        while let Some((needs_commit, _)) = pending.front() {
            if *needs_commit {
                if acked_commits >= done {
                    break;
                }
                acked_commits += 1;
            }
            let (_, publish) = pending.pop_front().expect("front exists");
            if client.ack(&publish).await.is_err() {
                return;
            }
        }
    }
}
