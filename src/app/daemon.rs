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

/// Runs the daemon until SIGTERM or SIGINT. An error is a runtime failure (exit 1).
pub fn run(app: AppConfig, hooks: Hooks) -> anyhow::Result<()> {
    let config = app.core.clone();
    let metrics = Arc::new(Metrics::new());
    let (pipeline, outbox) = open_pipeline(&app, &config.store.path, &metrics)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let pipeline_stopping = pipeline.shutdown_flag();
    runtime.block_on(async move {
        let handle = pipeline::spawn(pipeline, config.clone());
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        // Sinks after the pipeline: drained last.
        let mut sinks: Vec<Running> = Vec::new();
        if let (Some(ic), Some(outbox)) = (&app.influx, outbox.clone()) {
            let m = (*metrics.component(crate::sinks::influx::metrics::InfluxMetrics::register)).clone();
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
        };
        // Sources, and what reads the store beside them: drained first.
        let mut sources: Vec<Running> = Vec::new();
        let mut refresh: Vec<crate::metrics::http::Refresh> = Vec::new();
        if app.modbus.device_count() > 0 {
            let m = crate::sources::modbus::spawn(&app.modbus, ctx.clone(), metrics.clone());
            refresh.push(crate::sources::modbus::metrics::health(
                &metrics.registry,
                m.health.clone(),
            ));
            sources.push(Running::new("modbus", m.tasks));
        }
        if app.mqtt.broker.is_some() {
            match crate::sources::mqtt::spawn(&app.mqtt, config.clone(), ctx.clone(), metrics.clone()) {
                Ok(m) => sources.push(Running::new("mqtt", vec![m.task])),
                Err(e) => {
                    let _ = shutdown_tx.send(true);
                    return Err(anyhow::anyhow!("mqtt: {e}"));
                }
            }
        }
        drop(ctx);
        (hooks.after_start)();
        if let Some(o) = outbox.clone() {
            let m = metrics.component(crate::sinks::influx::metrics::InfluxMetrics::register);
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
        refresh.push(super::reports::evaluation_metrics(
            &metrics.registry,
            config.clone(),
            app.influx.clone(),
        ));
        if let Some(listen) = app.metrics_listen {
            match crate::metrics::http::serve(
                listen,
                metrics.registry.clone(),
                refresh,
                shutdown_tx.subscribe(),
            )
            .await
            {
                Ok((addr, task)) => {
                    tracing::info!(%addr, "serving /metrics");
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
        tracing::info!(
            store = %config.store.path.display(),
            meters = config.meters.len(),
            modbus_devices = app.modbus.device_count(),
            "ecogate running"
        );
        if app.modbus.device_count() == 0 && app.mqtt.broker.is_none() {
            tracing::warn!("no live sources are configured; use `ecogate replay` to load readings");
        }
        wait_for_signal().await;
        tracing::info!("stopping: sources first, then the pipeline commits what it holds");
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
            Some(0) => Ok(()),
            // Not lost where the source redelivers (MQTT QoS 1); a Modbus value is read again
            // at the next poll. Either way the stop was not clean, and says so.
            Some(n) => Err(anyhow::anyhow!(
                "stopped with {n} readings the store could not commit"
            )),
            None => Err(anyhow::anyhow!("the pipeline thread failed")),
        }
    })
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
