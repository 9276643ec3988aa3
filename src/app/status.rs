//! The status pages' data: read from the store through [`crate::figures`], the latest
//! evaluation and every source's meter health, then rendered by [`crate::status::render`].

use crate::accounting::indicators::Period;
use crate::accounting::ledger::Entity;
use crate::accounting::metric::{Metric, Sums};
use crate::accounting::window::{LocalTime, WindowKind};
use crate::config::Config;
use crate::evaluation::Evaluation;
use crate::figures::Figures;
use crate::metrics::http::Page;
use crate::report::tables::Lang;
use crate::sinks::store::Store;
use crate::sources::health::{MeterStatus, Statuses};
use crate::status::*;
use std::sync::{Arc, Mutex};

/// The latest evaluation of the year to date, shared by its refresher and the pages.
pub type LatestEvaluation = Arc<Mutex<Option<Arc<Evaluation>>>>;

/// Everything the pages read.
pub struct StatusPages {
    pub config: Arc<Config>,
    pub meter_health: Vec<Statuses>,
    /// What the sources ask their user to act on.
    pub notices: Vec<crate::sources::health::Notices>,
    pub evaluation: LatestEvaluation,
    /// Brings `evaluation` up to date (at most every 10 minutes).
    pub refresh_evaluation: crate::metrics::http::Refresh,
    /// The figures' "now" (simulated in the demo); meter health is in real time.
    pub clock: crate::util::Clock,
}

fn totals(config: &Config, entity: Entity, sums: &Sums, days: f64) -> Totals {
    let ind = crate::figures::derive(
        config,
        entity,
        sums,
        Period {
            days: days.max(1.0 / 24.0),
            year_days: 365.0,
            whole_year_holdings: false,
        },
    );
    Totals {
        electricity_kwh: ind.electricity_consumed_kwh,
        energy_tce: ind.energy_equivalent_tce,
        co2_t: ind.co2_total_t,
        green_share: ind.green_share,
    }
}

fn local_text(config: &Config, ts_ms: i64, format: &str) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .map(|t| {
            t.with_timezone(&config.park.timezone)
                .format(format)
                .to_string()
        })
        .unwrap_or_default()
}

/// The start of the local day `days_back` days before the one holding `now_ms`.
fn day_start(config: &Config, now_ms: i64, days_back: u32) -> i64 {
    let tz = config.park.timezone;
    let mut start =
        LocalTime::new(now_ms, tz).map_or(now_ms, |l| l.window_start_ms(WindowKind::Day, tz));
    for _ in 0..days_back {
        start = LocalTime::new(start - 1, tz).map_or(start - 86_400_000, |l| {
            l.window_start_ms(WindowKind::Day, tz)
        });
    }
    start
}

impl StatusPages {
    /// Today and this month of an entity.
    fn today_and_month(
        &self,
        reader: &Figures,
        entity: Entity,
        now_ms: i64,
    ) -> anyhow::Result<(Totals, Totals)> {
        let config = &self.config;
        let tz = config.park.timezone;
        let today_start = day_start(config, now_ms, 0);
        let today = reader.days(entity, today_start, today_start + 1)?;
        let month_start =
            LocalTime::new(now_ms, tz).map_or(now_ms, |l| l.window_start_ms(WindowKind::Month, tz));
        let month = reader.month(entity, month_start)?;
        let hours_today = (now_ms - today_start) as f64 / 86_400_000.0;
        let days_month = (now_ms - month_start) as f64 / 86_400_000.0;
        Ok((
            totals(config, entity, &today, hours_today),
            totals(config, entity, &month, days_month),
        ))
    }

    fn firm_rows(&self, store: &Store, now_ms: i64) -> anyhow::Result<Vec<FirmRow>> {
        let config = &self.config;
        let reader = Figures { store, config };
        let evaluation = self.evaluation.lock().ok().and_then(|e| e.clone());
        let observations = crate::alerting::observe(store, config, now_ms);
        let mut rows = Vec::new();
        for (i, f) in config.firms.iter().enumerate() {
            let e = Entity::Firm(i as u32);
            let ytd = reader.year_to_date(e, now_ms)?;
            let ind = reader.indicators(e, &ytd);
            // The same window as the intensity alert.
            let day = reader.last_24h(e, now_ms)?;
            let day_ind = reader.indicators(e, &day);
            let ev = evaluation
                .as_ref()
                .and_then(|ev| ev.firms.iter().find(|x| x.firm == f.id).cloned());
            let alerts = observations
                .iter()
                .filter(|o| o.entity == f.id && o.value > o.threshold)
                .map(|o| alert_words(o.condition))
                .collect();
            rows.push(FirmRow {
                id: f.id.clone(),
                name: f.name.clone(),
                land_mu: f.land_mu,
                output_per_mu_cny: ind.output_per_mu_annualised_cny,
                carbon_intensity: day_ind.carbon_intensity_tco2_per_10k_cny,
                class: ev.as_ref().and_then(|x| x.class.clone()),
                score: ev.as_ref().and_then(|x| x.score),
                alerts,
            });
        }
        // Best output per mu first; firms without a figure last, by name.
        rows.sort_by(|a, b| match (a.output_per_mu_cny, b.output_per_mu_cny) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.name.cmp(&b.name),
        });
        Ok(rows)
    }

    fn meter_rows(&self, firm: Option<usize>) -> Vec<MeterRow> {
        let config = &self.config;
        let real_now = chrono::Utc::now().timestamp_millis();
        let mut statuses: Vec<MeterStatus> =
            self.meter_health.iter().flat_map(|s| s(real_now)).collect();
        statuses.sort_by(|a, b| a.meter.cmp(&b.meter));
        statuses
            .into_iter()
            .filter_map(|status| {
                let meter = config.meters.iter().find(|m| m.id == status.meter)?;
                let site = config.sites.get(meter.site)?;
                if firm.is_some_and(|f| f != site.firm) {
                    return None;
                }
                Some(MeterRow {
                    firm: config
                        .firms
                        .get(site.firm)
                        .map_or(String::new(), |f| f.name.clone()),
                    site: site.name.clone().unwrap_or_else(|| site.id.clone()),
                    description: meter.description.clone().unwrap_or_default(),
                    status,
                })
            })
            .collect()
    }

    pub fn overview(&self, now_ms: i64) -> anyhow::Result<Overview> {
        let config = &self.config;
        (self.refresh_evaluation)();
        let store = Store::open(&config.store.path)?;
        let reader = Figures {
            store: &store,
            config,
        };
        let (today, month) = self.today_and_month(&reader, Entity::Park, now_ms)?;
        let meters = self.meter_rows(None);
        Ok(Overview {
            park: config.park.name.clone(),
            at: local_text(config, now_ms, "%Y-%m-%d %H:%M"),
            today,
            month,
            firms: self.firm_rows(&store, now_ms)?,
            meters_up: meters.iter().filter(|m| m.status.up).count(),
            meters_total: meters.len(),
            evaluation_year: local_text(config, now_ms, "%Y").parse().unwrap_or(0),
            notices: self
                .notices
                .iter()
                .flat_map(|n| n())
                .map(|n| (n.en, n.zh))
                .collect(),
        })
    }

    pub fn firm(&self, id: &str, now_ms: i64) -> anyhow::Result<Option<FirmPage>> {
        let config = &self.config;
        let Some(fi) = config.firms.iter().position(|f| f.id == id) else {
            return Ok(None);
        };
        (self.refresh_evaluation)();
        let store = Store::open(&config.store.path)?;
        let reader = Figures {
            store: &store,
            config,
        };
        let e = Entity::Firm(fi as u32);
        let (today, month) = self.today_and_month(&reader, e, now_ms)?;
        let tz = config.park.timezone;
        let bar = |label: String, s: &Sums| Bar {
            label,
            energy_kwh: s.get(Metric::ElectricityConsumedKwh),
            co2_kg: s.get(Metric::Co2Scope1Kg) + s.get(Metric::Co2Scope2LocationKg),
        };
        let hour_now =
            LocalTime::new(now_ms, tz).map_or(now_ms, |l| l.window_start_ms(WindowKind::Hour, tz));
        let mut hours = Vec::with_capacity(24);
        for k in (0..24).rev() {
            let start = hour_now - k * 3_600_000;
            let s = store.sums(&**config, WindowKind::Hour, e, start, start + 1)?;
            hours.push(bar(local_text(config, start, "%H:00"), &s));
        }
        let mut days = Vec::with_capacity(30);
        for k in (0..30).rev() {
            let start = day_start(config, now_ms, k);
            let s = reader.days(e, start, start + 1)?;
            days.push(bar(local_text(config, start, "%m-%d"), &s));
        }
        let firm = self
            .firm_rows(&store, now_ms)?
            .into_iter()
            .find(|r| r.id == id)
            .unwrap_or_default();
        let month_start =
            LocalTime::new(now_ms, tz).map_or(now_ms, |l| l.window_start_ms(WindowKind::Month, tz));
        let tou = reader
            .tou(e, month_start, now_ms + 1)?
            .map(|t| crate::status::model::TouMonth {
                bands: crate::config::tariff::Band::ALL
                    .iter()
                    .map(|b| (b.name(), b.zh(), t.energy.kwh(*b)))
                    .collect(),
                cost_cny: t.energy_cost_cny(),
                max_demand_kw: t.max_demand.map(|(kw, _)| kw),
                max_demand_at: t
                    .max_demand
                    .map(|(_, at)| local_text(config, at, "%Y-%m-%d %H:%M")),
                contract_kw: t.contract_kw,
            });
        Ok(Some(FirmPage {
            tou,
            park: config.park.name.clone(),
            at: local_text(config, now_ms, "%Y-%m-%d %H:%M"),
            firm,
            today,
            month,
            hours,
            days,
            meters: self.meter_rows(Some(fi)),
        }))
    }

    pub fn meters(&self, now_ms: i64) -> MetersPage {
        MetersPage {
            park: self.config.park.name.clone(),
            at: local_text(&self.config, now_ms, "%Y-%m-%d %H:%M"),
            now_ms: chrono::Utc::now().timestamp_millis(),
            meters: self.meter_rows(None),
        }
    }

    /// Serves a path of the status pages; `None` for a path that is not one.
    pub fn handle(&self, path: &str, query: &str) -> Option<Page> {
        let lang = if query.split('&').any(|kv| kv == "lang=en") {
            Lang::En
        } else {
            Lang::Zh
        };
        let now_ms = if self.clock.is_real() {
            super::now_ms(&self.config)
        } else {
            self.clock.now_ms()
        };
        let html = |body: String| Page {
            status: "200 OK",
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
        };
        let failed = |e: anyhow::Error| {
            tracing::warn!("status page {path}: {e:#}");
            Page {
                status: "503 Service Unavailable",
                content_type: "text/plain; charset=utf-8",
                body: format!("the store cannot be read: {e:#}\n").into_bytes(),
            }
        };
        match path {
            "/" | "/index.html" => Some(match self.overview(now_ms) {
                Ok(o) => html(crate::status::render::overview(&o, lang)),
                Err(e) => failed(e),
            }),
            "/meters" => Some(html(crate::status::render::meters(
                &self.meters(now_ms),
                lang,
            ))),
            p => {
                let id = p.strip_prefix("/firm/")?;
                Some(match self.firm(id, now_ms) {
                    Ok(Some(f)) => html(crate::status::render::firm(
                        &f,
                        lang,
                        chrono::Utc::now().timestamp_millis(),
                    )),
                    Ok(None) => Page {
                        status: "404 Not Found",
                        content_type: "text/plain; charset=utf-8",
                        body: format!("no firm `{}`\n", id.chars().take(64).collect::<String>())
                            .into_bytes(),
                    },
                    Err(e) => failed(e),
                })
            }
        }
    }
}

fn alert_words(c: crate::alerting::rules::Condition) -> (String, String) {
    use crate::alerting::rules::Condition;
    let (en, zh) = match c {
        Condition::CarbonIntensity => ("carbon intensity over threshold", "单位产值碳排放超标"),
        Condition::BudgetAtRisk => ("over carbon budget", "超出碳排放预算"),
        Condition::HydrogenAboveLowCarbon => {
            ("hydrogen above low-carbon line", "氢气碳排放高于低碳氢标准")
        }
    };
    (en.into(), zh.into())
}
