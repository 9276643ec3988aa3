//! The rumqttc side: connection, subscriptions, the event loop, acknowledgements.
//!
//! - The event loop runs on a thread of its own and only polls, decodes and paces its reads
//!   (`pace`); it never awaits the broker for anything it publishes (rumqttc deadlocks when the
//!   polling task publishes). A separate acker task decides which acknowledgements are due and
//!   hands them over a run at a time (`puback`, the one file that reaches into rumqttc).
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
use super::connect::base_options;
use super::decode::{self, Meters, Reject};
use super::metrics::MqttMetrics;
use super::pace::Pace;
use super::puback::{self, acker, write_run, AckNote, AckRuns, PendingAck, READ_BATCH};
use super::window::Window;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::{Ack, AckCount, Envelope};
use crate::sources::SourceContext;
use crate::sources::SourceError;
use crate::units::Unit;
use crate::util::FastHash;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, SubscribeFilter};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub struct MqttSource {
    pub task: tokio::task::JoinHandle<()>,
    /// The publishing meters' health, for the metrics and the status page.
    pub health: crate::sources::health::Statuses,
}

impl std::fmt::Debug for MqttSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSource").finish_non_exhaustive()
    }
}

/// Units of the configured channels, by meter and channel id (topics and payloads name them).
struct ConfiguredMeters {
    units: HashMap<String, HashMap<String, Unit, FastHash>, FastHash>,
    /// Meters that other instances of a split park account (docs/scale-out.md).
    other_shard: Arc<std::collections::HashSet<String>>,
}

impl Meters for ConfiguredMeters {
    fn unit(&self, meter: &str, channel: &str) -> Option<Unit> {
        self.units.get(meter)?.get(channel).copied()
    }
    fn exists(&self, meter: &str) -> bool {
        self.units.contains_key(meter)
    }
}

fn options(b: &Broker) -> Result<MqttOptions, SourceError> {
    let mut o = base_options(b, &b.client_id).map_err(|cause| SourceError::Setup {
        what: "TLS to the broker".into(),
        cause: Box::new(cause),
    })?;
    o.set_clean_session(false).set_manual_acks(true);
    Ok(o)
}

/// A connection that lives this long after its CONNACK was a real one: its end starts the
/// back-off afresh.
const STABLE: Duration = Duration::from_secs(10);

/// The largest message ecogate reads only to refuse it (the MQTT maximum, 256 MiB): a message
/// above `max_packet_kib` costs at most this much memory, once, while it is read and dropped.
const OVERSIZED_READ_MAX: usize = 268_435_455;

/// The size of the packet that made rumqttc drop the connection, when that was the reason.
fn oversized_packet(e: &rumqttc::ConnectionError) -> Option<usize> {
    match e {
        rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size),
        )) => Some(*size),
        _ => None,
    }
}

/// Starts the MQTT source. Errors in the TLS files are reported here, before any connection.
pub fn spawn(
    mqtt: &MqttConfig,
    config: Arc<Config>,
    ctx: SourceContext,
    metrics: Arc<Metrics>,
    read_elsewhere: &[String],
) -> Result<MqttSource, SourceError> {
    let broker = mqtt
        .broker
        .clone()
        .ok_or(SourceError::Nothing("no [mqtt] broker configured"))?;
    let opts = options(&broker)?;
    let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
    // Acknowledgements go out in runs already (puback.rs); Nagle's algorithm would hold a run
    // behind an earlier small segment (a PINGREQ) until the broker's delayed ACK, 40 ms on
    // Linux. Seen: 468 msg/s under a strict 20-message window.
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let mut units: HashMap<String, HashMap<String, Unit, FastHash>, FastHash> = HashMap::default();
    for m in &config.meters {
        units.insert(
            m.id.clone(),
            m.channels.iter().map(|c| (c.id.clone(), c.unit)).collect(),
        );
    }
    let health = Arc::new(super::health::PublishedHealth::new(
        &config,
        mqtt,
        read_elsewhere,
    ));
    let metrics = metrics.component(MqttMetrics::register);
    let accepted_total = metrics.messages.with_label_values(&["accepted"]);
    let state = Loop {
        mqtt: mqtt.clone(),
        broker,
        tz: config.park.timezone,
        meters: ConfiguredMeters {
            units,
            other_shard: config.sharding.other_shard_meters.clone(),
        },
        client,
        ctx,
        metrics,
        log: crate::util::RateLimitedLog::new(Duration::from_secs(10)),
        committed: Arc::new(AckCount::default()),
        accepted_total,
        aliases: Default::default(),
        health: health.clone(),
        rebirths: HashMap::default(),
        batch: Vec::new(),
        batch_acks: Vec::new(),
        sent_for_commit: 0,
        received_qos1: 0,
        acks_written: 0,
        window: Window::default(),
        losses: Default::default(),
        window_warned: false,
    };
    // Its own thread and runtime: the pacing in `run` blocks the thread between socket reads,
    // which must not hold up other tasks, and readiness events of the broker's socket then wake
    // only this thread, and only when it is waiting for them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|cause| SourceError::Spawn {
            what: "starting the MQTT runtime",
            cause,
        })?;
    // A task that ends when the thread does, so that the daemon can wait for it with a
    // timeout; the thread itself is not joined (a thread that never ended would hold up the
    // daemon's exit, where a task is simply dropped).
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("ecogate-mqtt".into())
        .spawn(move || {
            runtime.block_on(state.run(eventloop));
            let _ = done_tx.send(());
        })
        .map_err(|cause| SourceError::Spawn {
            what: "starting the MQTT thread",
            cause,
        })?;
    Ok(MqttSource {
        health: Arc::new(move |now_ms| health.statuses(now_ms)),
        task: tokio::spawn(async move {
            let _ = done_rx.await;
        }),
    })
}

struct Loop {
    mqtt: MqttConfig,
    broker: Broker,
    tz: chrono_tz::Tz,
    meters: ConfiguredMeters,
    client: AsyncClient,
    ctx: SourceContext,
    metrics: Arc<MqttMetrics>,
    log: crate::util::RateLimitedLog<Reject>,
    /// How many of this source's envelopes the pipeline has committed.
    committed: Arc<AckCount>,
    /// `ecogate_mqtt_messages_total{result="accepted"}`, resolved once: looking a labelled
    /// counter up by name on every message showed in the profile.
    accepted_total: prometheus::IntCounter,
    /// Sparkplug B metric aliases, by configured meter.
    aliases: super::sparkplug::Aliases,
    health: Arc<super::health::PublishedHealth>,
    /// When each Sparkplug node (by its NCMD topic) was last asked to rebirth.
    rebirths: HashMap<String, std::time::Instant, FastHash>,
    /// Readings of the messages of the current socket read, sent as one envelope: one channel
    /// operation per read instead of one per message.
    batch: Vec<crate::reading::Reading>,
    /// The current read's messages to acknowledge, in arrival order.
    batch_acks: Vec<PendingAck>,
    /// Messages sent to the pipeline for commit (compared with `committed`).
    sent_for_commit: u64,
    /// QoS 1 messages received and PUBACKs written on this connection: the difference is what
    /// the broker counts in flight.
    received_qos1: u64,
    acks_written: u64,
    /// The broker's in-flight window, learned for group commit.
    window: Window,
    /// What the broker says or the sequence numbers show it lost.
    losses: super::losses::Losses,
    /// The small-window warning was given (once per run: the broker's settings do not change
    /// without a restart).
    window_warned: bool,
}

/// A node is asked to rebirth at most this often.
const REBIRTH_EVERY: Duration = Duration::from_secs(10);

/// How long messages waiting under a learned window may see nothing arrive before the source
/// asks for their commit (a loopback or LAN round trip is well below it).
const NUDGE_AFTER: Duration = Duration::from_millis(1);

/// PINGREQs at most after one run of acknowledgements (`puback::kick`).
const KICKS_PER_REFILL: u32 = 3;

/// mosquitto's count of messages it dropped for full queues and in-flight windows.
const SYS_DROPPED: &str = "$SYS/broker/publish/messages/dropped";

/// Above this many readings the current read's envelope goes to the pipeline at once.
const BATCH_READINGS: usize = 4096;

impl Loop {
    async fn run(mut self, mut eventloop: EventLoop) {
        // Unbounded, so that this loop never waits for the acker, which may itself be waiting
        // for this loop to take its acknowledgements (a bounded channel here deadlocked once it
        // filled). What it holds is bounded by the broker: a QoS 1 message stays in it only until
        // it is acknowledged, and no more than 65,535 can be unacknowledged at once (packet ids
        // are 16 bits; the broker's in-flight limit is usually far lower).
        let (ack_tx, ack_rx) = mpsc::unbounded_channel::<AckNote>();
        let runs = AckRuns::default();
        let mut acker = tokio::spawn(acker(
            self.client.clone(),
            ack_rx,
            self.committed.clone(),
            runs.clone(),
        ));
        let mut failures: u32 = 0;
        // When the connection came up: one that dies within `STABLE` of its CONNACK (a broker
        // that accepts and then drops us, a poison message at the head of the session) is a
        // failure and backs off, not a fresh start.
        let mut connected_at: Option<std::time::Instant> = None;
        let mut failure_log = crate::util::Throttle::default();
        let mut last_failure = String::new();
        let normal_limit = eventloop.mqtt_options.max_packet_size();
        let mut shutdown = self.ctx.shutdown.clone();
        tracing::info!(host = %self.broker.host, port = self.broker.port, client_id = %self.broker.client_id, "mqtt source started");
        // Publishes handled since the last time the loop went to the socket.
        let mut read = 0usize;
        let mut pace = Pace::default();
        let mut nudged = false;
        // Kicks since acknowledgements last went out, and how many had gone out then.
        let mut kicks: (u64, u32) = (0, 0);
        loop {
            if puback::read_drained(&eventloop) {
                // The next poll reads the socket: what this read gave goes to the pipeline first,
                // to be committed at once when the broker can send nothing more before it is
                // (group commit).
                let in_flight = self.received_qos1.saturating_sub(self.acks_written);
                let commit_now = self.commit_pending() > 0
                    && self.window.drained(in_flight, std::time::Instant::now());
                tracing::trace!(
                    in_flight,
                    read,
                    pending = self.commit_pending(),
                    commit_now,
                    window = ?self.window.learned(),
                    "mqtt socket drained"
                );
                self.observe_window();
                self.flush(&ack_tx, commit_now).await;
                if kicks.0 != self.acks_written {
                    kicks = (self.acks_written, 0);
                }
                // A broker with Nagle's algorithm on releases a refill a segment at a time, each
                // one after the last was acknowledged: a few kicks take a whole window in; more
                // would cost the broker a ping per read.
                if read > 0
                    && kicks.1 < KICKS_PER_REFILL
                    && self.window.refilling()
                    && puback::kick(&mut eventloop).await
                {
                    kicks.1 += 1;
                    self.metrics.kicks.inc();
                }
                // No pause under a learned window: nothing more comes until this read's messages
                // are acknowledged, and the pause would hold up the acker on this thread.
                if read < READ_BATCH && self.window.learned().is_none() {
                    if let Some(pause) = pace.drained() {
                        // Blocking on purpose: a waiting runtime would wake at every segment.
                        std::thread::sleep(pause);
                    }
                }
                read = 0;
            }
            // Under a learned window, messages waiting for a commit with nothing more arriving
            // mean a window that filled across two commits (its acknowledgements freed slots one
            // run at a time): a nudge commits them without the pipeline's idle wait.
            let stalled = self.window.learned().is_some()
                && !nudged
                && self.sent_for_commit > self.committed.committed();
            let event = tokio::select! {
                _ = shutdown.changed() => break,
                e = eventloop.poll() => e,
                _ = tokio::time::sleep(NUDGE_AFTER), if stalled => {
                    nudged = true;
                    let _ = self.ctx.output.send(Envelope {
                        readings: Vec::new(),
                        ack: None,
                        commit_now: true,
                    }).await;
                    continue;
                }
            };
            nudged = false;
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    connected_at = Some(std::time::Instant::now());
                    // Back to the normal limit from the next connection on, once this one has
                    // taken the message that needed a larger one.
                    eventloop
                        .mqtt_options
                        .set_max_packet_size(normal_limit, normal_limit);
                    self.metrics.connected.set(1);
                    tracing::info!(session_present = ack.session_present, "mqtt connected");
                    self.metrics.subscribed.set(i64::from(ack.session_present));
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
                        let sys = self.broker.sys_topics;
                        tokio::spawn(async move {
                            if let Err(e) = client.subscribe_many(filters).await {
                                tracing::error!("mqtt subscribe failed: {e}");
                            }
                            // Apart, so that a broker refusing it refuses nothing else.
                            if sys {
                                let _ = client.subscribe(SYS_DROPPED, QoS::AtMostOnce).await;
                            }
                        });
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    read += 1;
                    pace.read();
                    self.on_publish(p);
                    if self.batch.len() >= BATCH_READINGS {
                        self.flush(&ack_tx, false).await;
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::PubAck(pkid))) => {
                    let n = write_run(&mut eventloop, &runs, pkid).await;
                    tracing::trace!(pkid, acks = n, "mqtt acknowledgements written");
                    self.acks_written += n;
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    // The topic subscriptions (the $SYS one is acknowledged apart, and may be
                    // refused without harm).
                    if ack
                        .return_codes
                        .iter()
                        .all(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        self.metrics.subscribed.set(1);
                        tracing::info!(
                            filters = ack.return_codes.len(),
                            "mqtt subscription acknowledged"
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    // The broker sends every unacknowledged message again on the next connection.
                    // So, before anything can await (and let the acker act): rumqttc's channel
                    // loses its acknowledgements (rumqttc drops them when the connection breaks,
                    // not when a connect fails, hence `clean` again here), their runs go with
                    // them, and the acker forgets every acknowledgement of the old connection,
                    // including those of the messages rumqttc read before the break but had
                    // not handed out yet.
                    eventloop.clean();
                    runs.lock().expect("ack runs").clear();
                    for p in puback::take_unread_publishes(&mut eventloop) {
                        self.on_publish(p);
                    }
                    // Counted before the acks go: the batch's commit must still count its
                    // messages, or the acker would wait one message behind from here on (and a
                    // clean stop would leave the last message unacknowledged).
                    let messages = self.commit_pending();
                    self.flush_acks(&ack_tx);
                    let _ = ack_tx.send(AckNote::ConnectionLost);
                    self.send_batch(messages, false).await;
                    read = 0;
                    pace.reset();
                    // The broker sends every unacknowledged message again: nothing is in flight.
                    self.window.reset();
                    self.received_qos1 = 0;
                    self.acks_written = 0;
                    self.metrics.connected.set(0);
                    self.metrics.subscribed.set(0);
                    if connected_at.take().is_some_and(|t| t.elapsed() >= STABLE) {
                        failures = 0;
                    }
                    failures += 1;
                    // rumqttc drops the connection on a packet above its limit, and the broker
                    // sends the same message first again on every reconnect: read it once with a
                    // limit that fits it, refuse it as `oversized` and acknowledge it, so that the
                    // messages behind it flow.
                    let what = match oversized_packet(&e) {
                        Some(size) if size <= OVERSIZED_READ_MAX => {
                            eventloop
                                .mqtt_options
                                .set_max_packet_size(size, normal_limit);
                            format!("a {size}-byte message is above max_packet_kib; reading it once to refuse and acknowledge it")
                        }
                        Some(size) => format!(
                            "a {size}-byte message is above the {OVERSIZED_READ_MAX}-byte bound ecogate reads to discard; delete it at the broker (or its session) to let the messages behind it through"
                        ),
                        None => e.to_string(),
                    };
                    let delay_ms = crate::util::backoff_ms(250.0, failures, 30_000.0) as f64;
                    if what != last_failure {
                        failure_log = crate::util::Throttle::default();
                        last_failure = what;
                    }
                    // The same failure again and again is one line a minute with its count.
                    if let Some(suppressed) = failure_log.allow(Duration::from_secs(60)) {
                        tracing::warn!(
                            failures,
                            suppressed,
                            "mqtt connection failed, retrying in {:.1} s: {last_failure}",
                            delay_ms / 1000.0
                        );
                    }
                    self.metrics.reconnects.inc();
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = tokio::time::sleep(Duration::from_millis(delay_ms as u64)) => {}
                    }
                }
            }
        }
        // Bounded: a pipeline that no longer takes envelopes must not keep the source running.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.flush(&ack_tx, true)).await;
        drop(ack_tx);
        // Acknowledge what was committed before the shutdown (the rest the broker redelivers),
        // then disconnect. The event loop keeps running meanwhile: it writes the acker's runs,
        // and the DISCONNECT goes out behind the last of them.
        let acks_by = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut give_up = acks_by + Duration::from_secs(2);
        let mut acker_done = false;
        let mut disconnecting = false;
        loop {
            tokio::select! {
                _ = &mut acker, if !acker_done => acker_done = true,
                _ = tokio::time::sleep_until(acks_by), if !acker_done => acker_done = true,
                _ = tokio::time::sleep_until(give_up) => break,
                ev = eventloop.poll() => match ev {
                    Ok(Event::Outgoing(rumqttc::Outgoing::PubAck(pkid))) => {
                        let n = write_run(&mut eventloop, &runs, pkid).await;
                        tracing::debug!(pkid, acks = n, "mqtt acknowledgements written while stopping");
                    }
                    // The broker closes the connection once it has read the DISCONNECT: until
                    // then this side reads on, so that it never closes first with data unread
                    // (which makes the kernel send a reset). Closing at once, mosquitto sent up to
                    // a window of messages again in the next session although their
                    // acknowledgements had been written (tests/mqtt.rs, 5 runs in 23); reading on
                    // until the broker closed cured it (0 in 20).
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                        give_up = give_up.min(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                    Err(_) => break,
                    Ok(_) => {}
                },
            }
            // Once (a second would find the connection closed), and again if the request
            // channel was full.
            if acker_done && !disconnecting {
                disconnecting = self.client.try_disconnect().is_ok();
            }
        }
        self.metrics.connected.set(0);
        tracing::info!("mqtt source stopped");
    }

    /// Decodes one message into the current read's batch.
    fn on_publish(&mut self, p: Publish) {
        if p.topic.starts_with("$SYS/") {
            self.losses.on_sys(&self.metrics, &p.payload);
            return;
        }
        if p.qos == QoS::ExactlyOnce {
            // Should not arrive: subscriptions ask for QoS 0 or 1, and a broker delivers no
            // higher than the subscription asked. Refused like any bad input, and acknowledged
            // at once (a PUBREC, outside the runs) so that it holds no delivery slot.
            self.reject(Reject::WrongQos, &p.topic);
            let _ = self.client.try_ack(&p);
            return;
        }
        let arrival_ms = chrono::Utc::now().timestamp_millis();
        let result = self.decode(&p, arrival_ms);
        let needs_commit = match result {
            Ok(readings) if readings.is_empty() => {
                // A valid message with nothing to read (a Sparkplug DEATH): acknowledged at once,
                // without an empty commit.
                self.accepted_total.inc();
                false
            }
            Ok(readings) => {
                self.accepted_total.inc();
                if self.batch.is_empty() {
                    self.batch = readings;
                } else {
                    self.batch.extend(readings);
                }
                p.qos != QoS::AtMostOnce
            }
            Err(reason) => {
                if reason == Reject::UnknownAlias {
                    self.request_rebirth(&p.topic);
                }
                self.reject(reason, &p.topic);
                false
            }
        };
        if p.qos == QoS::AtMostOnce {
            return;
        }
        self.received_qos1 += 1;
        self.batch_acks.push(PendingAck {
            needs_commit,
            pkid: Some(p.pkid),
        });
    }

    /// Hands the current read's acknowledgements to the acker (which sends each once the
    /// pipeline's commit count passes it), then its readings to the pipeline. In that order
    /// because only the second can wait, and the acker must hear of a lost connection (see
    /// `run`) before it can act on anything that came on it.
    async fn flush(&mut self, ack_tx: &mpsc::UnboundedSender<AckNote>, commit_now: bool) {
        let messages = self.commit_pending();
        self.flush_acks(ack_tx);
        self.send_batch(messages, commit_now).await;
    }

    /// Exports the learned window, and says once per connection when it is small.
    fn observe_window(&mut self) {
        let learned = self.window.confirmed().unwrap_or(0);
        let shown = self.metrics.inflight_window.get() as u64;
        if learned == shown {
            return;
        }
        self.metrics.inflight_window.set(learned as i64);
        if learned > 0 && learned < super::window::SMALL_WINDOW && !self.window_warned {
            self.window_warned = true;
            tracing::warn!(
                window = learned,
                "the MQTT broker lets only {learned} QoS 1 messages wait for ecogate's \
                 acknowledgement; ecogate commits each full window at once, but a burst larger \
                 than the broker's queue is dropped by the broker: raise max_inflight_messages \
                 and max_queued_messages (mosquitto) or their equivalents (docs/mqtt.md)"
            );
        }
    }

    /// The QoS 1 messages whose readings are in `batch`: acknowledged once it is committed.
    fn commit_pending(&self) -> u64 {
        self.batch_acks.iter().filter(|a| a.needs_commit).count() as u64
    }

    /// Sends the batch's readings; their commit counts `messages` for the acker.
    async fn send_batch(&mut self, messages: u64, commit_now: bool) {
        if !self.batch.is_empty() {
            let ack = (messages > 0).then(|| Ack::Count(self.committed.clone(), messages));
            self.sent_for_commit += messages;
            let readings = std::mem::take(&mut self.batch);
            let _ = self
                .ctx
                .output
                .send(Envelope {
                    readings,
                    ack,
                    commit_now,
                })
                .await;
        }
    }

    fn flush_acks(&mut self, ack_tx: &mpsc::UnboundedSender<AckNote>) {
        if !self.batch_acks.is_empty() {
            let _ = ack_tx.send(AckNote::Messages(std::mem::take(&mut self.batch_acks)));
        }
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
                (Some(m), _) if self.meters.other_shard.contains(m) => {
                    return Err(Reject::OtherShard)
                }
                (Some(_), _) => return Err(Reject::UnknownMeter),
                (None, Some(m)) => m.as_str(),
                (None, None) => return Err(Reject::UnknownMeter),
            };
            let result = if let super::config::Decoder::SparkplugB { fields } = &sub.decoder {
                match super::sparkplug::kind(&p.topic) {
                    None => Err(Reject::UnmatchedTopic),
                    Some(kind) => {
                        let meters = &self.meters;
                        super::sparkplug::decode(
                            fields,
                            meter,
                            kind,
                            &p.payload,
                            arrival_ms,
                            &mut self.aliases,
                            |channel| meters.unit(meter, channel),
                        )
                    }
                }
            } else {
                decode::decode_sequenced(sub, meter, &p.payload, arrival_ms, self.tz, &self.meters)
                    .map(|(readings, seq)| {
                        if let Some(seq) = seq {
                            self.losses.on_sequence(&self.metrics, meter, seq);
                        }
                        readings
                    })
            };
            if let Some(h) = self.health.get(meter) {
                match &result {
                    Ok(readings) if !readings.is_empty() => {
                        h.delivered(arrival_ms, sub.stale_after_ms)
                    }
                    Ok(_) => {}
                    Err(reason) => h.refused(*reason),
                }
            }
            return result;
        }
        Err(Reject::UnmatchedTopic)
    }

    /// Asks the edge node behind `topic` for its BIRTH, at most once per node every
    /// [`REBIRTH_EVERY`]: its DATA names metrics by aliases this process has no BIRTH for (the
    /// BIRTH came before a restart, or was missed).
    fn request_rebirth(&mut self, topic: &str) {
        let now = std::time::Instant::now();
        let Some((ncmd, payload)) = super::sparkplug::rebirth_request(
            topic,
            chrono::Utc::now().timestamp_millis().max(0) as u64,
        ) else {
            return;
        };
        if self
            .rebirths
            .get(&ncmd)
            .is_some_and(|at| now.duration_since(*at) < REBIRTH_EVERY)
        {
            return;
        }
        // Node names come from the wire: keep the map bounded.
        if self.rebirths.len() >= 1024 {
            self.rebirths
                .retain(|_, at| now.duration_since(*at) < REBIRTH_EVERY);
            if self.rebirths.len() >= 1024 {
                return;
            }
        }
        self.rebirths.insert(ncmd.clone(), now);
        // QoS 0, not retained, as the specification has commands sent.
        match self
            .client
            .try_publish(ncmd.clone(), QoS::AtMostOnce, false, payload)
        {
            Ok(()) => {
                self.metrics.rebirths.inc();
                tracing::info!(topic = %ncmd, "sparkplug: DATA with aliases no BIRTH has mapped; asked the node to rebirth");
            }
            Err(e) => {
                tracing::warn!(topic = %ncmd, "sparkplug: the rebirth request could not be sent: {e}")
            }
        }
    }

    /// Counts a refused message by reason and logs it.
    fn reject(&mut self, reason: Reject, topic: &str) {
        if reason == Reject::OtherShard {
            // Expected where topics do not separate shards: another instance keeps it.
            self.metrics
                .messages
                .with_label_values(&["other_shard"])
                .inc();
            return;
        }
        self.metrics.messages.with_label_values(&["rejected"]).inc();
        self.metrics
            .rejected
            .with_label_values(&[reason.name()])
            .inc();
        self.log_reject(reason, topic);
    }

    /// At most one line per reason every 10 s; the topic is cut short (it is untrusted).
    fn log_reject(&mut self, reason: Reject, topic: &str) {
        if let Some(suppressed) = self.log.allow(reason) {
            let topic: String = topic.chars().take(80).collect();
            tracing::warn!(
                reason = reason.name(),
                suppressed,
                "mqtt message refused on topic {topic:?}"
            );
        }
    }
}
