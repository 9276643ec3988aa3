//! The pipeline: readings from every source -> accounting -> store, with metrics at each step.
//!
//! [`Pipeline`] is the synchronous core shared by `run` and `replay`. [`spawn`] runs it on its own
//! thread behind a channel for the daemon: sources send [`Envelope`]s, which are gathered into
//! batches (up to `max_batch_readings` or `commit_interval_ms`) and committed together; each
//! envelope's `ack` fires only once its readings are durable in the store, which is what lets an
//! MQTT source acknowledge the broker after, and only after, the data is safe.

use crate::accounting::ledger::{Accountant, Batch, RejectReason};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::reading::Reading;
use crate::sinks::inbox::{Inbox, InboxMetrics};
use crate::sinks::lock::ExclusiveLock;
use crate::sinks::store::{CommitSink, Store, StoreError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug)]
pub struct Pipeline {
    accountant: Accountant,
    store: Store,
    metrics: Arc<Metrics>,
    reject_log: crate::util::RateLimitedLog<RejectReason>,
    sink: Option<Box<dyn CommitSink>>,
    /// Set when the daemon stops: a commit held back by a full outbox gives up instead of waiting.
    shutdown: Arc<AtomicBool>,
    /// "Now" for a replay made as of another time (`ECOGATE_NOW`): readings later than it are in
    /// the future. `None`: the wall clock.
    as_of_ms: Option<i64>,
    /// This pipeline is the only writer of its store while it lives.
    _lock: ExclusiveLock,
}

impl Pipeline {
    /// Opens the store (taking its writer's lock) and reloads the counter baselines from it.
    pub fn open(
        config: Arc<Config>,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Result<Pipeline, StoreError> {
        let lock = ExclusiveLock::acquire(store.path(), "store")?;
        metrics.accounts.get_or_init(|| {
            crate::metrics::accounts::AccountMetrics::register(&metrics.registry, &config)
        });
        let mut accountant = Accountant::new(config.clone());
        let states = store.load_states(&accountant)?;
        tracing::info!(channels = states.len(), store = %store.path().display(), "counter baselines loaded");
        accountant.load_states(states);
        accountant.set_stored_until(store.newest_reading_ms()?);
        Ok(Pipeline {
            accountant,
            store,
            metrics,
            reject_log: crate::util::RateLimitedLog::new(Duration::from_secs(10)),
            sink: None,
            shutdown: Arc::new(AtomicBool::new(false)),
            as_of_ms: None,
            _lock: lock,
        })
    }

    /// Accounts as of `now_ms` instead of the wall clock (a replay under `ECOGATE_NOW`).
    pub fn set_as_of(&mut self, now_ms: Option<i64>) {
        self.as_of_ms = now_ms;
    }

    /// Adds a sink that commits together with the store (the InfluxDB outbox): the application
    /// builds it, the pipeline only drives its commit protocol.
    pub fn attach_sink(&mut self, sink: Box<dyn CommitSink>) {
        self.sink = Some(sink);
    }

    /// Set it when stopping, before closing the pipeline's channel.
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }

    pub fn accountant(&self) -> &Accountant {
        &self.accountant
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Every over-limit confirmation, held drop and persistent jump is logged: each is rare
    /// (once per channel and episode) and each needs a person.
    fn log_held(&self, batch: &Batch) {
        use crate::accounting::ledger::EventKind;
        // Duplicates and out-of-order readings (a redelivery flood) are most events: skip them
        // before looking anything up.
        let worth_a_line = |k: EventKind| {
            matches!(
                k,
                EventKind::OverLimit | EventKind::Held | EventKind::Rebased
            )
        };
        for e in batch.events.iter().filter(|e| worth_a_line(e.kind)) {
            let (meter, channel) = self.accountant.channel_ids(e.channel);
            let unit = self.accountant.channel_base_unit(e.channel);
            let base = |micro: i64| micro as f64 / crate::units::MICRO;
            match e.kind {
                EventKind::OverLimit => tracing::warn!(
                    meter,
                    channel,
                    confirmed_rate_per_h = base(e.delta_micro),
                    limit_per_h = self
                        .accountant
                        .counter_limit_micro_per_h(e.channel)
                        .map(|l| l / crate::units::MICRO),
                    unit,
                    "readings above max_rate_per_hour confirm one another: counted in full; raise the channel's limit"
                ),
                EventKind::Held => tracing::warn!(
                    meter,
                    channel,
                    value = base(e.to.micro),
                    high_water_mark = e.from.map(|p| base(p.micro)),
                    unit,
                    "register dropped below its high-water mark (not a rollover, not a reset from zero): held, nothing counted until it passes the mark; declare a replaced meter in the configuration"
                ),
                EventKind::Rebased => tracing::warn!(
                    meter,
                    channel,
                    jump = base(e.delta_micro),
                    unit,
                    "a jump far above the limit persisted: not counted, counting resumed from it"
                ),
                _ => {}
            }
        }
    }

    /// Accounts and commits one batch. On error nothing changed, in memory or on disk.
    pub fn ingest(&mut self, readings: &[Reading]) -> Result<Batch, StoreError> {
        let now_ms = self
            .as_of_ms
            .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let batch = self.accountant.process(readings, now_ms);
        let started = Instant::now();
        let committed = match self.sink.as_mut() {
            None => self.store.commit(&self.accountant, &batch),
            Some(out) => {
                out.begin(now_ms);
                let r = self
                    .store
                    .commit_with(&self.accountant, &batch, Some(out.as_hook()));
                match &r {
                    Ok(()) => out.committed(),
                    Err(_) => {
                        if let Err(e) = out.rolled_back() {
                            tracing::error!(
                                "taking back a failed commit's records: {}",
                                crate::util::error_chain(e.as_ref())
                            );
                        }
                    }
                }
                r
            }
        };
        if let Err(e) = committed {
            self.metrics.store_commit_errors.inc();
            self.metrics.store_writable.set(0);
            return Err(e);
        }
        self.metrics.store_writable.set(1);
        self.metrics
            .store_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.store_commits.inc();
        self.accountant.apply(&batch);
        // Read by benches/mqtt_ingest.rs to time a run without scraping /metrics, whose cost at
        // 1,000 meters (about 60 ms of CPU a scrape) would be most of what it measured.
        tracing::debug!(
            accepted = batch.accepted.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "committed"
        );
        self.metrics.observe(&batch);
        if let Some(a) = self.metrics.accounts.get() {
            a.observe(&batch, self.accountant.config());
            a.observe_counters(&self.accountant, &batch);
        }
        self.log_held(&batch);
        for r in &batch.rejections {
            if let Some(suppressed) = self.reject_log.allow(r.reason) {
                tracing::warn!(
                    reason = r.reason.name(),
                    meter = %r.meter,
                    channel = %r.channel,
                    ts_ms = r.ts_ms,
                    suppressed,
                    "reading rejected: {}",
                    r.detail
                );
            }
        }
        Ok(batch)
    }
}

/// Readings from a source, with an optional acknowledgement fired once they are committed.
#[derive(Debug)]
pub struct Envelope {
    pub readings: Vec<Reading>,
    pub ack: Option<Ack>,
    /// The source can get nothing more until this is committed (an MQTT broker's in-flight
    /// window is full): commit as soon as what has arrived is taken, without waiting for more.
    pub commit_now: bool,
}

/// How a source learns that its readings are committed.
#[derive(Debug)]
pub enum Ack {
    /// Fired for this envelope alone.
    Once(oneshot::Sender<()>),
    /// Counted: a source that sends many envelopes in order (MQTT) learns how many of its
    /// messages are committed, with one wake-up a batch instead of one a message. The number is
    /// how many messages this envelope carries.
    Count(Arc<AckCount>, u64),
}

impl Ack {
    /// How many messages wait for this acknowledgement.
    pub fn messages(&self) -> u64 {
        match self {
            Ack::Once(_) => 1,
            Ack::Count(_, n) => *n,
        }
    }

    /// Marks this one envelope committed (what the pipeline does for each after a commit).
    pub fn done(self) {
        acknowledge(vec![self]);
    }
}

impl From<oneshot::Sender<()>> for Ack {
    fn from(tx: oneshot::Sender<()>) -> Ack {
        Ack::Once(tx)
    }
}

/// Messages of one source committed so far (envelopes commit in the order they were sent).
#[derive(Debug, Default)]
pub struct AckCount {
    committed: std::sync::atomic::AtomicU64,
    pub changed: tokio::sync::Notify,
}

impl AckCount {
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }
}

/// Fires acknowledgements after a commit: each `Once`, and each counter once for the batch.
fn acknowledge(acks: Vec<Ack>) {
    let mut counters: Vec<(Arc<AckCount>, u64)> = Vec::new();
    for ack in acks {
        match ack {
            Ack::Once(tx) => {
                let _ = tx.send(());
            }
            Ack::Count(c, messages) => {
                match counters.iter_mut().find(|(k, _)| Arc::ptr_eq(k, &c)) {
                    Some((_, n)) => *n += messages,
                    None => counters.push((c, messages)),
                }
            }
        }
    }
    for (c, n) in counters {
        c.committed.fetch_add(n, Ordering::AcqRel);
        c.changed.notify_one();
    }
}

/// Handle to the pipeline thread.
#[derive(Debug)]
pub struct PipelineHandle {
    pub tx: mpsc::Sender<Envelope>,
    /// Ends with the number of readings that could not be committed before the stop.
    pub join: std::thread::JoinHandle<usize>,
}

/// Runs the pipeline on a dedicated thread (SQLite is blocking). The thread ends when every
/// sender is dropped, after committing what it holds.
pub fn spawn(mut pipeline: Pipeline, config: Arc<Config>) -> PipelineHandle {
    // Room for the sources to keep reading while a batch commits (about 2 s of 1,000 meters
    // at 10 messages/s each); bounded, so a stalled store still holds them back.
    let (tx, from_sources) = mpsc::channel::<Envelope>(20_000);
    let (to_pipeline, mut rx) = mpsc::channel::<Staged>(20_000);
    let inbox_metrics = pipeline.metrics.component(InboxMetrics::register);
    let accounted = Arc::new(AtomicU64::new(0));
    let inbox = if config.store.inbox {
        match pipeline
            .store
            .inbox_seq()
            .and_then(|seq| Inbox::open(pipeline.store.path(), seq).map(|i| (i, seq)))
        {
            Ok((inbox, seq)) => {
                accounted.store(seq, Ordering::Release);
                Some(inbox)
            }
            Err(e) => {
                // Without it, acknowledgements wait for the accounting commit, as they did
                // before there was an inbox: slower under a small broker window, never unsafe.
                tracing::error!(
                    "the inbox cannot be opened, acknowledging after each accounting commit: {e}"
                );
                None
            }
        }
    } else {
        None
    };
    {
        let (accounted, metrics, stopping) = (
            accounted.clone(),
            inbox_metrics.clone(),
            pipeline.shutdown.clone(),
        );
        std::thread::Builder::new()
            .name("ecogate-inbox".into())
            .spawn(move || {
                run_inbox(
                    inbox,
                    from_sources,
                    to_pipeline,
                    &accounted,
                    &metrics,
                    &stopping,
                )
            })
            .expect("spawning the inbox thread");
    }
    let interval = Duration::from_millis(config.store.commit_interval_ms);
    let max_batch = config.store.max_batch_readings;
    let join = std::thread::Builder::new()
        .name("ecogate-pipeline".into())
        .spawn(move || {
            // `None` runs retention after the first batch. (Not `now - 1 h`: on a gateway that
            // booted less than an hour ago that subtraction would panic.)
            let mut last_retention: Option<Instant> = None;
            let mut open = true;
            // The last batch was large: a stream is running, and its end (the first pause)
            // commits whatever it holds.
            let mut streaming = false;
            let mut uncommitted = 0usize;
            while open {
                let Some(Staged {
                    env: first,
                    inbox_seq: first_seq,
                }) = rx.blocking_recv()
                else {
                    break;
                };
                if first.readings.is_empty() && first.ack.is_none() {
                    // A nudge with nothing in hand: what it asked for is already committed.
                    continue;
                }
                // The batch's highest inbox sequence, and how many of its readings came that way.
                let mut inbox_seq = first_seq;
                let mut inboxed = if first_seq.is_some() {
                    first.readings.len()
                } else {
                    0
                };
                let started = Instant::now();
                let deadline = started + interval;
                // With acknowledgements waiting, wait at most 200 ms for more: at high rates a
                // commit then covers thousands of messages, so each window row is written once for
                // many readings, and the broker's in-flight window keeps moving (20 ms was
                // measured slower: docs/benchmarks.md).
                let ack_deadline = started + interval.min(Duration::from_millis(200));
                let mut last_arrival = started;
                let mut commit_now = first.commit_now;
                let mut readings = first.readings;
                let mut acks: Vec<Ack> = first.ack.into_iter().collect();
                let mut ack_messages: u64 = acks.iter().map(Ack::messages).sum();
                while readings.len() < max_batch {
                    match rx.try_recv() {
                        Ok(Staged { env, inbox_seq: seq }) => {
                            if seq.is_some() {
                                inbox_seq = inbox_seq.max(seq);
                                inboxed += env.readings.len();
                            }
                            commit_now |= env.commit_now;
                            readings.extend(env.readings);
                            ack_messages += env.ack.as_ref().map_or(0, Ack::messages);
                            acks.extend(env.ack);
                            last_arrival = Instant::now();
                        }
                        Err(mpsc::error::TryRecvError::Empty) => {
                            let now = Instant::now();
                            // A pause in arrivals with acknowledgements waiting usually means
                            // the broker's in-flight window is used up: it sends no more until
                            // these are acknowledged, so waiting longer only stalls the flow.
                            let paused = now.duration_since(last_arrival) >= ACK_IDLE;
                            if now >= deadline
                                // Group commit: a source waits on this batch alone.
                                || commit_now
                                || (!acks.is_empty()
                                    && (now >= ack_deadline || paused || ack_messages >= ACK_EARLY))
                                // A burst that has ended (a Modbus poll round, an MQTT
                                // stream) and is large enough to amortise a commit's fixed
                                // cost, or the tail of a stream: waiting for the interval
                                // would only delay it.
                                || (paused && (streaming || readings.len() >= PAUSE_COMMIT_READINGS))
                            {
                                break;
                            }
                            // With acknowledgements waiting, a source may ask for the commit at
                            // any moment (a nudge under a broker's small window): looked for
                            // every 200 µs, as a millisecond here was most of a window's turn.
                            std::thread::sleep(if acks.is_empty() {
                                Duration::from_millis(5)
                            } else {
                                Duration::from_micros(200)
                            });
                        }
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
                streaming = readings.len() >= PAUSE_COMMIT_READINGS;
                if commit_now {
                    pipeline.metrics.group_commits.inc();
                }
                tracing::trace!(
                    readings = readings.len(),
                    ack_messages,
                    commit_now,
                    gathered_us = started.elapsed().as_micros() as u64,
                    "commit"
                );
                pipeline.store.set_inbox_seq(inbox_seq);
                if commit_with_retry(&mut pipeline, &readings) {
                    acknowledge(acks);
                    if let Some(seq) = inbox_seq {
                        accounted.store(seq, Ordering::Release);
                        inbox_metrics.backlog.sub(inboxed as i64);
                    }
                } else {
                    // Inbox readings are kept there for the next start: not lost.
                    uncommitted += readings.len() - inboxed;
                }
                pipeline.store.set_inbox_seq(None);
                if last_retention.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
                    last_retention = Some(Instant::now());
                    let now_ms = chrono::Utc::now().timestamp_millis();
                    match pipeline
                        .store
                        .apply_retention(&config.store.retention, now_ms)
                    {
                        Ok(n) => tracing::info!(deleted = n, "retention applied"),
                        Err(e) => tracing::error!("retention failed: {e}"),
                    }
                }
            }
            tracing::info!(uncommitted, "pipeline drained");
            uncommitted
        })
        .expect("spawning the pipeline thread");
    PipelineHandle { tx, join }
}

/// What the pipeline thread receives: an envelope, with the inbox sequence of its last reading
/// when its readings are in the inbox (acknowledged already; the commit records the sequence).
struct Staged {
    env: Envelope,
    inbox_seq: Option<u64>,
}

/// Readings an inbox append takes at most: the rest wait for the next one.
const INBOX_APPEND_READINGS: usize = 20_000;

/// Readings acknowledged from the inbox but not yet accounted, at most: beyond it the inbox
/// thread stops taking (and acknowledging) more until the accounting catches up, so that what
/// is acknowledged ahead of the accounting stays about 10 MB of readings in memory, and the
/// rest waits in the broker's window. It was meant to stop the redeliveries seen at 50,000
/// meters (the broker dropping a connection whose keep-alive went unanswered, then sending
/// again what was unacknowledged); measured, it did not (docs/performance.md, 2026-12-05):
/// those are still open, and harmless to the figures (a redelivered reading is stored once).
const INBOX_MAX_UNACCOUNTED: i64 = 50_000;

/// The inbox thread: envelopes whose sender waits for an acknowledgement (a counted one, MQTT
/// QoS 1) are appended to the inbox and acknowledged at once; every envelope then goes on to the
/// pipeline thread in the order it came. Each append takes all that arrived during the one
/// before (a group commit that paces itself). First, what a stop left in the inbox unaccounted
/// goes to the pipeline, before anything new.
fn run_inbox(
    mut inbox: Option<Inbox>,
    mut rx: mpsc::Receiver<Envelope>,
    out: mpsc::Sender<Staged>,
    accounted: &AtomicU64,
    metrics: &InboxMetrics,
    stopping: &AtomicBool,
) {
    // What an earlier generation left unaccounted is counted again below, from the inbox itself.
    metrics.backlog.set(0);
    if let Some(ib) = &inbox {
        let mut after = accounted.load(Ordering::Acquire);
        loop {
            match ib.unaccounted(after, 10_000) {
                Ok(rows) if rows.is_empty() => break,
                Ok(rows) => {
                    after = rows.last().map_or(after, |r| r.0);
                    tracing::info!(
                        readings = rows.len(),
                        through_seq = after,
                        "accounting readings the inbox held from before the stop"
                    );
                    metrics.backlog.add(rows.len() as i64);
                    let env = Envelope {
                        readings: rows.into_iter().map(|(_, r)| r).collect(),
                        ack: None,
                        commit_now: false,
                    };
                    let staged = Staged {
                        env,
                        inbox_seq: Some(after),
                    };
                    if out.blocking_send(staged).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // Left in the inbox for the next start; new readings go on without it.
                    tracing::error!("reading the inbox: {e}; it is not used until a restart");
                    inbox = None;
                    break;
                }
            }
        }
    }
    let counted = |e: &Envelope| matches!(e.ack, Some(Ack::Count(..)));
    loop {
        // Stopping: the pipeline drains what is staged; waiting here could outlast it.
        while inbox.is_some()
            && metrics.backlog.get() >= INBOX_MAX_UNACCOUNTED
            && !stopping.load(Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut n = first.readings.len();
        let mut got = vec![first];
        while n < INBOX_APPEND_READINGS {
            match rx.try_recv() {
                Ok(e) => {
                    n += e.readings.len();
                    got.push(e);
                }
                Err(_) => break,
            }
        }
        let lasts = match inbox.as_mut() {
            Some(ib) if got.iter().any(counted) => {
                let groups: Vec<&[Reading]> = got
                    .iter()
                    .filter(|e| counted(e))
                    .map(|e| e.readings.as_slice())
                    .collect();
                let started = Instant::now();
                let mut delay = Duration::from_millis(200);
                loop {
                    match ib.append(&groups, accounted.load(Ordering::Acquire)) {
                        Ok(lasts) => {
                            tracing::debug!(
                                readings = n,
                                ms = started.elapsed().as_secs_f64() * 1e3,
                                "inbox append"
                            );
                            metrics.appends.inc();
                            if got.iter().any(|e| e.commit_now) {
                                metrics.group_appends.inc();
                            }
                            metrics
                                .append_seconds
                                .observe(started.elapsed().as_secs_f64());
                            metrics
                                .backlog
                                .add(groups.iter().map(|g| g.len() as i64).sum());
                            break Some(lasts);
                        }
                        // Stopping: these go to the pipeline with their acknowledgements, as
                        // without an inbox.
                        Err(e) if stopping.load(Ordering::Relaxed) => {
                            tracing::error!("inbox append failed while stopping: {e}");
                            break None;
                        }
                        Err(e) => {
                            tracing::error!("inbox append failed, retrying in {delay:?}: {e}");
                            std::thread::sleep(delay);
                            delay = (delay * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            }
            _ => None,
        };
        if lasts.is_none() && inbox.is_some() && got.iter().any(counted) {
            // These go on with their acknowledgements; a later append acknowledged at once
            // could overtake them in the source's count, so the inbox is done for this run.
            inbox = None;
        }
        let mut lasts = lasts.map(Vec::into_iter);
        let mut acks = Vec::new();
        let mut staged = Vec::with_capacity(got.len());
        for mut env in got {
            if inbox.is_some() {
                // What a source waits on (the broker's window) is the inbox append, made at once
                // anyway: the accounting batches as for any stream.
                env.commit_now = false;
            }
            let inbox_seq = match lasts.as_mut() {
                Some(l) if counted(&env) => {
                    acks.extend(env.ack.take());
                    l.next().flatten()
                }
                _ => None,
            };
            staged.push(Staged { env, inbox_seq });
        }
        // Durable now: acknowledged before the pipeline, which may be busy, takes them.
        acknowledge(acks);
        for s in staged {
            if out.blocking_send(s).is_err() {
                return;
            }
        }
    }
    // The inbox closes before the pipeline thread can end (it waits for `out`), so the next
    // generation's pipeline opens it afresh.
    drop(inbox);
    drop(out);
}

/// How long a batch with acknowledgements waiting may see no new arrivals before it commits.
const ACK_IDLE: Duration = Duration::from_millis(20);

/// A batch of at least this many readings, or any batch after one, commits at the first pause
/// in arrivals instead of at the end of the commit interval. Other batches wait, so a trickle
/// of readings still costs one commit an interval (each commit rewrites the window rows it
/// touches).
const PAUSE_COMMIT_READINGS: usize = 1024;

/// With this many messages waiting for their acknowledgement, commit without waiting for a
/// pause: the broker refills its in-flight window as these are acknowledged while the next batch
/// arrives, instead of the two taking turns. Not much lower: a commit rewrites the window rows of
/// every meter it touches, whatever its size, so smaller early commits cost more CPU per message
/// and lowered the rate (the measurement is in docs/benchmarks.md).
const ACK_EARLY: u64 = 16_384;

/// A commit that fails (disk full, store locked) is retried with backoff rather than dropped:
/// upstream waits, and sources that acknowledge only after commit keep their data.
fn commit_with_retry(pipeline: &mut Pipeline, readings: &[Reading]) -> bool {
    let mut delay = Duration::from_millis(200);
    loop {
        match pipeline.ingest(readings) {
            Ok(_) => return true,
            Err(e) if pipeline.shutdown.load(Ordering::Relaxed) => {
                // Not acknowledged: a source that acknowledges after commit (MQTT) has the broker
                // deliver these again on the next start.
                tracing::error!(
                    readings = readings.len(),
                    "stopping with readings not committed: {e}"
                );
                return false;
            }
            Err(e) => {
                tracing::error!("commit failed, retrying in {delay:?}: {e}");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}
