//! The park's figures read from the store when `/metrics` is scraped (not counted as readings
//! pass): a reader of the store, wired here by the application, not a part of the metrics
//! component.

use crate::accounting::ledger::Entity;
use crate::config::{Config, WindowKind};
use prometheus::{GaugeVec, Opts, Registry};

/// Registers the figures read from the store at scrape time and returns the refresh that sets
/// them: year-to-date CO2 (a gauge that survives restarts, for the budget rule) and the derived
/// figures of the last 24 hours (carbon and energy intensity, green share, output per mu so far
/// this year, hydrogen kgCO2e/kg and class). Ratios are derived from sums, as in the reports.
pub fn year_to_date(
    registry: &Registry,
    config: std::sync::Arc<Config>,
) -> crate::metrics::http::Refresh {
    use crate::accounting::indicators::HydrogenClass;
    let gauge = |name: &str, help: &str, label: &str| {
        let g = GaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric");
        registry
            .register(Box::new(g.clone()))
            .expect("registered once");
        g
    };
    let ytd = gauge(
        "ecogate_firm_co2_year_to_date_kg",
        "CO2 (Scope 1 + location-based Scope 2) since 1 January in the park's time zone, kg.",
        "firm",
    );
    let intensity = gauge(
        "ecogate_firm_carbon_intensity_tco2_per_10k_cny",
        "Carbon intensity over the last 24 hours, tCO2 per 10,000 CNY of output.",
        "firm",
    );
    let energy_intensity = gauge(
        "ecogate_firm_energy_intensity_tce_per_10k_cny",
        "Energy intensity (equivalent value) over the last 24 hours, tce per 10,000 CNY of output.",
        "firm",
    );
    let green = gauge(
        "ecogate_firm_green_share_ratio",
        "Share of electricity from on-site PV and green power over the last 24 hours.",
        "firm",
    );
    let per_mu = gauge(
        "ecogate_firm_output_per_mu_cny",
        "Output value per mu since 1 January, CNY.",
        "firm",
    );
    let h2 = gauge(
        "ecogate_site_hydrogen_kgco2_per_kg",
        "kgCO2e per kg of hydrogen produced over the last 24 hours.",
        "site",
    );
    let h2_class = gauge(
        "ecogate_site_hydrogen_class",
        "Hydrogen class over the last 24 hours (T/CAB 0078-2020): 1 clean, 2 low-carbon, 3 conventional.",
        "site",
    );
    // Time of use this month, with a [tariff] only (no empty families without one).
    let tou = config.tariff.as_ref().map(|_| {
        let band = GaugeVec::new(
            Opts::new(
                "ecogate_firm_tou_month_kwh",
                "Grid import this month (park time zone) by time-of-use band: sharp, peak, flat, valley.",
            ),
            &["firm", "band"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(band.clone()))
            .expect("registered once");
        let cost = gauge(
            "ecogate_firm_tou_month_cost_cny",
            "Energy cost this month at the [tariff] prices, CNY.",
            "firm",
        );
        let demand = gauge(
            "ecogate_firm_max_demand_month_kw",
            "Highest 15-minute average grid import this month, kW.",
            "firm",
        );
        let contract = gauge(
            "ecogate_firm_max_demand_of_contract_ratio",
            "This month's maximum demand over the contracted demand ([tariff.demand] contract_kw).",
            "firm",
        );
        (band, cost, demand, contract)
    });
    // The month's time of use reads every quarter hour of the month for every firm (about 3,000
    // rows a firm): at most once a minute, not at every scrape; the gauges hold between.
    let tou_read: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let store: std::sync::Mutex<Option<crate::sinks::store::Store>> = std::sync::Mutex::new(None);
    std::sync::Arc::new(move || {
        let Ok(mut guard) = store.lock() else { return };
        if guard.is_none() {
            *guard = crate::sinks::store::Store::open(&config.store.path).ok();
        }
        let Some(s) = guard.as_ref() else { return };
        let figures = crate::figures::Figures {
            store: s,
            config: &config,
        };
        let now = chrono::Utc::now().timestamp_millis();
        let tou_due = {
            let mut last = tou_read.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60));
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        for (i, firm) in config.firms.iter().enumerate() {
            let e = Entity::Firm(i as u32);
            let labels = [firm.id.as_str()];
            if let Ok(span) = figures.year_to_date(e, now) {
                let d = figures.indicators(e, &span);
                ytd.with_label_values(&labels).set(d.co2_total_t * 1000.0);
                if let Some(v) = d.output_per_mu_cny {
                    per_mu.with_label_values(&labels).set(v);
                }
            }
            if let Some((band, cost, demand, contract)) = tou.as_ref().filter(|_| tou_due) {
                let tz = config.park.timezone;
                let month_start = crate::accounting::window::LocalTime::new(now, tz)
                    .map_or(now, |l| l.window_start_ms(WindowKind::Month, tz));
                if let Ok(Some(t)) = figures.tou(e, month_start, now + 1) {
                    for b in crate::config::tariff::Band::ALL {
                        band.with_label_values(&[firm.id.as_str(), b.name()])
                            .set(t.energy.kwh(b));
                    }
                    if let Some(c) = t.energy_cost_cny() {
                        cost.with_label_values(&labels).set(c);
                    }
                    let kw = t.max_demand.map_or(0.0, |(kw, _)| kw);
                    demand.with_label_values(&labels).set(kw);
                    if let Some(c) = t.contract_kw.filter(|c| *c > 0.0) {
                        contract.with_label_values(&labels).set(kw / c);
                    }
                }
            }
            if let Ok(span) = figures.last_24h(e, now) {
                let d = figures.indicators(e, &span);
                for (g, v) in [
                    (&intensity, d.carbon_intensity_tco2_per_10k_cny),
                    (&energy_intensity, d.energy_intensity_tce_per_10k_cny),
                    (&green, d.green_share),
                ] {
                    if let Some(v) = v {
                        g.with_label_values(&labels).set(v);
                    }
                }
            }
        }
        for (i, site) in config.sites.iter().enumerate() {
            if site.kind != crate::config::SiteKind::HydrogenSite {
                continue;
            }
            let e = Entity::Site(i as u32);
            let Ok(span) = figures.last_24h(e, now) else {
                continue;
            };
            if let Some(h) = figures.indicators(e, &span).hydrogen {
                if let (Some(v), Some(c)) = (h.kgco2_per_kg, h.class) {
                    h2.with_label_values(&[&site.id]).set(v);
                    let class = match c {
                        HydrogenClass::Clean => 1.0,
                        HydrogenClass::LowCarbon => 2.0,
                        HydrogenClass::Conventional => 3.0,
                    };
                    h2_class.with_label_values(&[&site.id]).set(class);
                }
            }
        }
    })
}
