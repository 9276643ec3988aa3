//! `ecogate run`: load -> build -> start -> wait for a signal -> drain.
//!
//! Sources stop first (no new readings), then the pipeline commits what it holds and
//! acknowledges it, then the sinks deliver what they can within the drain time. Every component
//! is drained by the same rule ([`crate::component::Running::drain`]). Sources send to one
//! queue that outlives a reload, so a source whose settings did not change runs on while the
//! pipeline restarts on the new configuration.

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
            let (output, outbox) = crate::sinks::influx::build(
                ic,
                app.core.clone(),
                pipeline.store(),
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

/// Readings from every source on their way to whichever pipeline runs: a source kept across a
/// reload sends here, and the next pipeline takes up what the last one did not.
const SOURCE_QUEUE: usize = 1024;

/// A running source with what the daemon keeps of it: the registry its metric families live
/// in, its refreshers, readiness checks and meter health. Kept across a reload whose settings
/// for it (its fingerprint) are unchanged.
struct LiveSource {
    name: &'static str,
    /// Its settings and everything of the park model it reads, as text (secrets included: it
    /// never leaves memory), compared at a reload.
    fingerprint: String,
    running: Running,
    shutdown: tokio::sync::watch::Sender<bool>,
    registry: prometheus::Registry,
    refresh: Vec<crate::metrics::http::Refresh>,
    checks: Vec<crate::metrics::http::Check>,
    health: Vec<crate::sources::health::Statuses>,
    notices: Vec<crate::sources::health::Notices>,
}

impl LiveSource {
    async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.running.drain().await;
    }
}

/// The meters every other live source reads, for `kind`.
fn read_elsewhere(app: &AppConfig, kind: &str) -> Vec<String> {
    app.live_sources()
        .filter(|s| s.kind() != kind)
        .flat_map(|s| s.meters())
        .collect()
}

/// Runs the daemon until SIGTERM or SIGINT. SIGHUP reloads `config_path`: a valid new
/// configuration replaces the running one (the pipeline and sinks drain and start on it; a
/// source restarts only where its settings changed); an invalid one is refused with its errors
/// and the running one goes on. An error is a runtime failure (exit 1).
pub fn run(config_path: &std::path::Path, app: AppConfig, hooks: Hooks) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut signals = Signals::new()?;
        let (source_tx, source_rx) = tokio::sync::mpsc::channel(SOURCE_QUEUE);
        let mut daemon = Daemon {
            source_tx: Some(source_tx),
            source_rx: Arc::new(tokio::sync::Mutex::new(source_rx)),
            live: Vec::new(),
            hooks,
        };
        let mut app = app;
        let mut generation = 0u64;
        loop {
            match daemon
                .run_generation(app, config_path, &mut signals, generation)
                .await?
            {
                Ended::Stop => return Ok(()),
                Ended::Reload(next) => {
                    app = *next;
                    generation += 1;
                }
            }
        }
    })
}

/// What lives across generations.
struct Daemon {
    /// Cloned into every source; dropped at the stop, so that the forwarder sees the end.
    source_tx: Option<tokio::sync::mpsc::Sender<crate::pipeline::Envelope>>,
    source_rx: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<crate::pipeline::Envelope>>>,
    live: Vec<LiveSource>,
    hooks: Hooks,
}

impl Daemon {
    /// Keeps the live source `name` if its fingerprint is unchanged; else stops it. Whether it
    /// runs on.
    async fn keep(&mut self, name: &str, fingerprint: Option<&str>) -> bool {
        let Some(i) = self.live.iter().position(|l| l.name == name) else {
            return false;
        };
        if fingerprint == Some(self.live[i].fingerprint.as_str()) {
            return true;
        }
        let gone = self.live.remove(i);
        tracing::info!(source = name, "its settings changed: it restarts");
        gone.stop().await;
        false
    }

    fn context(&self) -> (SourceContext, tokio::sync::watch::Sender<bool>) {
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        (
            SourceContext {
                output: self
                    .source_tx
                    .clone()
                    .expect("sources start only while the daemon runs"),
                shutdown: shutdown_rx,
                clock: self.hooks.clock,
            },
            shutdown_tx,
        )
    }

    /// Starts the sources that are not running on unchanged settings.
    async fn start_sources(&mut self, app: &AppConfig) -> anyhow::Result<()> {
        for source in &app.sources {
            let name = source.kind();
            let elsewhere = read_elsewhere(app, name);
            let fingerprint = source
                .enabled()
                .then(|| source.fingerprint(&app.core, &elsewhere));
            if self.keep(name, fingerprint.as_deref()).await {
                continue;
            }
            let Some(fingerprint) = fingerprint else {
                continue;
            };
            let (ctx, shutdown) = self.context();
            let metrics = Arc::new(Metrics::new());
            let started = source
                .start(crate::sources::Start {
                    park: app.core.clone(),
                    ctx,
                    metrics: metrics.clone(),
                    read_elsewhere: elsewhere,
                })
                .with_context(|| format!("starting the {name} source"))?;
            self.live.push(LiveSource {
                name,
                fingerprint,
                running: Running::new(name, started.tasks),
                shutdown,
                registry: metrics.registry.clone(),
                refresh: started.refresh,
                checks: started.checks,
                health: started.health,
                notices: started.notices,
            });
        }
        Ok(())
    }

    /// Starts the pipeline, sinks and readers on `app` (and the sources not running on
    /// unchanged settings), waits for a stop or a valid reload, then drains.
    async fn run_generation(
        &mut self,
        app: AppConfig,
        config_path: &std::path::Path,
        signals: &mut Signals,
        generation: u64,
    ) -> anyhow::Result<Ended> {
        let hooks = self.hooks;
        let config = app.core.clone();
        // A registry per generation for the pipeline and the park's figures: firms, meters and
        // their label sets may change with a reload. Its counters restart from zero at a reload
        // (Prometheus's rate() reads that as a reset); a source kept running keeps its own.
        let metrics = Arc::new(Metrics::new());
        let (pipeline, outbox) = match open_pipeline(&app, &config.store.path, &metrics) {
            Ok(opened) => opened,
            // After a reload, a reader of the old generation (a scrape still being answered)
            // may hold the outbox, and with it its lock, a moment longer: wait for it, 5 s at
            // most.
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
        let handle = pipeline::spawn(pipeline, config.clone());
        // Moves readings from the sources' queue to this generation's pipeline; at a reload it
        // stops and leaves what it has not taken for the next one.
        let (forward_stop, mut forward_stopped) = tokio::sync::watch::channel(false);
        let forwarder = {
            let rx = self.source_rx.clone();
            let to_pipeline = handle.tx.clone();
            tokio::spawn(async move {
                let mut rx = rx.lock().await;
                loop {
                    tokio::select! {
                        biased;
                        _ = forward_stopped.changed() => break,
                        envelope = rx.recv() => match envelope {
                            Some(e) => {
                                if to_pipeline.send(e).await.is_err() {
                                    break;
                                }
                            }
                            None => break,
                        },
                    }
                }
            })
        };
        let (shutdown_tx, _) = tokio::sync::watch::channel(false);
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
        if let Err(e) = self.start_sources(&app).await {
            let _ = shutdown_tx.send(true);
            return Err(e);
        }
        // What reads the store beside the sources: drained with them.
        let mut readers: Vec<Running> = Vec::new();
        let mut registries = vec![metrics.registry.clone()];
        let mut refresh: Vec<crate::metrics::http::Refresh> = Vec::new();
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
        // Every source's meters, in the shared terms (metrics, status page).
        let mut meter_health: Vec<crate::sources::health::Statuses> = Vec::new();
        let mut notices: Vec<crate::sources::health::Notices> = Vec::new();
        for l in &self.live {
            registries.push(l.registry.clone());
            refresh.extend(l.refresh.iter().cloned());
            checks.extend(l.checks.iter().cloned());
            meter_health.extend(l.health.iter().cloned());
            notices.extend(l.notices.iter().cloned());
        }
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
            refresh.push(super::scraped::year_to_date(
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
            notices,
            evaluation: latest_evaluation,
            refresh_evaluation: evaluation,
            clock: hooks.clock,
        });
        let mut metrics_addr = None;
        if let Some(listener) = app.listener.clone() {
            let listen = listener.listen;
            let endpoints = crate::metrics::http::Endpoints {
                registries,
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
                    readers.push(Running::new("metrics", vec![task]));
                }
                // Collecting data matters more than exposing it: keep running.
                Err(e) => tracing::error!(%listen, "cannot serve /metrics: {e}"),
            }
        }
        if let Some(a) = app.alerting.clone() {
            readers.push(Running::new(
                "alerting",
                vec![tokio::spawn(crate::alerting::run(
                    config.clone(),
                    a,
                    app.sources.iter().find_map(|s| s.broker_options()),
                    shutdown_tx.subscribe(),
                ))],
            ));
        }
        for w in &config.warnings {
            tracing::warn!("configuration: {w}");
        }
        let mut running: Vec<String> = app.live_sources().map(|s| s.describe()).collect();
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
        if app.live_sources().next().is_none() {
            tracing::warn!("no live sources are configured; use `ecogate replay` to load readings");
        }
        let ended = signals.wait(config_path, &app.sharding).await;
        let _ = shutdown_tx.send(true);
        for r in readers {
            r.drain().await;
        }
        match &ended {
            Ended::Stop => {
                tracing::info!("stopping: sources first, then the pipeline commits what it holds");
                for l in self.live.drain(..) {
                    l.stop().await;
                }
                // The sources are gone: the forwarder passes on what they left and ends.
                self.source_tx = None;
            }
            Ended::Reload(_) => {
                tracing::info!(
                    generation,
                    "reloading: the pipeline commits what it holds, then starts on the new configuration"
                );
                // What the forwarder has not taken waits in the queue for the next pipeline.
                let _ = forward_stop.send(true);
            }
        }
        // A source thread that does not end (a stuck socket) must not hold up the stop.
        let mut forwarder = forwarder;
        if tokio::time::timeout(crate::component::DRAIN, &mut forwarder)
            .await
            .is_err()
        {
            let _ = forward_stop.send(true);
            let _ = forwarder.await;
        }
        pipeline_stopping.store(true, std::sync::atomic::Ordering::Relaxed);
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
    async fn wait(
        &mut self,
        config_path: &std::path::Path,
        sharding: &crate::config::shard::Sharding,
    ) -> Ended {
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
                let shard = sharding.index;
                let loaded =
                    tokio::task::spawn_blocking(move || AppConfig::load_shard(&path, shard)).await;
                match loaded {
                    // A firm moved to another instance mid-stream would start its counters
                    // over there and leave a gap here: the split changes only with a restart
                    // of every instance (docs/scale-out.md).
                    Ok(Ok(next)) if next.sharding.count != sharding.count => {
                        tracing::error!(
                            config = %config_path.display(),
                            running = sharding.count,
                            new = next.sharding.count,
                            "SIGHUP: reload refused: [shard] count changed; stop every instance, then start them on the new split"
                        );
                    }
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
