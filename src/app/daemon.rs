//! `ecogate run`: load -> build -> start -> wait for a signal -> drain.
//!
//! Sources stop first (no new readings), then the pipeline commits what it holds and
//! acknowledges it, then the sinks deliver what they can within the drain time. Every component
//! is drained by the same rule ([`crate::component::Running::drain`]).

use super::AppConfig;
use crate::component::Running;
use crate::metrics::Metrics;
use crate::pipeline::{self, Pipeline};
use crate::sinks::store::Store;
use crate::sources::SourceContext;
use anyhow::Context;
use std::sync::Arc;

/// What the binary does around the daemon that the library may not (it forbids `unsafe`).
#[derive(Debug, Clone, Copy)]
pub struct Hooks {
    /// Called once every component has started (the binary hands start-up heap back).
    pub after_start: fn(),
    /// What stamps Modbus readings and dates the status pages: real time, except in the demo.
    pub clock: crate::util::Clock,
}

/// Opens the store and the pipeline on it, with the InfluxDB sink attached when configured.
/// Returns the outbox the sink's sender delivers from.
pub fn open_pipeline(
    app: &AppConfig,
    store_path: &std::path::Path,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Pipeline, Option<Arc<crate::sinks::outbox::Outbox>>)> {
    let store = Store::open(store_path)?;
    let mut pipeline = Pipeline::open(app.core.clone(), store, metrics.clone())?;
    let outbox = match &app.influx {
        None => None,
        Some(ic) => {
            let seq = pipeline.store().committed_seq()?;
            let (output, outbox) = crate::sinks::influx::build(
                ic,
                app.core.clone(),
                seq,
                metrics,
                pipeline.shutdown_flag(),
            )?;
            pipeline.attach_sink(Box::new(output));
            Some(outbox)
        }
    };
    Ok((pipeline, outbox))
}

/// How one generation of components ended.
enum Ended {
    Stop,
    Reload(Box<AppConfig>),
}

/// Runs the daemon until SIGTERM or SIGINT. SIGHUP reloads `config_path`: a valid new
/// configuration replaces the running one (every component drained, then started on it); an
/// invalid one is refused with its errors and the running one goes on. An error is a runtime
/// failure (exit 1).
pub fn run(config_path: &std::path::Path, app: AppConfig, hooks: Hooks) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut signals = Signals::new()?;
        let mut app = app;
        let mut generation = 0u64;
        loop {
            match run_generation(app, config_path, hooks, &mut signals, generation).await? {
                Ended::Stop => return Ok(()),
                Ended::Reload(next) => {
                    app = *next;
                    generation += 1;
                }
            }
        }
    })
}

/// Starts every component on `app`, waits for a stop or a valid reload, drains them.
async fn run_generation(
    app: AppConfig,
    config_path: &std::path::Path,
    hooks: Hooks,
    signals: &mut Signals,
    generation: u64,
) -> anyhow::Result<Ended> {
    let config = app.core.clone();
    // A registry per generation: firms, meters and their label sets may change with a reload,
    // and families registered from the old configuration would linger. Counters restart from
    // zero at a reload, which Prometheus's rate() reads as a counter reset.
    let metrics = Arc::new(Metrics::new());
    let (pipeline, outbox) = match open_pipeline(&app, &config.store.path, &metrics) {
        Ok(opened) => opened,
        // After a reload, a reader of the old generation (a scrape still being answered) may
        // hold the outbox, and with it its lock, a moment longer: wait for it, 5 s at most.
        Err(_) if generation > 0 => {
            let mut tries = 0;
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                tries += 1;
                match open_pipeline(&app, &config.store.path, &metrics) {
                    Ok(opened) => break opened,
                    Err(e) if tries >= 20 => return Err(e),
                    Err(_) => {}
                }
            }
        }
        Err(e) => return Err(e),
    };
    let pipeline_stopping = pipeline.shutdown_flag();
    {
        let handle = pipeline::spawn(pipeline, config.clone());
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        // Sinks after the pipeline: drained last.
        let mut sinks: Vec<Running> = Vec::new();
        if let (Some(ic), Some(outbox)) = (&app.influx, outbox.clone()) {
            let m = (*metrics.component(crate::sinks::influx::metrics::InfluxMetrics::register))
                .clone();
            let sender = crate::sinks::influx::sender::Sender::new(ic.clone(), outbox, m)?;
            tracing::info!(url = %ic.url, bucket = %ic.bucket, outbox = %ic.outbox.dir.display(), "writing to InfluxDB");
            sinks.push(Running::new(
                "influx",
                vec![tokio::spawn(sender.run(shutdown_tx.subscribe()))],
            ));
        }
        let ctx = SourceContext {
            output: handle.tx.clone(),
            shutdown: shutdown_rx,
            clock: hooks.clock,
        };
        // Sources, and what reads the store beside them: drained first.
        let mut sources: Vec<Running> = Vec::new();
        let mut refresh: Vec<crate::metrics::http::Refresh> = Vec::new();
        // Every source's meters, in the shared terms (metrics, status page).
        let mut meter_health: Vec<crate::sources::health::Statuses> = Vec::new();
        let store_writable = metrics.store_writable.clone();
        let mut checks = vec![crate::metrics::http::Check::new("store", move || {
            if store_writable.get() == 1 {
                Ok("takes commits".into())
            } else {
                Err(
                    "the last commit failed (ecogate_store_commit_errors_total; the log says why)"
                        .into(),
                )
            }
        })];
        if app.modbus.device_count() > 0 {
            let m = crate::sources::modbus::spawn(&app.modbus, ctx.clone(), metrics.clone());
            refresh.push(crate::sources::modbus::metrics::health(
                &metrics.registry,
                m.health.clone(),
            ));
            meter_health.push(crate::sources::modbus::metrics::statuses(m.health.clone()));
            checks.push(crate::sources::modbus::metrics::readiness(m.health.clone()));
            sources.push(Running::new("modbus", m.tasks));
        }
        if app.mqtt.broker.is_some() {
            match crate::sources::mqtt::spawn(
                &app.mqtt,
                config.clone(),
                ctx.clone(),
                metrics.clone(),
                &app.modbus.meters(),
            ) {
                Ok(m) => {
                    meter_health.push(m.health.clone());
                    checks.push(crate::sources::mqtt::metrics::readiness(
                        &app.mqtt, &metrics,
                    ));
                    sources.push(Running::new("mqtt", vec![m.task]));
                }
                Err(e) => {
                    let _ = shutdown_tx.send(true);
                    return Err(anyhow::anyhow!("mqtt: {e}"));
                }
            }
        }
        drop(ctx);
        (hooks.after_start)();
        for statuses in &meter_health {
            refresh.push(crate::sources::health::refresh(&metrics, statuses.clone()));
        }
        if let Some(o) = outbox.clone() {
            let m = metrics.component(crate::sinks::influx::metrics::InfluxMetrics::register);
            checks.push(crate::sinks::influx::metrics::readiness(o.clone()));
            refresh.push(Arc::new(move || m.observe_outbox(&o)));
        }
        if config
            .accounting
            .windows
            .contains(&crate::accounting::window::WindowKind::Year)
        {
            refresh.push(crate::metrics::accounts::year_to_date(
                &metrics.registry,
                config.clone(),
            ));
        }
        let latest_evaluation = super::status::LatestEvaluation::default();
        let evaluation = super::reports::evaluation_metrics(
            &metrics.registry,
            config.clone(),
            app.influx.clone(),
            latest_evaluation.clone(),
        );
        refresh.push(evaluation.clone());
        let status = Arc::new(super::status::StatusPages {
            config: config.clone(),
            meter_health: meter_health.clone(),
            evaluation: latest_evaluation,
            refresh_evaluation: evaluation,
            clock: hooks.clock,
        });
        let mut metrics_addr = None;
        if let Some(listener) = app.listener.clone() {
            let listen = listener.listen;
            let endpoints = crate::metrics::http::Endpoints {
                registry: metrics.registry.clone(),
                refresh,
                checks,
                pages: Some(Arc::new(move |path: &str, query: &str| {
                    status.handle(path, query)
                })),
                token: listener.token.clone(),
            };
            match crate::metrics::http::serve(listen, endpoints, shutdown_tx.subscribe()).await {
                Ok((addr, task)) => {
                    metrics_addr = Some(addr);
                    sources.push(Running::new("metrics", vec![task]));
                }
                // Collecting data matters more than exposing it: keep running.
                Err(e) => tracing::error!(%listen, "cannot serve /metrics: {e}"),
            }
        }
        if let Some(a) = app.alerting.clone() {
            sources.push(Running::new(
                "alerting",
                vec![tokio::spawn(crate::alerting::run(
                    config.clone(),
                    a,
                    app.mqtt.broker.clone(),
                    shutdown_tx.subscribe(),
                ))],
            ));
        }
        for w in &config.warnings {
            tracing::warn!("configuration: {w}");
        }
        let mut running = Vec::new();
        if app.modbus.device_count() > 0 {
            running.push(format!("modbus ({} devices)", app.modbus.device_count()));
        }
        if let Some(b) = &app.mqtt.broker {
            running.push(format!(
                "mqtt ({}:{}, {} subscriptions)",
                b.host,
                b.port,
                app.mqtt.subscriptions.len()
            ));
        }
        if let Some(ic) = &app.influx {
            running.push(format!("influx ({})", ic.url));
        }
        let mut serving = vec![format!("store {}", config.store.path.display())];
        if let Some(a) = &metrics_addr {
            serving.push(format!("http://{a}/metrics"));
        }
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            generation,
            firms = config.firms.len(),
            meters = config.meters.len(),
            "ecogate running: {}; {}",
            if running.is_empty() {
                "no live source".to_string()
            } else {
                running.join(", ")
            },
            serving.join(", ")
        );
        if app.modbus.device_count() == 0 && app.mqtt.broker.is_none() {
            tracing::warn!("no live sources are configured; use `ecogate replay` to load readings");
        }
        let ended = signals.wait(config_path).await;
        match &ended {
            Ended::Stop => {
                tracing::info!("stopping: sources first, then the pipeline commits what it holds")
            }
            Ended::Reload(_) => tracing::info!(
                generation,
                "reloading: every component drains, then starts on the new configuration"
            ),
        }
        pipeline_stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = shutdown_tx.send(true);
        for s in sources {
            s.drain().await;
        }
        drop(handle.tx);
        let drained = tokio::task::spawn_blocking(move || handle.join.join())
            .await
            .ok()
            .and_then(Result::ok);
        for s in sinks {
            s.drain().await;
        }
        match drained {
            Some(0) => Ok(ended),
            // Not lost where the source redelivers (MQTT QoS 1); a Modbus value is read again
            // at the next poll. Either way the stop was not clean, and says so.
            Some(n) => Err(anyhow::anyhow!(
                "stopped with {n} readings the store could not commit"
            )),
            None => Err(anyhow::anyhow!("the pipeline thread failed")),
        }
    }
}

/// The signals the daemon acts on: SIGTERM and SIGINT stop it, SIGHUP reloads.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
                hup: signal(SignalKind::hangup()).context("listening for SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Until a stop, or a SIGHUP whose configuration is valid. An invalid one is logged, error
    /// by error, and the running configuration goes on.
    async fn wait(&mut self, config_path: &std::path::Path) -> Ended {
        loop {
            #[cfg(unix)]
            tokio::select! {
                _ = self.term.recv() => return Ended::Stop,
                _ = tokio::signal::ctrl_c() => return Ended::Stop,
                _ = self.hup.recv() => {}
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
                return Ended::Stop;
            }
            #[cfg(unix)]
            {
                let path = config_path.to_path_buf();
                let loaded = tokio::task::spawn_blocking(move || AppConfig::load(&path)).await;
                match loaded {
                    Ok(Ok(next)) => {
                        tracing::info!(config = %config_path.display(), "SIGHUP: the configuration is valid; reloading");
                        return Ended::Reload(Box::new(next.deep_clone()));
                    }
                    Ok(Err(errors)) => {
                        for line in errors.to_string().lines() {
                            tracing::error!("reload refused: {line}");
                        }
                        tracing::error!(
                            config = %config_path.display(),
                            problems = errors.errors.len(),
                            "SIGHUP: the new configuration is not valid; the running one goes on"
                        );
                    }
                    Err(e) => tracing::error!("SIGHUP: reading the configuration failed: {e}"),
                }
            }
        }
    }
}
