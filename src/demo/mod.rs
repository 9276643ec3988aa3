//! `ecogate demo`: a simulated park in this process, with no external service, and the real
//! daemon reading it.
//!
//! Six factories with Modbus TCP gateways (tokio-modbus servers on loopback ports, meters laid
//! out as the shipped CHINT DTSU666 profile), two charging hubs and a hydrogen site publishing
//! over MQTT to an embedded broker (rumqttd), rooftop PV and a battery; curves follow shifts,
//! weekends and daylight ([`park`]). The simulated time starts at yesterday's local midnight
//! and runs `speed` times faster than real time until it has caught up with the present (then
//! in step with it), so a day of data appears in minutes. The configuration is written to the
//! demo folder, and `ecogate run`'s daemon reads it from there with its store beside it.

pub mod park;
pub mod sim;

use crate::app::{daemon, AppConfig};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What the demo runs with.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub dir: PathBuf,
    pub speed: f64,
    pub listen: SocketAddr,
}

/// A free loopback port for the broker, which binds its listener itself.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn broker_config(port: u16) -> anyhow::Result<rumqttd::Config> {
    let text = format!(
        "id = 0\n[router]\nid = 0\nmax_connections = 100\nmax_outgoing_packet_count = 200\nmax_segment_size = 10485760\nmax_segment_count = 10\n\
         [v4.1]\nname = \"demo\"\nlisten = \"127.0.0.1:{port}\"\nnext_connection_delay_ms = 1\n\
         [v4.1.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = 20480\nmax_inflight_count = 500\ndynamic_filters = true\n"
    );
    toml::from_str(&text).context("the embedded broker's settings")
}

/// Runs the demo until SIGTERM or Ctrl-C.
pub fn run(opts: DemoOptions, after_start: fn()) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("creating the demo folder {}", opts.dir.display()))?;
    let tz: chrono_tz::Tz = chrono_tz::Asia::Shanghai;
    let now = chrono::Utc::now().timestamp_millis();
    let start_ms = if opts.speed > 1.0 {
        let today = crate::accounting::window::LocalTime::new(now, tz).map_or(now, |l| {
            l.window_start_ms(crate::accounting::window::WindowKind::Day, tz)
        });
        crate::accounting::window::LocalTime::new(today - 1, tz).map_or(today - 86_400_000, |l| {
            l.window_start_ms(crate::accounting::window::WindowKind::Day, tz)
        })
    } else {
        now
    };
    let clock = crate::util::Clock::simulated(start_ms, opts.speed);

    // The simulators: their own runtime, alive for the whole demo.
    let sims = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ecogate-demo-sim")
        .enable_all()
        .build()
        .context("starting the simulators' runtime")?;
    let banks: Vec<sim::Bank> = park::FACTORIES
        .iter()
        .map(|_| sim::Bank::default())
        .collect();
    let mut park_state = sim::Park::new(start_ms, tz);
    park_state.write_banks(&banks);
    let mut gateways = Vec::new();
    for bank in &banks {
        let listener = sims.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        gateways.push(listener.local_addr()?);
        let bank = bank.clone();
        sims.spawn(async move {
            let server = tokio_modbus::server::tcp::Server::new(listener);
            let on_connected = move |stream, _addr| {
                let bank = bank.clone();
                async move { Ok(Some((sim::Gateway(bank), stream))) }
            };
            let _ = server.serve(&on_connected, |_err| {}).await;
        });
    }
    let dlt645_line: crate::sources::dlt645::sim::SimLine =
        std::sync::Arc::new(std::sync::Mutex::new(vec![
            crate::sources::dlt645::sim::SimMeter::new(park::QH_GRID_ADDRESS, 0.0),
        ]));
    park_state.write_dlt645(&dlt645_line);
    let (dlt645_addr, _) = sims
        .block_on(crate::sources::dlt645::sim::listen(dlt645_line.clone()))
        .context("starting the simulated DL/T 645 serial server")?;
    let mqtt_port = free_port()?;
    let mut broker = rumqttd::Broker::new(broker_config(mqtt_port)?);
    std::thread::Builder::new()
        .name("ecogate-demo-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                eprintln!("ecogate demo: the embedded MQTT broker stopped: {e}");
            }
        })
        .context("starting the embedded MQTT broker")?;
    // The daemon's first connection should find the broker listening (5 s at most).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", mqtt_port)).is_err()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }

    let config_path = opts.dir.join("ecogate.toml");
    let text = park::config_text(&opts.dir, &gateways, dlt645_addr, mqtt_port, opts.listen);
    std::fs::write(&config_path, &text)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let app = AppConfig::load(&config_path)
        .map_err(|e| anyhow::anyhow!("the demo's configuration: {e}"))?;
    let publishing: usize = park_state.messages().len();
    println!(
        "ecogate demo: {} firms, {} meters: {} factories on Modbus TCP gateways at {}, a DL/T 645 meter behind a serial server at {dlt645_addr}, {} meters publishing over MQTT to the embedded broker at 127.0.0.1:{mqtt_port}",
        app.core.firms.len(),
        app.core.meters.len(),
        park::FACTORIES.len(),
        gateways.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "),
        publishing
    );
    println!(
        "simulated time from {} at {}x real time; configuration {}, store {}",
        local(start_ms, tz),
        opts.speed,
        config_path.display(),
        app.core.store.path.display()
    );
    println!(
        "status page http://{0}/ (English: http://{0}/?lang=en), metrics http://{0}/metrics; Ctrl-C stops",
        opts.listen
    );

    // The simulation: advance every second, serve the registers, publish the hubs.
    let sim_clock = clock;
    sims.spawn(async move {
        let mut o = rumqttc::MqttOptions::new("demo-publishers", "127.0.0.1", mqtt_port);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 1000);
        tokio::spawn(async move {
            loop {
                if eventloop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            park_state.advance(sim_clock.now_ms());
            park_state.write_banks(&banks);
            park_state.write_dlt645(&dlt645_line);
            for (topic, payload) in park_state.messages() {
                let _ = client
                    .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                    .await;
            }
        }
    });
    // The console summary every 5 s, from the daemon's own /metrics and store.
    let summary_config = app.core.clone();
    let listen = opts.listen;
    sims.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let mut last: Option<(std::time::Instant, f64)> = None;
        loop {
            tick.tick().await;
            let config = summary_config.clone();
            let line = tokio::task::spawn_blocking(move || {
                summary(&config, listen, clock, &mut last).map(|l| (l, last))
            })
            .await;
            if let Ok(Some((l, kept))) = line {
                last = kept;
                println!("{l}");
            }
        }
    });
    let hooks = daemon::Hooks { after_start, clock };
    let result = daemon::run(&config_path, app, hooks);
    sims.shutdown_timeout(Duration::from_secs(1));
    result
}

fn local(ts_ms: i64, tz: chrono_tz::Tz) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// One console line: simulated time, readings per second, meters up, firms over a threshold.
fn summary(
    config: &crate::config::Config,
    listen: SocketAddr,
    clock: crate::util::Clock,
    last: &mut Option<(std::time::Instant, f64)>,
) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&listen, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: demo\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
    let readings = body
        .lines()
        .find(|l| l.starts_with("ecogate_readings_accepted_total "))
        .and_then(value)?;
    let ups: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with("ecogate_meter_up{"))
        .filter_map(value)
        .collect();
    let now = std::time::Instant::now();
    let rate = last.map_or(0.0, |(t, n)| {
        (readings - n) / now.duration_since(t).as_secs_f64().max(0.001)
    });
    *last = Some((now, readings));
    let sim_now = clock.now_ms();
    let alerts: Vec<String> = crate::sinks::store::Store::open(&config.store.path)
        .map(|store| {
            crate::alerting::observe(&store, config, sim_now)
                .into_iter()
                .filter(|o| o.value > o.threshold)
                .map(|o| {
                    let firm = config
                        .firms
                        .iter()
                        .find(|f| f.id == o.entity)
                        .map(|f| f.name.as_str());
                    let site = config
                        .sites
                        .iter()
                        .find(|s| s.id == o.entity)
                        .and_then(|s| s.name.as_deref());
                    let name = firm.or(site).unwrap_or(o.entity.as_str());
                    format!(
                        "{} {} ({:.2} > {:.2})",
                        name,
                        o.condition.alertname(),
                        o.value,
                        o.threshold
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Some(format!(
        "[{}] {} readings ({:.0}/s), meters up {}/{}, {} firms, alerts: {}",
        local(sim_now, config.park.timezone),
        readings,
        rate,
        ups.iter().filter(|v| **v == 1.0).count(),
        ups.len(),
        config.firms.len(),
        if alerts.is_empty() {
            "none".to_string()
        } else {
            alerts.join("; ")
        }
    ))
}
