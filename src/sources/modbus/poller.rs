//! One task per bus (a serial line, a serial device server, or one Modbus TCP address): one
//! request at a time on it, devices polled on a fixed-rate schedule aligned to the wall clock,
//! every request under a timeout.
//!
//! After a timeout or a broken response the connection is dropped and reopened: a late reply
//! would otherwise be taken as the answer to the next request (tokio-modbus #324). A device that
//! keeps failing is backed off (exponential, with jitter, up to a minute) so that it costs its bus
//! one request per back-off period instead of a timeout every poll: the other devices on the bus
//! stay on schedule. A failing device is asked only in the line's slack, with the slack as its
//! timeout, so that it never holds the line when a healthy poll is due, and yet is not starved
//! when the slack is shorter than its timeout (healthy devices polled more often than a failing
//! one's timeout: without this it was never asked again, tests/chaos.rs). Readings are
//! timestamped when their response arrives.

use super::config::{Device, Transport};
use super::decode;
use super::metrics::ModbusMetrics;
use super::plan::{self, Function, Request};
use super::transport;
use crate::metrics::Metrics;
use crate::pipeline::Envelope;
use crate::reading::{Quality, Reading};
use crate::sources::SourceContext;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::Slave;

/// Health of one device, for the metrics endpoint.
#[derive(Debug, Default)]
pub struct DeviceHealth {
    pub up: AtomicBool,
    /// Epoch milliseconds of the last fully successful poll; 0 if never.
    pub last_success_ms: AtomicI64,
    pub consecutive_failures: AtomicU64,
    /// Latency of the last successful request, microseconds.
    pub last_latency_us: AtomicU64,
    pub polls_ok: AtomicU64,
    pub polls_failed: AtomicU64,
    /// Polls of a healthy device that could not start in their slot (the bus was busy or the
    /// task fell behind). The skipped slots of a failing device, which is probed only in the
    /// line's slack, are not misses.
    pub polls_missed: AtomicU64,
    /// Why the last poll failed: 0 none (it succeeded), else the index in
    /// [`super::reasons::FAILURE_REASONS`] plus one.
    pub last_failure: std::sync::atomic::AtomicU8,
}

/// Health of every polled device, by meter id.
#[derive(Debug, Default)]
pub struct Health {
    pub devices: BTreeMap<String, Arc<DeviceHealth>>,
}

/// Handle to the running Modbus source.
#[derive(Debug)]
pub struct ModbusSource {
    pub health: Arc<Health>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts one task per bus.
pub fn spawn(
    config: &super::config::ModbusConfig,
    ctx: SourceContext,
    metrics: Arc<Metrics>,
) -> ModbusSource {
    let metrics = metrics.component(ModbusMetrics::register);
    let mut health = Health::default();
    let mut buses = Vec::new();
    for bus in &config.buses {
        let devices: Vec<DeviceState> = bus
            .devices
            .iter()
            .map(|d| {
                metrics.request_seconds.with_label_values(&[&d.meter]);
                let h = Arc::new(DeviceHealth::default());
                health.devices.insert(d.meter.clone(), h.clone());
                DeviceState::new(Arc::clone(d), h)
            })
            .collect();
        let link = Link {
            id: bus.id.clone(),
            transport: bus.transport.clone(),
        };
        buses.push((link, devices));
    }
    let tasks = buses
        .into_iter()
        .map(|(bus, devices)| {
            let ctx = ctx.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move { BusTask::new(bus, devices, ctx, metrics).run().await })
        })
        .collect();
    ModbusSource {
        health: Arc::new(health),
        tasks,
    }
}

struct DeviceState {
    device: Arc<Device>,
    requests: Arc<Vec<Request>>,
    health: Arc<DeviceHealth>,
    next_due_ms: i64,
    backoff_until_ms: i64,
    /// When it was last asked with its whole timeout (see [`FULL_PROBE_EVERY_MS`]).
    last_full_probe_ms: i64,
    bad_log: crate::util::Throttle,
}

/// A failing device is probed in the line's slack with the slack as its timeout (a device that
/// has come back answers in a few milliseconds; a dead one gives up the line before the next
/// healthy poll is due), if the slack is at least this long (or its whole timeout, if shorter).
const PROBE_FLOOR_MS: i64 = 50;

/// A failing device that the slack never let be asked with its whole timeout (a slow device,
/// answering later than the slack lasts) is asked with it once this long: it may then hold up
/// a healthy poll by at most its timeout, once a minute, rather than never come back.
const FULL_PROBE_EVERY_MS: i64 = 60_000;

impl DeviceState {
    fn new(device: Arc<Device>, health: Arc<DeviceHealth>) -> Self {
        let spans: Vec<_> = device.points.iter().map(|p| p.span).collect();
        let requests = plan::plan(&spans, device.limits);
        let interval = device.poll_interval_ms as i64;
        let now = now_ms();
        DeviceState {
            requests: Arc::new(requests),
            health,
            next_due_ms: (now / interval + 1) * interval,
            backoff_until_ms: 0,
            last_full_probe_ms: now,
            bad_log: crate::util::Throttle::default(),
            device,
        }
    }

    fn due_ms(&self) -> i64 {
        self.next_due_ms.max(self.backoff_until_ms)
    }

    /// Its last poll failed: probed (once per back-off from the second failure on, without
    /// retries) only in the line's slack.
    fn failing(&self) -> bool {
        self.health.consecutive_failures.load(Ordering::Relaxed) >= 1
    }

    /// How long a probe of this failing device starting at `at` may wait for its answer, with
    /// the next healthy poll of the line due at `healthy_next`; `None` if it may not start then.
    fn probe_timeout_ms(&self, at: i64, healthy_next: Option<i64>) -> Option<i64> {
        let full = self.device.timeout_ms as i64;
        let Some(h) = healthy_next else {
            return Some(full);
        };
        let slack = h - at;
        if slack >= full || at - self.last_full_probe_ms >= FULL_PROBE_EVERY_MS {
            Some(full)
        } else if slack >= PROBE_FLOOR_MS.min(full) {
            Some(slack)
        } else {
            None
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Why a request did not give usable registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    Timeout,
    Exception(u8),
    Transport,
    /// The response did not fit the request (wrong length).
    BadResponse,
    Connect,
}

impl Failure {
    pub(super) fn name(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Exception(_) => "exception",
            Failure::Transport => "transport_error",
            Failure::BadResponse => "bad_response",
            Failure::Connect => "connect_error",
        }
    }

    /// Whether the connection can no longer be trusted.
    fn poisons_connection(self) -> bool {
        !matches!(self, Failure::Exception(_))
    }
}

/// What a bus task needs of its bus besides the devices.
struct Link {
    id: String,
    transport: Transport,
}

struct BusTask {
    bus: Link,
    devices: Vec<DeviceState>,
    ctx: SourceContext,
    metrics: Arc<ModbusMetrics>,
    conn: Option<Context>,
    connect_failures: u32,
    next_connect_ms: i64,
    clock: crate::util::ClockWatch,
}

impl BusTask {
    fn new(
        bus: Link,
        devices: Vec<DeviceState>,
        ctx: SourceContext,
        metrics: Arc<ModbusMetrics>,
    ) -> Self {
        BusTask {
            bus,
            devices,
            ctx,
            metrics,
            conn: None,
            connect_failures: 0,
            next_connect_ms: 0,
            clock: crate::util::ClockWatch::new(now_ms()),
        }
    }

    async fn run(mut self) {
        tracing::info!(bus = %self.bus.id, devices = self.devices.len(), "modbus bus started");
        loop {
            if self.devices.is_empty() {
                return;
            }
            // A failing device's probe may hold the line for its whole timeout: it goes only
            // where it ends before the next healthy poll is due (the line's slack), never ahead
            // of one. With every device failing, probes go as their back-off allows.
            let now = now_ms();
            self.follow_clock_step(now);
            let healthy_next = self.healthy_next_due_ms();
            let Some((idx, due)) = self
                .devices
                .iter()
                .enumerate()
                .filter_map(|(i, d)| {
                    if !d.failing() {
                        return Some((i, d.next_due_ms));
                    }
                    let at = d.due_ms().max(now);
                    d.probe_timeout_ms(at, healthy_next).map(|_| (i, at))
                })
                .min_by_key(|(_, due)| *due)
            else {
                return;
            };
            let wait = (due - now_ms()).max(0) as u64;
            let mut shutdown = self.ctx.shutdown.clone();
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = shutdown.changed() => break,
            }
            self.poll(idx).await;
            let now = now_ms();
            // A step during the wait or the poll: the schedule starts again from now, and no
            // slot was missed.
            if self.follow_clock_step(now) {
                continue;
            }
            let d = &mut self.devices[idx];
            let interval = d.device.poll_interval_ms as i64;
            let mut next = d.next_due_ms + interval;
            if next <= now {
                // Fell behind (a slow bus or a stalled pipeline): skip to the next slot rather
                // than firing a burst of late polls. Only a healthy device's skipped slots are
                // misses: a failing one is probed when its back-off and the slack allow.
                let skipped = ((now - next) / interval + 1) as u64;
                if !d.failing() {
                    d.health.polls_missed.fetch_add(skipped, Ordering::Relaxed);
                    self.metrics.polls_missed.inc_by(skipped);
                }
                next += skipped as i64 * interval;
            }
            d.next_due_ms = next;
        }
        if let Some(mut conn) = self.conn.take() {
            let _ = tokio_modbus::client::Client::disconnect(&mut conn).await;
        }
        tracing::info!(bus = %self.bus.id, "modbus bus stopped");
    }

    /// Moves the schedule with a step of the wall clock, which it is kept in (poll slots are
    /// aligned to the clock); returns whether the clock stepped. Back: the slots ahead would be
    /// an hour away after a 1-hour step, and the bus would go unpolled for that hour. Forward:
    /// the slots behind would count as missed polls that nobody missed. Either way each
    /// device's next slot is the clock's next after now, and the back-offs keep what they had
    /// left to run.
    fn follow_clock_step(&mut self, now: i64) -> bool {
        let step = self.clock.step_ms(now);
        if step == 0 {
            return false;
        }
        tracing::warn!(
            bus = %self.bus.id,
            step_s = step as f64 / 1000.0,
            "the gateway's clock was stepped; modbus polls rescheduled on it (readings are stamped with the clock, see docs/operations.md)"
        );
        for d in &mut self.devices {
            let interval = d.device.poll_interval_ms as i64;
            d.next_due_ms = (now / interval + 1) * interval;
            if d.backoff_until_ms > 0 {
                d.backoff_until_ms += step;
            }
            d.last_full_probe_ms += step;
        }
        self.next_connect_ms += step;
        true
    }

    /// When the next poll of a healthy device on this line is due (`None`: every one failing).
    fn healthy_next_due_ms(&self) -> Option<i64> {
        self.devices
            .iter()
            .filter(|d| !d.failing())
            .map(|d| d.next_due_ms)
            .min()
    }

    /// Whether a request of `timeout` started now ends before any other device's healthy poll
    /// is due.
    fn fits_in_slack(&self, idx: usize, timeout: Duration) -> bool {
        let ends = now_ms() + timeout.as_millis() as i64;
        self.devices
            .iter()
            .enumerate()
            .filter(|(i, d)| *i != idx && !d.failing())
            .all(|(_, d)| ends <= d.next_due_ms)
    }

    async fn ensure_connected(&mut self, timeout: Duration) -> bool {
        if self.conn.is_some() {
            return true;
        }
        if now_ms() < self.next_connect_ms {
            return false;
        }
        match transport::connect(&self.bus.transport, timeout.max(Duration::from_millis(500))).await
        {
            Ok(c) => {
                if self.connect_failures > 0 {
                    tracing::info!(bus = %self.bus.id, "modbus reconnected");
                }
                self.metrics.connects.inc();
                self.conn = Some(c);
                self.connect_failures = 0;
                true
            }
            Err(e) => {
                self.connect_failures += 1;
                let delay_ms = crate::util::backoff_ms(200.0, self.connect_failures, 30_000.0);
                self.next_connect_ms = now_ms() + delay_ms as i64;
                if self.connect_failures <= 3 || self.connect_failures.is_multiple_of(20) {
                    tracing::warn!(bus = %self.bus.id, failures = self.connect_failures, "modbus connect failed: {e}");
                }
                false
            }
        }
    }

    async fn read(
        &mut self,
        unit_id: u8,
        req: &Request,
        timeout: Duration,
    ) -> Result<Vec<u16>, Failure> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failure::Connect);
        };
        read_request(conn, unit_id, req, timeout).await
    }

    async fn poll(&mut self, idx: usize) {
        let device = Arc::clone(&self.devices[idx].device);
        let requests = Arc::clone(&self.devices[idx].requests);
        let mut timeout = Duration::from_millis(device.timeout_ms);
        if self.devices[idx].failing() {
            let now = now_ms();
            let healthy_next = self.healthy_next_due_ms();
            let d = &mut self.devices[idx];
            let ms = d
                .probe_timeout_ms(now, healthy_next)
                .unwrap_or(PROBE_FLOOR_MS.min(device.timeout_ms as i64));
            if ms >= device.timeout_ms as i64 {
                d.last_full_probe_ms = now;
            }
            timeout = Duration::from_millis(ms.max(1) as u64);
        } else {
            self.devices[idx].last_full_probe_ms = now_ms();
        }
        // A device that keeps failing is probed once, without retries: retrying a dead device
        // only takes bus time from the healthy ones.
        let retries = if self.devices[idx]
            .health
            .consecutive_failures
            .load(Ordering::Relaxed)
            >= 2
        {
            0
        } else {
            device.retries
        };
        let mut readings = Vec::with_capacity(device.points.len());
        let mut failure: Option<Failure> = None;
        let mut latency_us = 0u64;
        'requests: for req in requests.iter() {
            let mut attempt = 0;
            loop {
                if !self.ensure_connected(timeout).await {
                    failure = Some(Failure::Connect);
                    self.metrics
                        .requests
                        .with_label_values(&[Failure::Connect.name()])
                        .inc();
                    break 'requests;
                }
                let started = Instant::now();
                match self.read(device.unit_id, req, timeout).await {
                    Ok(words) => {
                        self.metrics.requests.with_label_values(&["ok"]).inc();
                        latency_us = started.elapsed().as_micros() as u64;
                        self.metrics
                            .request_seconds
                            .with_label_values(&[&device.meter])
                            .observe(latency_us as f64 / 1e6);
                        let ts_ms = self.ctx.clock.now_ms();
                        self.decode_points(idx, req, &words, ts_ms, &mut readings);
                        break;
                    }
                    Err(f) => {
                        self.metrics.requests.with_label_values(&[f.name()]).inc();
                        if let Failure::Exception(code) = f {
                            self.metrics
                                .exceptions
                                .with_label_values(&[exception_label(code)])
                                .inc();
                        }
                        if f.poisons_connection() {
                            self.conn = None;
                            self.metrics.disconnects.inc();
                        }
                        failure = Some(f);
                        attempt += 1;
                        // An exception is the device's answer: asking again will not change it.
                        // A retry, like a failing device's probe, goes only where it ends
                        // before another device's healthy poll is due.
                        if matches!(f, Failure::Exception(_))
                            || attempt > retries
                            || !self.fits_in_slack(idx, timeout)
                        {
                            // A silent device: stop here rather than time out on every request.
                            if matches!(f, Failure::Timeout | Failure::Connect) {
                                break 'requests;
                            }
                            break;
                        }
                    }
                }
            }
        }
        if !readings.is_empty() {
            let _ = self
                .ctx
                .output
                .send(Envelope {
                    readings,
                    ack: None,
                    commit_now: false,
                })
                .await;
        }
        let d = &mut self.devices[idx];
        match failure {
            None => {
                d.health.up.store(true, Ordering::Relaxed);
                d.health.last_success_ms.store(now_ms(), Ordering::Relaxed);
                d.health.consecutive_failures.store(0, Ordering::Relaxed);
                d.health
                    .last_latency_us
                    .store(latency_us, Ordering::Relaxed);
                d.health.polls_ok.fetch_add(1, Ordering::Relaxed);
                d.health.last_failure.store(0, Ordering::Relaxed);
                d.backoff_until_ms = 0;
            }
            Some(f) => {
                d.health.up.store(false, Ordering::Relaxed);
                d.health.polls_failed.fetch_add(1, Ordering::Relaxed);
                let reason = super::reasons::FAILURE_REASONS
                    .iter()
                    .position(|r| r.code == f.name())
                    .map_or(0, |i| i as u8 + 1);
                d.health.last_failure.store(reason, Ordering::Relaxed);
                let n = d
                    .health
                    .consecutive_failures
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                if n >= 2 {
                    let interval = d.device.poll_interval_ms as f64;
                    let backoff = crate::util::backoff_ms(interval, n as u32, 60_000.0);
                    d.backoff_until_ms = now_ms() + backoff as i64;
                }
                if n <= 3 || n.is_multiple_of(50) {
                    let detail = match f {
                        Failure::Exception(code) => {
                            format!("exception {code} ({})", exception_label(code))
                        }
                        other => other.name().to_string(),
                    };
                    tracing::warn!(bus = %self.bus.id, device = %d.device.meter, unit_id = d.device.unit_id, consecutive = n, "modbus poll failed: {detail}");
                }
            }
        }
    }

    fn decode_points(
        &mut self,
        idx: usize,
        req: &Request,
        words: &[u16],
        ts_ms: i64,
        out: &mut Vec<Reading>,
    ) {
        let d = &mut self.devices[idx];
        for &(pi, offset) in &req.points {
            let p = &d.device.points[pi];
            let start = offset as usize;
            let end = (start + p.data_type.width() as usize).min(words.len());
            let bad = match point_value(p, &words[start..end]) {
                Err(e) => Some(e),
                Ok(value) => {
                    out.push(Reading {
                        meter: d.device.meter.clone(),
                        channel: p.channel.clone(),
                        amount: value,
                        unit: p.unit,
                        ts_ms,
                        quality: Quality::Good,
                        stamped_on_arrival: true,
                    });
                    None
                }
            };
            if let Some((reason, detail)) = bad {
                self.metrics.bad_values.with_label_values(&[reason]).inc();
                let interval = Duration::from_millis(d.device.poll_interval_ms.max(60_000));
                if let Some(suppressed) = d.bad_log.allow(interval) {
                    tracing::warn!(
                        device = %d.device.meter,
                        unit_id = d.device.unit_id,
                        register = p.span.address,
                        function = p.span.function.name(),
                        channel = %p.channel,
                        suppressed,
                        "modbus value refused ({reason}): {detail}"
                    );
                }
            }
        }
    }
}

/// One read request on an open connection, within `timeout`.
pub(super) async fn read_request(
    conn: &mut tokio_modbus::client::Context,
    unit_id: u8,
    req: &Request,
    timeout: Duration,
) -> Result<Vec<u16>, Failure> {
    conn.set_slave(Slave(unit_id));
    let (addr, count) = (req.address, req.count);
    let call = async {
        match req.function {
            Function::Holding => conn.read_holding_registers(addr, count).await,
            Function::Input => conn.read_input_registers(addr, count).await,
            Function::Coil => conn
                .read_coils(addr, count)
                .await
                .map(|r| r.map(|bits| bits.into_iter().map(u16::from).collect())),
            Function::DiscreteInput => conn
                .read_discrete_inputs(addr, count)
                .await
                .map(|r| r.map(|bits| bits.into_iter().map(u16::from).collect())),
        }
    };
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(Failure::Timeout),
        Ok(Err(_)) => Err(Failure::Transport),
        Ok(Ok(Err(code))) => Err(Failure::Exception(u8::from(code))),
        Ok(Ok(Ok(words))) if words.len() < count as usize => Err(Failure::BadResponse),
        Ok(Ok(Ok(mut words))) => {
            // Coil reads come back padded to a whole byte.
            words.truncate(count as usize);
            Ok(words)
        }
    }
}

/// A point's value from its registers: raw x scale + offset, x the CT/PT multiplier, checked
/// against the point's range. Err: (reason label, detail).
pub(super) fn point_value(
    p: &super::config::Point,
    words: &[u16],
) -> Result<f64, (&'static str, String)> {
    let raw =
        decode::decode(words, p.data_type, p.word_order).map_err(|e| ("decode", e.to_string()))?;
    let value = (raw * p.scale + p.offset) * p.multiplier;
    if !value.is_finite() {
        Err(("not_finite", format!("{value}")))
    } else if p.min.is_some_and(|m| value < m) || p.max.is_some_and(|m| value > m) {
        Err((
            "out_of_range",
            format!("{value} outside [{}, {}]", fmt_opt(p.min), fmt_opt(p.max)),
        ))
    } else {
        Ok(value)
    }
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| v.to_string())
}

/// Fixed label values for exception codes, so a device cannot create series.
pub fn exception_label(code: u8) -> &'static str {
    match code {
        1 => "illegal_function",
        2 => "illegal_data_address",
        3 => "illegal_data_value",
        4 => "server_device_failure",
        5 => "acknowledge",
        6 => "server_device_busy",
        8 => "memory_parity_error",
        10 => "gateway_path_unavailable",
        11 => "gateway_target_failed",
        _ => "other",
    }
}

impl Transport {
    pub fn describe(&self) -> String {
        match self {
            Transport::Tcp(a) => format!("tcp {a}"),
            Transport::RtuOverTcp(a) => format!("rtu over tcp {a}"),
            Transport::Rtu(s) => format!("rtu {} {} baud", s.path.display(), s.baud),
        }
    }
}
