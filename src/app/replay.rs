//! `ecogate replay`: a file of historical readings through the daemon's pipeline and sinks.

use super::AppConfig;
use crate::accounting::indicators::Period;
use crate::accounting::window::year_progress;
use crate::metrics::Metrics;
use crate::replay::{self, line_protocol::Precision};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The input's format.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Format {
    Csv,
    Lp,
}

/// Replays `input` into the store (the configuration's, or `store`). `Ok(false)` when rows were
/// refused or a reading is still held at the end (exit 3): everything else was accounted.
pub fn run(
    app: AppConfig,
    input: &Path,
    format: Option<Format>,
    precision: Precision,
    store: Option<PathBuf>,
    influx_wait_s: u64,
) -> anyhow::Result<bool> {
    let config = app.core.clone();
    let tz = config.park.timezone;
    let format = format.unwrap_or_else(|| {
        if input
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            Format::Csv
        } else {
            Format::Lp
        }
    });
    let store_path = store.unwrap_or_else(|| config.store.path.clone());
    let metrics = Arc::new(Metrics::new());
    let (mut pipeline, outbox) = super::daemon::open_pipeline(&app, &store_path, &metrics)?;
    let sender = match (&app.influx, outbox) {
        (Some(ic), Some(outbox)) if influx_wait_s > 0 => {
            Some(ReplaySender::start(ic, outbox, &metrics)?)
        }
        (Some(_), Some(_)) => {
            // Nobody delivers during this replay: a full outbox must fail it, not hang it.
            pipeline
                .shutdown_flag()
                .store(true, std::sync::atomic::Ordering::Relaxed);
            None
        }
        _ => None,
    };
    // The input is read as a stream: rows go to a sorter that keeps at most one run in memory
    // (runs beyond the first wait in scratch files next to the store), refused rows to the
    // summary, so a file of any size replays in the same memory.
    let scratch_dir = store_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    pipeline.store().use_bulk_cache()?;
    // As reports are: a replay under ECOGATE_NOW refuses what is later than that "now", as a
    // live ecogate at that moment would have.
    let as_of = std::env::var("ECOGATE_NOW")
        .is_ok()
        .then(|| super::now_ms(&config));
    pipeline.set_as_of(as_of);
    let mut sorter = replay::sort::Sorter::new(&scratch_dir);
    let mut replaying = replay::Replay::new(&mut pipeline);
    // `replay --shard k` of a whole park's file: the other shards' rows are theirs to replay,
    // passed over here and counted, not refused (docs/scale-out.md).
    let other_shard = config.sharding.other_shard_meters.clone();
    let mut other_shard_rows = 0u64;
    let mut emit =
        |row: Result<replay::InputRow, replay::RowError>| -> Result<(), replay::ReplayError> {
            match row {
                Ok(r) if other_shard.contains(r.reading.meter.as_str()) => other_shard_rows += 1,
                Ok(r) => sorter.push(r)?,
                Err(e) => replaying.parse_error(e),
            }
            Ok(())
        };
    let file =
        std::fs::File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let read = std::io::BufReader::with_capacity(256 * 1024, file);
    let parsed = match format {
        Format::Csv => replay::csv::parse_each(read, tz, &mut emit),
        Format::Lp => {
            let cfg = config.clone();
            let unit_of = move |meter: &str, channel: &str| {
                cfg.meters
                    .iter()
                    .find(|m| m.id == meter)
                    .and_then(|m| m.channels.iter().find(|c| c.id == channel))
                    .map(|c| c.unit)
            };
            replay::line_protocol::parse_each(
                read,
                precision,
                as_of.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
                unit_of,
                &mut emit,
            )
        }
    };
    parsed.map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    let summary = sorter
        .finish::<replay::ReplayError>(replay::BATCH, |chunk| Ok(replaying.feed(chunk)?))
        .map(|()| replaying.finish())
        .context("replay");
    if let Some(s) = sender {
        s.finish(influx_wait_s);
    }
    let summary = summary?;
    if other_shard_rows > 0 {
        println!(
            "{other_shard_rows} rows of other shards' meters passed over (shard {} of {})",
            config.sharding.index.unwrap_or(0),
            config.sharding.count
        );
    }

    for h in &summary.held {
        eprintln!("{}: {}", input.display(), describe(h, tz, ""));
    }
    for h in &summary.pending_at_end {
        eprintln!(
            "{}: {}: not counted until the next reading decides (see docs/accounting.md)",
            input.display(),
            describe(h, tz, "still ")
        );
    }
    for e in summary.rejections.iter().take(50) {
        eprintln!(
            "{}:{}: {}: {}",
            input.display(),
            e.line,
            e.reason,
            e.message
        );
    }
    if summary.rejected_total() > 50 {
        eprintln!(
            "... and {} more refused rows",
            summary.rejected_total() - 50
        );
    }
    println!(
        "replayed {}: {} rows, {} accepted, {} rejected{}",
        input.display(),
        summary.rows,
        summary.accepted,
        summary.rejected_total(),
        if summary.rejected.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                summary
                    .rejected
                    .iter()
                    .map(|(r, n)| format!("{r}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let events: Vec<String> = replay::event_names()
        .filter_map(|k| summary.events.get(k).map(|n| format!("{k}: {n}")))
        .collect();
    if !events.is_empty() {
        println!("counter events: {}", events.join(", "));
    }
    let stale = summary.events.get("duplicate").unwrap_or(&0)
        + summary.events.get("out_of_order").unwrap_or(&0);
    if stale > 0 {
        println!(
            "note: {stale} readings were at or before their channel's last accounted reading in this store (already accounted, or out of order): they add nothing"
        );
    }
    let (Some(first), Some(last)) = (summary.first_ts_ms, summary.last_ts_ms) else {
        println!("no readings accounted");
        return Ok(summary.rejected_total() == 0);
    };
    let year_days = year_progress(first, tz).map_or(365.0, |(len, _)| len);
    let days = ((last - first) as f64 / 86_400_000.0).max(1.0 / 1440.0);
    let period = Period {
        days,
        year_days,
        whole_year_holdings: days >= year_days - 1.0,
    };
    println!(
        "period {} .. {} ({} days), store {}",
        fmt_ts(first, tz),
        fmt_ts(last, tz),
        crate::report::num(days, 3),
        store_path.display()
    );
    print!(
        "{}",
        crate::report::render(&config, &summary.totals, period)
    );
    if !summary.pending_at_end.is_empty() {
        println!(
            "note: {} channel(s) end with a held or quarantined reading (listed on stderr): energy awaits a decision",
            summary.pending_at_end.len()
        );
    }
    Ok(summary.rejected_total() == 0 && summary.pending_at_end.is_empty())
}

/// Replay writes to the outbox like the daemon, and a sender delivers it while the replay runs
/// (so a replay larger than the outbox's cap waits for the server instead of for nobody), then
/// for at most `wait_s` more. What is left is sent by the next `ecogate run`.
struct ReplaySender {
    outbox: Arc<crate::sinks::outbox::Outbox>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
    url: String,
    dir: PathBuf,
}

impl ReplaySender {
    fn start(
        ic: &crate::sinks::influx::config::InfluxConfig,
        outbox: Arc<crate::sinks::outbox::Outbox>,
        metrics: &Metrics,
    ) -> anyhow::Result<ReplaySender> {
        let m =
            (*metrics.component(crate::sinks::influx::metrics::InfluxMetrics::register)).clone();
        let sender = crate::sinks::influx::sender::Sender::new(ic.clone(), outbox.clone(), m)?;
        let (stop, rx) = tokio::sync::watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let thread = std::thread::Builder::new()
            .name("ecogate-influx".into())
            .spawn(move || runtime.block_on(sender.run(rx)))
            .context("starting the InfluxDB sender")?;
        Ok(ReplaySender {
            outbox,
            stop,
            thread,
            url: ic.url.to_string(),
            dir: ic.outbox.dir.clone(),
        })
    }

    fn finish(self, wait_s: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_s);
        while self.outbox.stats().pending_lines > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.stop.send(true);
        let _ = self.thread.join();
        let left = self.outbox.stats().pending_lines;
        if left == 0 {
            println!("influx {}: everything delivered", self.url);
        } else {
            println!(
                "influx {}: {left} lines still in the outbox ({}): `ecogate run` sends them",
                self.url,
                self.dir.display()
            );
        }
    }
}

/// `held grid/import at 2024-05-01 09:00:00 CST: 1015 kWh (mark 1020 kWh)`.
fn describe(h: &replay::HeldReading, tz: chrono_tz::Tz, prefix: &str) -> String {
    format!(
        "{prefix}{} {}/{} at {}: {} {} (mark {})",
        h.kind,
        h.meter,
        h.channel,
        fmt_ts(h.ts_ms, tz),
        h.to_base,
        h.base_unit,
        h.from_base
            .map_or("none".to_string(), |f| format!("{f} {}", h.base_unit)),
    )
}

pub fn fmt_ts(ts_ms: i64, tz: chrono_tz::Tz) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .map(|t| {
            t.with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_else(|| ts_ms.to_string())
}
