//! The `ecogate` command: `check` a configuration, `run` the daemon, `replay` a file of readings.
//!
//! Exit codes: 0 success; 1 a runtime failure (store, I/O); 2 an invalid configuration or
//! command line; 3 a replay that refused one or more rows (the rest were accounted).

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ecogate::accounting::indicators::Period;
use ecogate::accounting::window::year_progress;
use ecogate::config::Config;
use ecogate::metrics::Metrics;
use ecogate::pipeline::{self, Pipeline};
use ecogate::replay::{self, line_protocol::Precision};
use ecogate::report;
use ecogate::sinks::store::Store;
use ecogate::sources::SourceContext;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "ecogate",
    version,
    about = "Energy-meter gateway: meter counters to energy, standard coal and CO2 per meter, site, firm and park"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file and print a summary of it.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the daemon: poll the configured sources and account into the store until SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Feed a file of historical readings through the pipeline into the store and print
    /// per-firm totals.
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        /// CSV (`timestamp,meter,channel,value,unit[,quality]`) or InfluxDB line protocol.
        #[arg(long, short)]
        input: PathBuf,
        /// Input format; by default from the extension (.csv, else line protocol).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Timestamp unit of line protocol input.
        #[arg(long, value_enum, default_value = "ns")]
        precision: Precision,
        /// Store to write to, instead of the configuration's `store.path`.
        #[arg(long)]
        store: Option<PathBuf>,
        /// With `[influx]`: how long to keep delivering the outbox after the replay (0: leave
        /// it all to the next `ecogate run`).
        #[arg(long, default_value_t = 60)]
        influx_wait_s: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Csv,
    Lp,
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        default_sigpipe();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ECOGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Check { config } => load(&config).map(|c| {
            print!("{}", summary(&c));
            ExitCode::SUCCESS
        }),
        Command::Run { config } => load(&config).and_then(run),
        Command::Replay {
            config,
            input,
            format,
            precision,
            store,
            influx_wait_s,
        } => load(&config)
            .and_then(|c| replay_cmd(c, &input, format, precision, store, influx_wait_s)),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Config(e)) => {
            eprintln!("{e}");
            eprintln!(
                "ecogate: the configuration is not valid ({} problem(s))",
                e.errors.len()
            );
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("ecogate: {e:#}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Config(ecogate::config::error::ConfigErrors),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

/// Parses on a thread of its own and keeps a copy made on this one. Parsing a large
/// configuration takes about 40 bytes of transient heap per byte of TOML; done on its own
/// thread, that heap lives in the thread's own malloc arena, which is handed back to the system
/// once the parse's last allocation is freed, instead of staying resident for the life of the
/// daemon among long-lived allocations.
fn load(path: &Path) -> Result<Config, Failure> {
    let path = path.to_path_buf();
    let parsed = std::thread::spawn(move || Config::load(&path))
        .join()
        .map_err(|_| Failure::Runtime(anyhow::anyhow!("the configuration parser panicked")))?;
    match parsed {
        Ok(config) => Ok(config.clone()),
        Err(e) => Err(Failure::Config(e)),
    }
}

/// Allocations of 64 KiB and more (a batch's vectors, SQLite's scratch space) get pages of
/// their own that go back to the system when freed. glibc's default raises this threshold each
/// time such a block is freed, after which these short-lived blocks land among long-lived small
/// ones and keep whole pages resident: polling 1,000 Modbus devices (benches/modbus_poll.rs),
/// resident memory was 58-59 MB without this and 52-53 MB with it.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

/// A command whose output is piped into `head` ends quietly when the pipe closes, as other
/// command-line tools do, instead of failing a write and panicking in `println!`. Only for
/// commands that write reports: the daemon keeps Rust's default (SIGPIPE ignored), so a write
/// to a closed socket is an error it handles, never its death.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: resets one signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Hands the heap freed after start-up back to the system. Parsing a configuration of a
/// thousand devices frees tens of megabytes in pages that also hold a few long-lived
/// allocations; glibc only returns the top of a heap by itself, so without this the gateway
/// keeps part of that memory resident for the life of the daemon (about 6 MB of 65 in
/// benches/modbus_poll.rs).
fn release_startup_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn summary(c: &Config) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let channels: usize = c.meters.iter().map(|m| m.channels.len()).sum();
    let _ = writeln!(out, "{}: valid", c.file.display());
    for w in &c.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let _ = writeln!(
        out,
        "park {} ({}), grid region {}, factor year {}",
        c.park.name, c.park.timezone, c.park.grid_region, c.park.grid_factor_year
    );
    let _ = writeln!(
        out,
        "{} firms, {} sites, {} meters, {} channels",
        c.firms.len(),
        c.sites.len(),
        c.meters.len(),
        channels
    );
    for f in &c.firms {
        let sites = c
            .sites
            .iter()
            .filter(|s| c.firm_index(&f.id) == Some(s.firm))
            .count();
        let _ = writeln!(
            out,
            "  firm {} ({}): {} mu, {} site(s)",
            f.id,
            f.name,
            report::num(f.land_mu, 2),
            sites
        );
    }
    let _ = writeln!(out, "factors in force:");
    for (section, table) in [("co2", &c.factors.co2), ("tce", &c.factors.tce)] {
        for (name, f) in table {
            let _ = writeln!(
                out,
                "  {section}.{name} = {} {} ({}): {}",
                f.value,
                f.unit,
                f.year.map_or("-".to_string(), |y| y.to_string()),
                f.source
            );
        }
    }
    for bus in &c.modbus.buses {
        let _ = writeln!(
            out,
            "modbus bus {} ({}): {} device(s)",
            bus.id,
            bus.transport.describe(),
            bus.devices.len()
        );
    }
    if let Some(b) = &c.mqtt.broker {
        let _ = writeln!(
            out,
            "mqtt {}:{} as {}{}: {} subscription(s)",
            b.host,
            b.port,
            b.client_id,
            if b.tls.is_some() { " over TLS" } else { "" },
            c.mqtt.subscriptions.len()
        );
        for s in &c.mqtt.subscriptions {
            let _ = writeln!(out, "  {} (qos {})", s.topic, s.qos);
        }
    }
    let windows: Vec<_> = c.accounting.windows.iter().map(|w| w.name()).collect();
    let _ = writeln!(out, "windows: {}", windows.join(", "));
    let _ = writeln!(out, "store: {}", c.store.path.display());
    if let Some(i) = &c.influx {
        let _ = writeln!(
            out,
            "influx: {} org {} bucket {}; outbox {} (cap {} bytes, fsync {:?}, when full {:?})",
            i.url,
            i.org,
            i.bucket,
            i.outbox.dir.display(),
            i.outbox.max_bytes,
            i.outbox.fsync,
            i.outbox.when_full
        );
    }
    out
}

fn open_pipeline(
    config: Arc<Config>,
    store_path: &Path,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Pipeline> {
    let store = Store::open(store_path)?;
    Ok(Pipeline::open(config, store, metrics)?)
}

/// Replay writes to the outbox like the daemon, and a sender delivers it while the replay runs
/// (so a replay larger than the outbox's cap waits for the server instead of for nobody), then
/// for at most `wait_s` more. What is left is sent by the next `ecogate run`.
struct ReplaySender {
    outbox: Arc<ecogate::sinks::outbox::Outbox>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
    url: String,
    dir: PathBuf,
}

impl ReplaySender {
    fn start(
        ic: &ecogate::sinks::influx::config::InfluxConfig,
        outbox: Arc<ecogate::sinks::outbox::Outbox>,
        metrics: &Metrics,
    ) -> anyhow::Result<ReplaySender> {
        let m = metrics
            .influx
            .get()
            .expect("registered with the outbox")
            .clone();
        let sender = ecogate::sinks::influx::sender::Sender::new(ic.clone(), outbox.clone(), m)?;
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

fn run(config: Config) -> Result<ExitCode, Failure> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let pipeline = open_pipeline(config.clone(), &config.store.path, metrics.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outbox = pipeline.outbox();
    let pipeline_stopping = pipeline.shutdown_flag();
    runtime.block_on(async move {
        let handle = pipeline::spawn(pipeline, config.clone());
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let influx = match (&config.influx, outbox.clone()) {
            (Some(ic), Some(outbox)) => {
                let m = metrics.influx.get().expect("registered with the outbox").clone();
                let sender = ecogate::sinks::influx::sender::Sender::new(ic.clone(), outbox, m)?;
                tracing::info!(url = %ic.url, bucket = %ic.bucket, outbox = %ic.outbox.dir.display(), "writing to InfluxDB");
                Some(tokio::spawn(sender.run(shutdown_tx.subscribe())))
            }
            _ => None,
        };
        let ctx = SourceContext {
            output: handle.tx.clone(),
            shutdown: shutdown_rx,
        };
        let modbus = (config.modbus.device_count() > 0)
            .then(|| ecogate::sources::modbus::spawn(&config.modbus, ctx.clone(), metrics.clone()));
        let mqtt = match config.mqtt.broker.is_some() {
            false => None,
            true => match ecogate::sources::mqtt::spawn(
                &config.mqtt,
                config.clone(),
                ctx.clone(),
                metrics.clone(),
            ) {
                Ok(m) => Some(m),
                Err(e) => {
                    let _ = shutdown_tx.send(true);
                    return Err(anyhow::anyhow!("mqtt: {e}"));
                }
            },
        };
        drop(ctx);
        release_startup_heap();
        let mut refresh: Vec<ecogate::metrics::http::Refresh> = Vec::new();
        if let (Some(m), Some(o)) = (metrics.influx.get().cloned(), outbox.clone()) {
            refresh.push(Arc::new(move || m.observe_outbox(&o)));
        }
        if let Some(m) = &modbus {
            refresh.push(ecogate::metrics::modbus_health(
                &metrics.registry,
                m.health.clone(),
            ));
        }
        if config
            .accounting
            .windows
            .contains(&ecogate::accounting::window::WindowKind::Year)
        {
            refresh.push(ecogate::metrics::accounts::year_to_date(
                &metrics.registry,
                config.clone(),
            ));
        }
        let metrics_server = match config.metrics_listen {
            None => None,
            Some(listen) => {
                match ecogate::metrics::http::serve(
                    listen,
                    metrics.registry.clone(),
                    refresh,
                    shutdown_tx.subscribe(),
                )
                .await
                {
                    Ok((addr, task)) => {
                        tracing::info!(%addr, "serving /metrics");
                        Some(task)
                    }
                    Err(e) => {
                        // Collecting data matters more than exposing it: keep running.
                        tracing::error!(%listen, "cannot serve /metrics: {e}");
                        None
                    }
                }
            }
        };
        let alerting = config.alerting.clone().map(|a| {
            tokio::spawn(ecogate::alerting::run(
                config.clone(),
                a,
                shutdown_tx.subscribe(),
            ))
        });
        for w in &config.warnings {
            tracing::warn!("configuration: {w}");
        }
        tracing::info!(
            store = %config.store.path.display(),
            meters = config.meters.len(),
            modbus_devices = config.modbus.device_count(),
            "ecogate running"
        );
        if modbus.is_none() && mqtt.is_none() {
            tracing::warn!("no live sources are configured; use `ecogate replay` to load readings");
        }
        wait_for_signal().await;
        tracing::info!("stopping: sources first, then the pipeline commits what it holds");
        pipeline_stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = shutdown_tx.send(true);
        if let Some(m) = modbus {
            for task in m.tasks {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
            }
        }
        if let Some(m) = mqtt {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), m.task).await;
        }
        if let Some(t) = metrics_server {
            let _ = t.await;
        }
        if let Some(t) = alerting {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        drop(handle.tx);
        let drained = tokio::task::spawn_blocking(move || handle.join.join())
            .await
            .ok()
            .and_then(Result::ok);
        if let Some(t) = influx {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        match drained {
            Some(0) => {}
            // Not lost where the source redelivers (MQTT QoS 1); a Modbus value is read again
            // at the next poll. Either way the stop was not clean, and says so.
            Some(n) => {
                return Err(anyhow::anyhow!(
                    "stopped with {n} readings the store could not commit"
                ))
            }
            None => return Err(anyhow::anyhow!("the pipeline thread failed")),
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn replay_cmd(
    config: Config,
    input: &Path,
    format: Option<Format>,
    precision: Precision,
    store: Option<PathBuf>,
    influx_wait_s: u64,
) -> Result<ExitCode, Failure> {
    let config = Arc::new(config);
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
    let (rows, errors) = match format {
        Format::Csv => {
            let file = std::fs::File::open(input)
                .with_context(|| format!("cannot open {}", input.display()))?;
            replay::csv::parse(std::io::BufReader::new(file), tz)
                .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?
        }
        Format::Lp => {
            let text = std::fs::read_to_string(input)
                .with_context(|| format!("cannot read {}", input.display()))?;
            let cfg = config.clone();
            let unit_of = move |meter: &str, channel: &str| {
                cfg.meters
                    .iter()
                    .find(|m| m.id == meter)
                    .and_then(|m| m.channels.iter().find(|c| c.id == channel))
                    .map(|c| c.unit)
            };
            replay::line_protocol::parse(
                &text,
                precision,
                chrono::Utc::now().timestamp_millis(),
                unit_of,
            )
        }
    };
    let store_path = store.unwrap_or_else(|| config.store.path.clone());
    let metrics = Arc::new(Metrics::new());
    let mut pipeline = open_pipeline(config.clone(), &store_path, metrics.clone())?;
    let sender = match (&config.influx, pipeline.outbox()) {
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
    let summary = replay::run(&mut pipeline, rows, errors).context("replay");
    if let Some(s) = sender {
        s.finish(influx_wait_s);
    }
    let summary = summary?;

    for h in &summary.held {
        eprintln!(
            "{}: {} {}/{} at {}: {} {} (mark {})",
            input.display(),
            h.kind,
            h.meter,
            h.channel,
            fmt_ts(h.ts_ms, tz),
            h.to_base,
            h.base_unit,
            h.from_base
                .map_or("none".to_string(), |f| format!("{f} {}", h.base_unit)),
        );
    }
    for h in &summary.pending_at_end {
        eprintln!(
            "{}: still {} at the end: {}/{} at {}: {} {} against the mark {}: not counted until the next reading decides (see docs/accounting.md)",
            input.display(),
            h.kind,
            h.meter,
            h.channel,
            fmt_ts(h.ts_ms, tz),
            h.to_base,
            h.base_unit,
            h.from_base
                .map_or("none".to_string(), |f| format!("{f} {}", h.base_unit)),
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
    if summary.rejections.len() > 50 {
        eprintln!(
            "... and {} more refused rows",
            summary.rejections.len() - 50
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
        return Ok(if summary.rejected_total() > 0 {
            ExitCode::from(3)
        } else {
            ExitCode::SUCCESS
        });
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
        report::num(days, 3),
        store_path.display()
    );
    print!("{}", report::render(&config, &summary.totals, period));
    if !summary.pending_at_end.is_empty() {
        println!(
            "note: {} channel(s) end with a held or quarantined reading (listed on stderr): energy awaits a decision",
            summary.pending_at_end.len()
        );
    }
    Ok(
        if summary.rejected_total() > 0 || !summary.pending_at_end.is_empty() {
            ExitCode::from(3)
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn fmt_ts(ts_ms: i64, tz: chrono_tz::Tz) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .map(|t| {
            t.with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_else(|| ts_ms.to_string())
}
