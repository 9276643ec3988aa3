//! The `ecogate` command: `check` a configuration, `run` the daemon, `replay` a file of readings.
//! Command-line parsing and exit codes; the application itself is `ecogate::app`.
//!
//! Exit codes: 0 success; 1 a runtime failure (store, I/O); 2 an invalid configuration or
//! command line; 3 a replay that refused one or more rows, or ended with a reading held for a
//! decision (the rest were accounted).

#![deny(unsafe_code)]

mod sys;

use clap::{Parser, Subcommand};
use ecogate::app::{self, AppConfig};
use ecogate::replay::line_protocol::Precision;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "ecogate",
    version,
    about = "Energy-meter gateway: meter counters to energy, standard coal and CO2 per meter, site, firm and park"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text (colour only at a terminal) or as JSON objects, one per line, for a
    /// log collector. The level is set by ECOGATE_LOG (default: info for `run`, warn otherwise).
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[cfg(feature = "demo")]
    /// A simulated park in this process (Modbus TCP factories, MQTT charging hubs and a
    /// hydrogen site, an embedded broker) read by the real daemon, with the status page: no
    /// external service needed. Runs until Ctrl-C.
    Demo {
        /// Folder for the demo's configuration, store and statistics.
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
        /// Simulated time runs this many times faster than real time (from yesterday's local
        /// midnight until it catches up with the present).
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        /// Where the status page and /metrics are served.
        #[arg(long, default_value = "127.0.0.1:9108")]
        listen: std::net::SocketAddr,
    },
    /// Validate a configuration file and print a summary of it.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// The instance's shard of a split park ([shard] count = N): 0 to N-1 (docs/scale-out.md).
        #[arg(long)]
        shard: Option<u32>,
    },
    /// Print each meter's firm and shard of a split park as CSV (`meter,firm,shard`): what a
    /// publisher needs for the firm-hash topic layout (docs/scale-out.md).
    Shards {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the daemon: poll the configured sources and account into the store until SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// The instance's shard of a split park ([shard] count = N): 0 to N-1 (docs/scale-out.md).
        #[arg(long)]
        shard: Option<u32>,
    },
    /// Feed a file of historical readings through the pipeline into the store and print
    /// per-firm totals.
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        /// The instance's shard of a split park ([shard] count = N): 0 to N-1 (docs/scale-out.md).
        #[arg(long)]
        shard: Option<u32>,
        /// CSV (`timestamp,meter,channel,value,unit[,quality]`) or InfluxDB line protocol.
        #[arg(long, short)]
        input: PathBuf,
        /// Input format; by default from the extension (.csv, else line protocol).
        #[arg(long, value_enum)]
        format: Option<app::replay::Format>,
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
    /// Report a period from the store: energy by carrier, tce, CO2 by scope, output, per-mu
    /// figures, intensities, green share, hydrogen and charging, the year's evaluation.
    Report {
        #[arg(long, short)]
        config: PathBuf,
        /// The instance's shard of a split park ([shard] count = N): 0 to N-1 (docs/scale-out.md).
        #[arg(long)]
        shard: Option<u32>,
        /// 2026-10-12, 2026-10, 2026-Q3, 2026 or 2026-10-01..2026-10-15 (local days).
        #[arg(long, short, value_parser = ecogate::report::period::ReportPeriod::parse)]
        period: ecogate::report::period::ReportPeriod,
        /// Read the figures back from the central time-series store (VictoriaMetrics) that the
        /// parks' gateways and shards write to, instead of this machine's store: its URL, or
        /// `[influx] url` when none is given (docs/scale-out.md).
        #[arg(long, num_args = 0..=1, value_name = "URL")]
        central: Option<Option<String>>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The per-mu evaluation (亩均效益综合评价) of a year, provisional while it runs: scores,
    /// classes, 两高 and key-unit flags, quotas, 标准地 commitments. Kept with its inputs.
    Evaluate {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, short)]
        year: i32,
        /// Read the figures back from the central time-series store (VictoriaMetrics) that the
        /// parks' gateways and shards write to, instead of this machine's store: its URL, or
        /// `[influx] url` when none is given (docs/scale-out.md).
        #[arg(long, num_args = 0..=1, value_name = "URL")]
        central: Option<Option<String>>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Read one meter now and print every channel decoded (Modbus: with the raw registers and
    /// the request timings; DL/T 645: with each quantity's identifier), or listen to it and
    /// print what its topics deliver (MQTT).
    /// Exit 0 when the meter delivered, 1 when it did not.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["meter", "modbus", "dlt645"])))]
    Probe {
        /// With --meter: the configuration that names the meter and how to read it.
        #[arg(long, short, requires = "meter")]
        config: Option<PathBuf>,
        /// A meter of the configuration.
        #[arg(long, requires = "config")]
        meter: Option<String>,
        /// A Modbus TCP device, HOST:PORT, read with --profile (no configuration needed).
        #[arg(long, requires = "profile")]
        modbus: Option<std::net::SocketAddr>,
        /// A DL/T 645 meter behind a transparent serial server, HOST:PORT, read at --address.
        #[arg(long)]
        dlt645: Option<std::net::SocketAddr>,
        /// With --dlt645: the meter's 12-digit address (AAAAAAAAAAAA: ask the one meter on the
        /// line for its address first).
        #[arg(long, default_value = "AAAAAAAAAAAA", requires = "dlt645")]
        address: String,
        /// Modbus unit id (slave address) with --modbus.
        #[arg(long, default_value_t = 1)]
        unit: u8,
        /// A shipped profile with --modbus: chint-dtsu666, chint-dtsu666-4000, chint-ddsu666,
        /// eastron-sdm630, eastron-sdm120, acrel-adl400.
        #[arg(long, requires = "modbus")]
        profile: Option<String>,
        /// Modbus: how long to wait for each answer (--modbus; a configured meter uses its own).
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// MQTT: how long to listen.
        #[arg(long, default_value_t = 30)]
        listen_s: u64,
    },
    /// Firms' statistics (tax, revenue, value added, employees, R&D, off-meter energy,
    /// pollutants) per year.
    Stats {
        #[command(subcommand)]
        command: StatsCommand,
    },
}

#[derive(Subcommand, Debug)]
enum StatsCommand {
    /// Import a CSV or XLSX file (one row per firm and year); every row is checked, and a file
    /// with any error imports nothing. The latest import of a firm's year wins; a value it does
    /// not give (a missing column, a blank cell) is kept from the import in force, and said so.
    Import {
        #[arg(long, short)]
        config: PathBuf,
        file: PathBuf,
        /// Say what the import would change (values changed, kept from the import in force,
        /// firms' years added) and store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Every import so far: its number, time, file, rows, SHA-256 and who made it (reports and
    /// evaluations name the import they used by its number).
    History {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct OutputArgs {
    #[arg(long, short, value_enum, default_value = "table")]
    format: ecogate::report::render::Format,
    /// Language of headings and labels (中文 or English).
    #[arg(long, value_enum, default_value = "zh")]
    lang: ecogate::report::tables::Lang,
    /// Write to this file instead of standard output (required for xlsx at a terminal).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// For csv: the table to write (firms, sites, evaluation, benchmarks, flags, commitments).
    #[arg(long)]
    table: Option<String>,
}

impl OutputArgs {
    fn into_output(self) -> app::reports::Output {
        app::reports::Output {
            format: self.format,
            lang: self.lang,
            path: self.output,
            table: self.table,
        }
    }
}

fn main() -> ExitCode {
    sys::tune_malloc();
    let cli = Cli::parse();
    #[cfg(feature = "demo")]
    let daemon = matches!(cli.command, Command::Run { .. } | Command::Demo { .. });
    #[cfg(not(feature = "demo"))]
    let daemon = matches!(cli.command, Command::Run { .. });
    if !daemon {
        sys::default_sigpipe();
    }
    // The daemon says what it runs at the default level; the one-shot commands print their
    // results on stdout and keep stderr for warnings.
    let default_level = match cli.command {
        Command::Run { .. } => "warn,ecogate=info",
        // The demo prints its own console lines; the daemon inside it says only what is wrong.
        #[cfg(feature = "demo")]
        Command::Demo { .. } => "warn,rumqttd=off",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ECOGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        // Colour codes only for a person at a terminal, not in journald or a log file.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let result = match cli.command {
        Command::Check { config, shard } => load(&config, shard).map(|c| {
            print!("{}", c.summary());
            let mut problems = c.check_files();
            if c.sharding.split() && shard.is_none() {
                match std::fs::read_to_string(&config) {
                    Ok(text) => {
                        let (cut_problems, notes) =
                            AppConfig::shard_problems(&config, &text, c.sharding.count);
                        for n in &notes {
                            println!("note: {n}");
                        }
                        problems.extend(cut_problems);
                    }
                    Err(e) => problems.push(format!(
                        "{}: cannot read it again to check each shard: {e}",
                        config.display()
                    )),
                }
            }
            for p in &problems {
                eprintln!("ecogate: {p}");
            }
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                // As for an invalid configuration: `run` would refuse to start.
                ExitCode::from(2)
            }
        }),
        #[cfg(feature = "demo")]
        Command::Demo { dir, speed, listen } => ecogate::demo::run(
            ecogate::demo::DemoOptions { dir, speed, listen },
            sys::release_startup_heap,
        )
        .map(|()| ExitCode::SUCCESS)
        .map_err(Failure::Runtime),
        Command::Shards { config } => load(&config, None).map(|c| {
            println!("meter,firm,shard");
            for m in &c.meters {
                let firm = c
                    .sites
                    .get(m.site)
                    .and_then(|s| c.firms.get(s.firm))
                    .map_or("", |f| f.id.as_str());
                println!("{},{firm},{}", m.id, m.shard);
            }
            ExitCode::SUCCESS
        }),
        Command::Run { config, shard } => load_instance(&config, shard).and_then(|c| {
            let hooks = app::daemon::Hooks {
                after_start: sys::release_startup_heap,
                clock: ecogate::util::Clock::real(),
            };
            app::daemon::run(&config, c, hooks)?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Replay {
            config,
            input,
            format,
            precision,
            store,
            influx_wait_s,
            shard,
        } => load_instance(&config, shard).and_then(|c| {
            let clean = app::replay::run(c, &input, format, precision, store, influx_wait_s)?;
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }),
        Command::Report {
            config,
            period,
            output,
            shard,
            central,
        } => match central {
            // From the central store a split park is read whole, or one shard's firms.
            Some(_) => load(&config, shard),
            None => load_instance(&config, shard),
        }
        .and_then(|c| {
            match central {
                None => app::reports::report(&c, period, &output.into_output())?,
                Some(url) => {
                    let year = period.year();
                    let scratch = app::central::read_years(&c, url.as_deref(), year - 1, year)?;
                    print_read_back(&scratch.read);
                    app::reports::report_from(&c, &scratch.store, period, &output.into_output())?
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
        Command::Evaluate {
            config,
            year,
            output,
            central,
        } => load(&config, None).and_then(|c| {
            match central {
                None if c.sharding.split() => {
                    return Err(Failure::Runtime(anyhow::anyhow!(
                        "the park is split over {} instances, each store holding its own firms: evaluate it whole from the central store (--central)",
                        c.sharding.count
                    )))
                }
                None => app::reports::evaluate(&c, year, &output.into_output())?,
                Some(url) => {
                    let scratch = app::central::read_years(&c, url.as_deref(), year - 1, year)?;
                    print_read_back(&scratch.read);
                    app::reports::evaluate_from(&c, &scratch.store, year, &output.into_output())?
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
        Command::Probe {
            config,
            meter,
            modbus,
            dlt645,
            address,
            unit,
            profile,
            timeout_ms,
            listen_s,
        } => (|| {
            let app = match &config {
                Some(c) => Some(load(c, None)?),
                None => None,
            };
            let target = match (meter, modbus, profile) {
                (Some(m), _, _) => app::probe::Target::Meter(m),
                (None, None, _) if dlt645.is_some() => app::probe::Target::Address {
                    kind: "dlt645".into(),
                    probe: ecogate::sources::AddressProbe {
                        address: dlt645.map(|a| a.to_string()).unwrap_or_default(),
                        unit: address,
                        profile: String::new(),
                        timeout_ms,
                    },
                },
                (None, Some(addr), Some(profile)) => app::probe::Target::Address {
                    kind: "modbus".into(),
                    probe: ecogate::sources::AddressProbe {
                        address: addr.to_string(),
                        unit: unit.to_string(),
                        profile,
                        timeout_ms,
                    },
                },
                _ => unreachable!("clap requires --meter, --dlt645, or --modbus with --profile"),
            };
            let delivered = app::probe::run(
                app.as_ref(),
                target,
                std::time::Duration::from_secs(listen_s),
            )?;
            Ok(if delivered {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        })(),
        Command::Stats {
            command:
                StatsCommand::Import {
                    config,
                    file,
                    dry_run,
                },
        } => load(&config, None).and_then(|c| {
            match app::reports::import_stats(&c, &file, dry_run)? {
                Ok(summary) => {
                    println!("{summary}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    eprintln!(
                        "ecogate: nothing imported ({} problem(s) in {})",
                        errors.len(),
                        file.display()
                    );
                    Ok(ExitCode::from(2))
                }
            }
        }),
        Command::Stats {
            command: StatsCommand::History { config },
        } => load(&config, None).and_then(|c| {
            print!("{}", app::reports::stats_history(&c)?);
            Ok(ExitCode::SUCCESS)
        }),
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
    Config(ecogate::config::ConfigErrors),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

/// On stderr (stdout is the report): what `--central` read back.
fn print_read_back(r: &app::central::ReadBack) {
    eprintln!(
        "central store: {} window rows from {} series ({} samples) of park(s) {}{}",
        r.rows,
        r.series,
        r.samples,
        if r.parks.is_empty() {
            "-".to_string()
        } else {
            r.parks.join(", ")
        },
        if r.unknown_entities > 0 {
            format!(
                "; {} series of firms, sites or meters not in this configuration left out",
                r.unknown_entities
            )
        } else {
            String::new()
        }
    );
}

/// The configuration of one running instance: a split park needs its shard.
fn load_instance(path: &Path, shard: Option<u32>) -> Result<AppConfig, Failure> {
    let config = load(path, shard)?;
    if config.sharding.split() && shard.is_none() {
        return Err(Failure::Config(ecogate::config::ConfigErrors::single(
            path,
            ecogate::config::ConfigError {
                line_col: None,
                key: "shard".into(),
                message: format!(
                    "the park is split over {} instances ([shard] count): give this one's --shard (0 to {})",
                    config.sharding.count,
                    config.sharding.count - 1
                ),
            },
        )));
    }
    Ok(config)
}

/// Parses on a thread of its own and keeps a copy made on this one. Parsing a large
/// configuration takes about 40 bytes of transient heap per byte of TOML; done on its own
/// thread, that heap lives in the thread's own malloc arena, which is handed back to the system
/// once the parse's last allocation is freed, instead of staying resident for the life of the
/// daemon among long-lived allocations.
fn load(path: &Path, shard: Option<u32>) -> Result<AppConfig, Failure> {
    let path = path.to_path_buf();
    let parsed = std::thread::spawn(move || AppConfig::load_shard(&path, shard))
        .join()
        .map_err(|_| Failure::Runtime(anyhow::anyhow!("the configuration parser panicked")))?;
    match parsed {
        Ok(config) => Ok(config.deep_clone()),
        Err(e) => Err(Failure::Config(e)),
    }
}
