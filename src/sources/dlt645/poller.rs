//! One task per line: one request in flight at a time (RS-485 is half duplex), meters polled in
//! turn on their own intervals, and a meter that stops answering is tried again only in the
//! line's slack, so that its timeouts never delay the meters that answer.

use super::config::{Line, MeterConfig, Parity, Transport};
use super::data;
use super::frame::{self, Address, Decoded, Frame};
use super::health::{Dlt645Metrics, Health, MeterHealth};
use crate::pipeline::Envelope;
use crate::reading::{Quality, Reading};
use crate::sources::SourceContext;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// A byte stream to a line: a TCP connection to a serial server, or the serial port.
pub trait Port: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Port for T {}

/// Opens the line's port within `within`.
pub async fn open(transport: &Transport, within: Duration) -> std::io::Result<Box<dyn Port>> {
    match transport {
        Transport::Tcp(addr) => {
            let s = tokio::time::timeout(within, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
            s.set_nodelay(true)?;
            Ok(Box::new(s))
        }
        Transport::Serial(s) => {
            use tokio_serial::SerialPortBuilderExt;
            let port = tokio_serial::new(s.path.to_string_lossy(), s.baud)
                .data_bits(tokio_serial::DataBits::Eight)
                .stop_bits(tokio_serial::StopBits::One)
                .parity(match s.parity {
                    Parity::Even => tokio_serial::Parity::Even,
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Odd => tokio_serial::Parity::Odd,
                })
                .open_native_async()
                .map_err(std::io::Error::other)?;
            Ok(Box::new(port))
        }
    }
}

/// Why one read failed, with the reason code of [`super::health::REASONS`].
#[derive(Debug)]
pub struct ReadError {
    pub code: &'static str,
    pub detail: String,
    /// The connection can no longer be trusted (an I/O error).
    pub broken: bool,
}

/// What a request/response exchange saw besides its reply.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discarded {
    pub noise: u64,
    pub stale: u64,
}

/// Sends one read of `di` to `address` and waits for its reply: frames from other meters, or
/// replies to an earlier request that came late, are skipped (counted in `discarded`).
pub async fn read_one(
    port: &mut dyn Port,
    wake_up: bool,
    address: Address,
    edition: frame::Edition,
    di: &[u8],
    timeout: Duration,
    discarded: &mut Discarded,
) -> Result<Frame, ReadError> {
    let mut request = Vec::with_capacity(32);
    if wake_up {
        request.extend_from_slice(&frame::PREAMBLE);
    }
    request.extend(frame::read_request(address, edition, di));
    let io = |e: std::io::Error| ReadError {
        code: "transport_error",
        detail: e.to_string(),
        broken: true,
    };
    port.write_all(&request).await.map_err(io)?;
    port.flush().await.map_err(io)?;
    let deadline = Instant::now() + timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    loop {
        // Take every frame the buffer holds before reading more.
        loop {
            match frame::decode(&buf) {
                Decoded::Incomplete => break,
                Decoded::Bad(_, skip) => {
                    discarded.noise += 1;
                    buf.drain(..skip);
                }
                Decoded::Frame(f, used) => {
                    buf.drain(..used);
                    let ours = f.is_reply()
                        && f.address == address
                        && f.function() == edition.read_code()
                        && (f.is_error()
                            || f.data.len() >= di.len() && {
                                let mut echoed: Vec<u8> = f.data[..di.len()].to_vec();
                                echoed.reverse();
                                echoed == di
                            });
                    if ours {
                        return Ok(f);
                    }
                    discarded.stale += 1;
                }
            }
        }
        // Noise that never becomes a frame must not grow the buffer.
        if buf.len() > 4 * (frame::MAX_DATA + 16) {
            discarded.noise += 1;
            buf.clear();
        }
        let n = match tokio::time::timeout_at(deadline, port.read(&mut chunk)).await {
            Err(_) => {
                return Err(ReadError {
                    code: "timeout",
                    detail: format!("no reply within {} ms", timeout.as_millis()),
                    broken: false,
                })
            }
            Ok(Err(e)) => return Err(io(e)),
            Ok(Ok(0)) => {
                return Err(ReadError {
                    code: "transport_error",
                    detail: "the connection was closed".into(),
                    broken: true,
                })
            }
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One read request and its reply, counted; an error reply is returned as a frame.
async fn exchange(
    port: &mut dyn Port,
    line: &Line,
    m: &MeterConfig,
    di: &[u8],
    discarded: &mut Discarded,
    metrics: &Dlt645Metrics,
) -> Result<Frame, ReadError> {
    let timeout = Duration::from_millis(line.timeout_ms);
    let reply = read_one(
        port,
        line.wake_up,
        m.address,
        m.edition,
        di,
        timeout,
        discarded,
    )
    .await;
    if line.gap_ms > 0 {
        tokio::time::sleep(Duration::from_millis(line.gap_ms)).await;
    }
    match &reply {
        Ok(f) if f.is_error() => metrics.requests.with_label_values(&["error_reply"]).inc(),
        Ok(_) => {}
        Err(e) => metrics.requests.with_label_values(&[e.code]).inc(),
    }
    reply
}

/// Reads every point of one meter: its readings, or why it failed. Two or more of a
/// direction's energy total and tariffs 1-4 are read with one block read (DI1 = FF: one request
/// instead of five on a 2400-baud line) unless the meter refused one before
/// (`block_refused`); then, and for everything else, one request a point.
pub async fn read_meter(
    port: &mut dyn Port,
    line: &Line,
    m: &MeterConfig,
    block_refused: &mut bool,
    now_ms: impl Fn() -> i64,
    discarded: &mut Discarded,
    metrics: &Dlt645Metrics,
) -> Result<Vec<Reading>, ReadError> {
    let reading = |p: &super::config::Point, amount: f64| Reading {
        meter: m.meter.clone(),
        channel: p.channel.clone(),
        amount,
        unit: p.unit,
        ts_ms: now_ms(),
        quality: Quality::Good,
        stamped_on_arrival: true,
    };
    let mut out = Vec::with_capacity(m.points.len());
    let mut done = vec![false; m.points.len()];
    if m.edition == frame::Edition::Y2007 && !*block_refused {
        let mut blocks: std::collections::BTreeMap<[u8; 4], Vec<(usize, usize)>> =
            Default::default();
        for (i, p) in m.points.iter().enumerate() {
            if let Some((block, place)) = data::block_of(p.quantity) {
                blocks.entry(block).or_default().push((i, place));
            }
        }
        for (block, members) in blocks.iter().filter(|(_, m)| m.len() >= 2) {
            let f = exchange(port, line, m, block, discarded, metrics).await?;
            let values: Option<Vec<f64>> = if f.is_error() {
                None
            } else {
                members
                    .iter()
                    .map(|(_, place)| data::decode_block_value(block, *place, &f.data).ok())
                    .map(|v| v.map(|v| v.amount))
                    .collect()
            };
            if values.is_none() && !f.is_error() {
                // An error reply was counted by `exchange`; an answer that does not hold the
                // block is a bad response.
                metrics.requests.with_label_values(&["bad_response"]).inc();
            }
            let Some(values) = values else {
                // Not every meter answers a block read: read its registers one by one from now on.
                *block_refused = true;
                tracing::info!(meter = %m.meter, block = %data::hex_of(block), "dlt645: the meter refused a block read; reading its registers one by one");
                break;
            };
            metrics.requests.with_label_values(&["ok"]).inc();
            for ((i, _), amount) in members.iter().zip(values) {
                out.push(reading(&m.points[*i], amount));
                done[*i] = true;
            }
        }
    }
    for (i, p) in m.points.iter().enumerate() {
        if done[i] {
            continue;
        }
        let f = exchange(port, line, m, &p.di, discarded, metrics).await?;
        if f.is_error() {
            let bits = f.data.first().copied().unwrap_or(0);
            return Err(ReadError {
                code: "error_reply",
                detail: format!(
                    "{} ({}): {}",
                    p.quantity.name,
                    data::hex_of(&p.di),
                    frame::error_names(bits).join(", ")
                ),
                broken: false,
            });
        }
        match data::decode_value(&p.di, p.format, p.quantity.timed, &f.data) {
            Ok(v) => {
                metrics.requests.with_label_values(&["ok"]).inc();
                out.push(reading(p, v.amount));
            }
            Err(e) => {
                metrics.requests.with_label_values(&["bad_response"]).inc();
                return Err(ReadError {
                    code: "bad_response",
                    detail: format!("{}: {e}", p.quantity.name),
                    broken: false,
                });
            }
        }
    }
    Ok(out)
}

/// A meter's place in its line's schedule.
struct Slot {
    cfg: MeterConfig,
    health: Arc<MeterHealth>,
    due: Instant,
    failures: u32,
    /// The meter answered a block read with an error once: read its registers one by one.
    block_refused: bool,
}

/// Failures in a row after which a meter is polled only in the line's slack: from the first, since
/// every try of a dead meter costs its line a whole timeout.
const SLACK_AFTER: u32 = 1;

/// A failing meter overdue by this long is tried even without slack (a line whose live meters
/// leave none must still notice a meter that came back): its line-mates lose at most one
/// timeout in this time.
const STARVED_AFTER: Duration = Duration::from_secs(30);

/// Runs one line until shutdown.
pub async fn run_line(
    line: Line,
    health: Arc<Health>,
    ctx: SourceContext,
    metrics: Arc<Dlt645Metrics>,
) {
    let mut shutdown = ctx.shutdown.clone();
    let clock = ctx.clock;
    let now_ms = move || clock.now_ms();
    let start = Instant::now();
    let mut slots: Vec<Slot> = line
        .meters
        .iter()
        .map(|m| Slot {
            cfg: m.clone(),
            health: health.meters[&m.meter].clone(),
            due: start,
            failures: 0,
            block_refused: false,
        })
        .collect();
    let mut port: Option<Box<dyn Port>> = None;
    let mut connect_failures = 0u32;
    let mut discarded = Discarded::default();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if port.is_none() {
            match open(
                &line.transport,
                Duration::from_millis(line.timeout_ms.max(1000)),
            )
            .await
            {
                Ok(p) => {
                    port = Some(p);
                    connect_failures = 0;
                }
                Err(e) => {
                    connect_failures += 1;
                    let detail = format!("{}: {e}", line.transport.describe());
                    for s in &slots {
                        s.health.failed("connect_error", detail.clone());
                    }
                    if connect_failures <= 3 {
                        tracing::warn!(line = %line.id, "dlt645: cannot open the line: {detail}");
                    }
                    let wait = crate::util::backoff_ms(500.0, connect_failures, 30_000.0);
                    if sleep_or_stop(Duration::from_millis(wait), &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let now = Instant::now();
        // The next meter to read: a healthy one that is due; a failing one only if no healthy
        // meter falls due before its timeout would end.
        let next_healthy = slots
            .iter()
            .filter(|s| s.failures < SLACK_AFTER)
            .map(|s| s.due)
            .min();
        let timeout = Duration::from_millis(line.timeout_ms);
        let pick = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.due <= now)
            .filter(|(_, s)| {
                s.failures < SLACK_AFTER
                    || next_healthy.is_none_or(|d| d > now + timeout)
                    || now.duration_since(s.due) >= STARVED_AFTER
            })
            .min_by_key(|(_, s)| (s.failures >= SLACK_AFTER, s.due))
            .map(|(i, _)| i);
        let Some(i) = pick else {
            // A failing meter that is due but waits for slack wakes nobody: the line wakes for
            // the next answering meter (and re-decides after it), or when the failing one
            // would be starved.
            let wake = slots
                .iter()
                .map(|s| {
                    if s.failures >= SLACK_AFTER && s.due <= now {
                        s.due + STARVED_AFTER
                    } else {
                        s.due
                    }
                })
                .min()
                .unwrap_or(now + timeout);
            let wake = wake.max(now + Duration::from_millis(5));
            if sleep_or_stop(wake - now, &mut shutdown).await {
                return;
            }
            continue;
        };
        let slot = &mut slots[i];
        let Some(p) = port.as_mut() else { continue };
        let before = discarded;
        let result = read_meter(
            p.as_mut(),
            &line,
            &slot.cfg,
            &mut slot.block_refused,
            now_ms,
            &mut discarded,
            &metrics,
        )
        .await;
        metrics
            .discarded
            .with_label_values(&["noise"])
            .inc_by(discarded.noise - before.noise);
        metrics
            .discarded
            .with_label_values(&["stale"])
            .inc_by(discarded.stale - before.stale);
        let interval = Duration::from_millis(slot.cfg.poll_interval_ms);
        match result {
            Ok(readings) => {
                slot.failures = 0;
                slot.health.ok(now_ms());
                // Keep the cadence: the next poll is an interval after this one was due; a
                // poll that came late does not make the next one come at once (a burst of
                // catch-up reads only takes bus time from the others).
                let next = slot.due + interval;
                slot.due = if next <= Instant::now() {
                    Instant::now() + interval
                } else {
                    next
                };
                if !readings.is_empty()
                    && ctx
                        .output
                        .send(Envelope {
                            readings,
                            ack: None,
                            commit_now: false,
                        })
                        .await
                        .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                slot.failures += 1;
                slot.health.failed(e.code, e.detail.clone());
                if slot.failures == 1 || slot.failures.is_power_of_two() {
                    tracing::warn!(line = %line.id, meter = %slot.cfg.meter, failures = slot.failures, "dlt645: {}: {}", e.code, e.detail);
                }
                let back = crate::util::backoff_ms(
                    slot.cfg.poll_interval_ms as f64,
                    slot.failures.saturating_sub(1),
                    60_000f64.max(slot.cfg.poll_interval_ms as f64),
                );
                slot.due = Instant::now() + Duration::from_millis(back);
                if e.broken {
                    port = None;
                }
            }
        }
    }
}

/// True when stopped.
async fn sleep_or_stop(d: Duration, shutdown: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

/// Starts a task per line. Returns them with the meters' health.
pub fn spawn(
    cfg: &super::config::Dlt645Config,
    ctx: SourceContext,
    metrics: Arc<crate::metrics::Metrics>,
) -> (Vec<tokio::task::JoinHandle<()>>, Arc<Health>) {
    let m = metrics.component(Dlt645Metrics::register);
    let mut health = Health::default();
    for l in &cfg.lines {
        for meter in &l.meters {
            health
                .meters
                .insert(meter.meter.clone(), Arc::new(MeterHealth::default()));
        }
    }
    let health = Arc::new(health);
    let tasks = cfg
        .lines
        .iter()
        .map(|l| tokio::spawn(run_line(l.clone(), health.clone(), ctx.clone(), m.clone())))
        .collect();
    (tasks, health)
}
