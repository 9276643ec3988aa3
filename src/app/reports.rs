//! `ecogate report`, `ecogate evaluate` and `ecogate stats import`: the store's figures and the
//! firms' statistics, gathered for the pure evaluation and the report tables, then rendered.
//! They read the store while the daemon runs (SQLite WAL readers), and write only the statistics
//! store.

use super::now_ms;
use crate::accounting::indicators::Period;
use crate::accounting::ledger::Entity;
use crate::accounting::metric::{Metric, Sums};
use crate::accounting::window::{local_midnight_ms, year_progress};
use crate::config::evaluation::EnergyBasis;
use crate::config::{Config, FirmStats};
use crate::evaluation::{self, Coverage, Evaluation, FirmInput, ProductInput, YearStats};
use crate::figures::{self, Figures};
use crate::report::period::ReportPeriod;
use crate::report::render::{self, Format};
use crate::report::tables::{self, Document, Lang, ReportData};
use crate::sinks::store::Store;
use crate::statistics::{import, StatsStore};
use anyhow::{bail, Context};
use chrono::{Datelike, NaiveDate};
use std::path::{Path, PathBuf};

/// How a report is written.
#[derive(Debug, Clone)]
pub struct Output {
    pub format: Format,
    pub lang: Lang,
    /// A file; standard output when absent (not for XLSX at a terminal).
    pub path: Option<PathBuf>,
    /// For CSV, which table (the first by default).
    pub table: Option<String>,
}

/// `ecogate stats import FILE`: checks every row, then stores all of them as one import. A value
/// the file does not give (a column it lacks, a blank cell) is carried forward from the import
/// in force, and said so: an import never replaces a good value with nothing. With `dry_run`,
/// says what would change and stores nothing.
pub fn import_stats(
    config: &Config,
    file: &Path,
    dry_run: bool,
) -> anyhow::Result<Result<String, Vec<String>>> {
    use crate::statistics::FIELDS;
    let mut rows = match import::read(file, config) {
        Ok(rows) => rows,
        Err(errors) => return Ok(Err(errors)),
    };
    let path = &config.evaluation.statistics_path;
    let mut stats = if dry_run && !path.exists() {
        None
    } else {
        Some(StatsStore::open(path)?)
    };
    let shown = |v: f64| crate::report::num(v, if v.fract() == 0.0 { 0 } else { 4 });
    let (mut kept, mut changed, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for r in &mut rows {
        let before = match &stats {
            Some(s) => s.in_force(&r.firm, r.year)?,
            None => None,
        };
        let Some((old, from)) = before else {
            added.push(format!(
                "{} {}: new ({} of {} values given)",
                r.firm,
                r.year,
                r.values.iter().flatten().count(),
                FIELDS.len()
            ));
            continue;
        };
        for (i, field) in FIELDS.iter().enumerate() {
            match (old[i], r.values[i]) {
                (Some(o), None) => {
                    r.values[i] = Some(o);
                    kept.push(format!(
                        "{} {}: {field} not in this file: kept {} from import #{from}",
                        r.firm,
                        r.year,
                        shown(o)
                    ));
                }
                (Some(o), Some(n)) if o != n => changed.push(format!(
                    "{} {}: {field} {} -> {}",
                    r.firm,
                    r.year,
                    shown(o),
                    shown(n)
                )),
                (None, Some(n)) => changed.push(format!(
                    "{} {}: {field} added: {}",
                    r.firm,
                    r.year,
                    shown(n)
                )),
                _ => {}
            }
        }
    }
    let mut years: Vec<i32> = rows.iter().map(|r| r.year).collect();
    years.sort();
    years.dedup();
    let mut firms: Vec<&str> = rows.iter().map(|r| r.firm.as_str()).collect();
    firms.sort();
    firms.dedup();
    let mut out = match (&mut stats, dry_run) {
        (Some(s), false) => {
            let bytes = std::fs::read(file)
                .with_context(|| format!("reading {} again for its digest", file.display()))?;
            let digest: String = ring::digest::digest(&ring::digest::SHA256, &bytes)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let by = std::env::var("SUDO_USER")
                .or_else(|_| std::env::var("USER"))
                .unwrap_or_default();
            let id = s.import(
                &file.display().to_string(),
                &rows,
                now_ms(config),
                (&digest, &by),
            )?;
            format!("import #{id} (sha256 {}): ", &digest[..16])
        }
        _ => "dry run, nothing imported: ".to_string(),
    };
    out.push_str(&format!(
        "{} rows ({} firms; years {}) from {} into {}",
        rows.len(),
        firms.len(),
        years
            .iter()
            .map(|y| y.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        file.display(),
        path.display()
    ));
    for (what, lines) in [("changed", &changed), ("kept", &kept), ("new", &added)] {
        if !lines.is_empty() {
            out.push_str(&format!("\n{what}:"));
            for l in lines.iter() {
                out.push_str(&format!("\n  {l}"));
            }
        }
    }
    Ok(Ok(out))
}

/// `ecogate stats history`: every import, oldest first, one line each.
pub fn stats_history(config: &Config) -> anyhow::Result<String> {
    use std::fmt::Write;
    let path = &config.evaluation.statistics_path;
    if !path.exists() {
        return Ok(format!(
            "no imports yet ({} does not exist)\n",
            path.display()
        ));
    }
    let store = StatsStore::open(path)?;
    let mut out = String::new();
    for r in store.history()? {
        let at = chrono::DateTime::from_timestamp_millis(r.at_ms)
            .map(|t| {
                t.with_timezone(&config.park.timezone)
                    .format("%Y-%m-%d %H:%M %:z")
                    .to_string()
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "#{} {at} {} ({} rows) sha256 {} by {}",
            r.id,
            r.file,
            r.rows,
            r.digest.as_deref().unwrap_or("-"),
            r.by.as_deref().filter(|b| !b.is_empty()).unwrap_or("-")
        );
    }
    Ok(out)
}

fn open_store(config: &Config) -> anyhow::Result<Store> {
    let path = &config.store.path;
    if !path.exists() {
        bail!(
            "no store at {}: run `ecogate run` or `ecogate replay` first",
            path.display()
        );
    }
    Ok(Store::open(path)?)
}

/// A firm's statistics for a year: the latest import that has them, else the configuration.
fn year_stats(
    config: &Config,
    stats: Option<&StatsStore>,
    firm: usize,
    year: i32,
) -> anyhow::Result<(FirmStats, String)> {
    let f = &config.firms[firm];
    if let Some(s) = stats.and_then(|s| s.latest(&f.id, year, config.park.timezone).transpose()) {
        let s = s?;
        let mut merged = f.stats.clone();
        merged.tax_cny = s.stats.tax_cny;
        merged.revenue_cny = s.stats.revenue_cny;
        merged.value_added_cny = s.stats.value_added_cny;
        merged.output_value_cny = s.output_value_cny;
        merged.employees = s.stats.employees;
        merged.rd_spend_cny = s.stats.rd_spend_cny;
        merged.pollutant_t = s.stats.pollutant_t;
        merged.off_meter_tce = s.stats.off_meter_tce;
        return Ok((merged, s.source));
    }
    Ok((f.stats.clone(), config.file.display().to_string()))
}

/// The days of `year` the store's figures can cover by `now_ms`: the whole year once it is
/// over, the year to date while it runs.
fn coverage(config: &Config, year: i32, now_ms: i64) -> anyhow::Result<(Coverage, i64, i64)> {
    let tz = config.park.timezone;
    let start = local_midnight_ms(NaiveDate::from_ymd_opt(year, 1, 1).context("year")?, tz);
    let end = local_midnight_ms(NaiveDate::from_ymd_opt(year + 1, 1, 1).context("year")?, tz);
    let year_days = (end - start) as f64 / 86_400_000.0;
    if now_ms <= start {
        bail!("{year} has not started");
    }
    if now_ms >= end {
        return Ok((
            Coverage {
                days: year_days,
                year_days,
            },
            start,
            end,
        ));
    }
    let (_, elapsed) = year_progress(now_ms, tz).unwrap_or((year_days, 1.0));
    Ok((
        Coverage {
            days: elapsed.max(1.0 / 24.0),
            year_days,
        },
        start,
        now_ms,
    ))
}

/// Evaluates a year (provisional while it runs) from the store and the statistics.
pub fn evaluate_year(
    config: &Config,
    store: &Store,
    stats: Option<&StatsStore>,
    year: i32,
    now_ms: i64,
) -> anyhow::Result<Evaluation> {
    let (cov, from, to) = coverage(config, year, now_ms)?;
    let reader = Figures { store, config };
    let basis = match config.evaluation.energy_basis {
        EnergyBasis::Equivalent => Metric::EnergyEquivalentKgce,
        EnergyBasis::CoalConsumption => Metric::EnergyCoalConsumptionKgce,
    };
    let mut inputs = Vec::new();
    for (fi, f) in config.firms.iter().enumerate() {
        // Day windows: the year to date ends inside today's.
        let sums = reader.days(Entity::Firm(fi as u32), from, to)?;
        let (st, source) = year_stats(config, stats, fi, year)?;
        let period = Period {
            days: cov.days,
            year_days: cov.year_days,
            whole_year_holdings: true,
        };
        let ind = figures::derive_firm_with(config, fi, &st, &sums, period);
        let mut products = Vec::new();
        for p in &f.products {
            let meter = &config.meters[p.meter];
            let m = reader.days(Entity::Meter(p.meter as u32), from, to)?;
            let site = reader.days(Entity::Site(meter.site as u32), from, to)?;
            products.push(ProductInput {
                name: p.name.clone(),
                quantity: m.get(Metric::OutputCny) / p.unit_value_cny_per_base / p.unit_in_base,
                site_energy_kgce: site.get(basis),
                quota_kgce_per_unit: p.quota_kgce_per_unit,
                unit: p.unit.clone(),
                source: p.source.clone(),
            });
        }
        inputs.push(FirmInput {
            firm: f.id.clone(),
            land_mu: f.land_mu,
            sector: f.sector.clone(),
            stats: YearStats {
                tax_cny: st.tax_cny,
                revenue_cny: st.revenue_cny,
                value_added_cny: st.value_added_cny,
                employees: st.employees,
                rd_spend_cny: st.rd_spend_cny,
                pollutant_t: st.pollutant_t,
                off_meter_tce: st.off_meter_tce,
            },
            stats_source: source,
            metered_tce: sums.get(basis) / 1000.0,
            metered_co2_t: (sums.get(Metric::Co2Scope1Kg) + sums.get(Metric::Co2Scope2LocationKg))
                / 1000.0,
            output_cny: ind.output_cny,
            carbon_budget_tco2: st.carbon_budget_tco2,
            intensity_threshold_tco2_per_10k_cny: st.intensity_threshold_tco2_per_10k_cny,
            products,
            commitments: f.commitments.clone(),
        });
    }
    Ok(evaluation::evaluate(year, cov, inputs, &config.evaluation))
}

fn period_figures(
    config: &Config,
    reader: &Figures,
    entity: Entity,
    p: &ReportPeriod,
) -> anyhow::Result<Sums> {
    let (a, b) = p.bounds_ms(config.park.timezone);
    Ok(reader.days(entity, a, b)?)
}

fn present(s: Sums) -> Option<Sums> {
    (s.micro(Metric::Deltas) != 0).then_some(s)
}

/// The period report's data.
pub fn gather<'a>(
    config: &'a Config,
    store: &Store,
    stats: Option<&StatsStore>,
    period: ReportPeriod,
    now_ms: i64,
) -> anyhow::Result<ReportData<'a>> {
    let reader = Figures { store, config };
    let tz = config.park.timezone;
    let year = period.year();
    let year_days = NaiveDate::from_ymd_opt(year, 12, 31).map_or(365, |d| d.ordinal()) as f64;
    let p = Period {
        days: period.days() as f64,
        year_days,
        whole_year_holdings: period.kind == crate::report::period::Kind::Year,
    };
    let figures_of =
        |entity: Entity, stats: Option<&FirmStats>| -> anyhow::Result<tables::Figures> {
            let sums = period_figures(config, &reader, entity, &period)?;
            let indicators = match (entity, stats) {
                (Entity::Firm(i), Some(st)) => {
                    figures::derive_firm_with(config, i as usize, st, &sums, p)
                }
                _ => figures::derive(config, entity, &sums, p),
            };
            Ok(tables::Figures {
                sums,
                indicators,
                previous: match period.previous() {
                    Some(prev) => present(period_figures(config, &reader, entity, &prev)?),
                    None => None,
                },
                year_before: present(period_figures(
                    config,
                    &reader,
                    entity,
                    &period.year_before(),
                )?),
            })
        };
    let mut firms = Vec::new();
    for fi in 0..config.firms.len() {
        let (st, _) = year_stats(config, stats, fi, year)?;
        firms.push(figures_of(Entity::Firm(fi as u32), Some(&st))?);
    }
    let park = figures_of(Entity::Park, None)?;
    let mut sites = Vec::new();
    for (si, s) in config.sites.iter().enumerate() {
        if matches!(
            s.kind,
            crate::config::SiteKind::ChargingStation | crate::config::SiteKind::HydrogenSite
        ) {
            let sums = period_figures(config, &reader, Entity::Site(si as u32), &period)?;
            sites.push((
                si,
                figures::derive(config, Entity::Site(si as u32), &sums, p),
            ));
        }
    }
    let mut months = Vec::new();
    for m in 1..=12 {
        let Some(first) = NaiveDate::from_ymd_opt(year, m, 1) else {
            continue;
        };
        let start = local_midnight_ms(first, tz);
        if start > now_ms {
            break;
        }
        let s = reader.month(Entity::Park, start)?;
        months.push((
            format!("{year}-{m:02}"),
            s.get(Metric::EnergyEquivalentKgce) / 1000.0,
            (s.get(Metric::Co2Scope1Kg) + s.get(Metric::Co2Scope2LocationKg)) / 1000.0,
        ));
    }
    let evaluation = evaluate_year(config, store, stats, year, now_ms).ok();
    let mut tou = Vec::new();
    let mut registers = Vec::new();
    if config.tariff.is_some() {
        let (from, to) = period.bounds_ms(tz);
        for (fi, f) in config.firms.iter().enumerate() {
            if let Some(t) = reader.tou(Entity::Firm(fi as u32), from, to)? {
                tou.push((f.name.clone(), t));
            }
        }
        if let Some(t) = reader.tou(Entity::Park, from, to)? {
            tou.push((config.park.name.clone(), t));
        }
        for mi in 0..config.meters.len() {
            registers.extend(reader.tariff_registers(mi, from, to)?);
        }
    }
    Ok(ReportData {
        tou,
        registers,
        config,
        period,
        firms,
        park,
        sites,
        months,
        evaluation,
    })
}

/// Writes a document in the chosen form.
pub fn write(doc: &Document, out: &Output) -> anyhow::Result<()> {
    let bytes: Vec<u8> = match out.format {
        Format::Table => render::text(doc, out.lang).into_bytes(),
        Format::Md => render::markdown(doc, out.lang).into_bytes(),
        Format::Html => render::html(doc, out.lang).into_bytes(),
        Format::Json => render::json(doc).into_bytes(),
        Format::Csv => {
            let table = match &out.table {
                None => doc.tables.first(),
                Some(id) => doc.tables.iter().find(|t| t.id == id),
            };
            let Some(t) = table else {
                bail!(
                    "no table `{}`; the tables are {}",
                    out.table.as_deref().unwrap_or(""),
                    doc.tables
                        .iter()
                        .map(|t| t.id)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            render::csv(t, out.lang).into_bytes()
        }
        Format::Xlsx => {
            if out.path.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("an XLSX report is binary: give --output FILE.xlsx");
            }
            render::xlsx(doc, out.lang).context("writing the workbook")?
        }
    };
    match &out.path {
        Some(p) => std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(())
}

fn stats_store(config: &Config) -> anyhow::Result<Option<StatsStore>> {
    let p = &config.evaluation.statistics_path;
    Ok(if p.exists() {
        Some(StatsStore::open(p)?)
    } else {
        None
    })
}

/// `ecogate report`.
pub fn report(config: &Config, period: ReportPeriod, out: &Output) -> anyhow::Result<()> {
    let store = open_store(config)?;
    report_from(config, &store, period, out)
}

/// `ecogate report` on the figures of `store` (this machine's, or one read back from the
/// central store, `--central`).
pub fn report_from(
    config: &Config,
    store: &Store,
    period: ReportPeriod,
    out: &Output,
) -> anyhow::Result<()> {
    let stats = stats_store(config)?;
    let data = gather(config, store, stats.as_ref(), period, now_ms(config))?;
    write(&tables::period_report(&data, out.lang), out)
}

/// `ecogate evaluate`: also keeps the result, with its inputs, in the statistics store, and
/// writes it to InfluxDB when that is configured.
pub fn evaluate(app: &super::AppConfig, year: i32, out: &Output) -> anyhow::Result<()> {
    let store = open_store(&app.core)?;
    evaluate_from(app, &store, year, out)
}

/// `ecogate evaluate` on the figures of `store` (see [`report_from`]).
pub fn evaluate_from(
    app: &super::AppConfig,
    store: &Store,
    year: i32,
    out: &Output,
) -> anyhow::Result<()> {
    let config = &app.core;
    let mut stats = StatsStore::open(&config.evaluation.statistics_path)?;
    let now = now_ms(config);
    let ev = evaluate_year(config, store, Some(&stats), year, now)?;
    stats.record(&ev, now)?;
    if let Some(ic) = &app.influx {
        let lines = evaluation_lines(&ev, chrono::Utc::now().timestamp_millis());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        if let Err(e) = rt.block_on(crate::sinks::influx::sender::write_once(ic, lines)) {
            // The report still stands; the next run or the daemon writes it again.
            tracing::warn!("writing the evaluation to InfluxDB: {e}");
        }
    }
    write(&tables::evaluation_report(config, &ev, out.lang), out)
}

/// The evaluation's line protocol: one point per firm, `ecogate_evaluation`, tagged with the firm,
/// the year and whether it is provisional.
pub fn evaluation_lines(ev: &Evaluation, at_ms: i64) -> Vec<u8> {
    use crate::sinks::influx::line_protocol as lp;
    let mut out = Vec::new();
    for f in &ev.firms {
        lp::push_measurement(&mut out, "ecogate_evaluation");
        lp::push_tag(&mut out, "firm", &f.firm);
        lp::push_tag(
            &mut out,
            "provisional",
            if ev.provisional { "true" } else { "false" },
        );
        lp::push_tag(&mut out, "year", &ev.year.to_string());
        out.push(b' ');
        lp::push_field_key(&mut out, "energy_tce");
        out.push(b'=');
        lp::push_f64(&mut out, f.energy_tce);
        out.push(b',');
        lp::push_field_key(&mut out, "co2_t");
        out.push(b'=');
        lp::push_f64(&mut out, f.co2_t);
        if let (Some(score), Some(rank), Some(class)) = (f.score, f.rank, &f.class) {
            out.push(b',');
            lp::push_field_key(&mut out, "score");
            out.push(b'=');
            lp::push_f64(&mut out, score);
            out.push(b',');
            lp::push_field_key(&mut out, "rank");
            out.push(b'=');
            lp::push_i64(&mut out, rank as i64);
            out.push(b',');
            lp::push_field_key(&mut out, "class");
            out.push(b'=');
            lp::push_string_value(&mut out, class);
        }
        let mut flags: Vec<&str> = f.flags.iter().map(|x| x.condition).collect();
        if !f.shortfalls.is_empty() {
            flags.push("commitment_shortfall");
        }
        out.push(b',');
        lp::push_field_key(&mut out, "flags");
        out.push(b'=');
        lp::push_string_value(&mut out, &flags.join(","));
        out.push(b' ');
        lp::push_i64(&mut out, at_ms);
        out.push(b'\n');
    }
    out
}

/// The daemon's evaluation of the year to date, exported as metrics (labels from the
/// configuration only), kept in the statistics store once a day, and written to InfluxDB when it
/// is configured. Recomputed at most every ten minutes, on a /metrics scrape.
pub fn evaluation_metrics(
    registry: &prometheus::Registry,
    config: std::sync::Arc<Config>,
    influx: Option<crate::sinks::influx::config::InfluxConfig>,
    latest: super::status::LatestEvaluation,
) -> crate::metrics::http::Refresh {
    use prometheus::{GaugeVec, Opts};
    let gauge = |name: &str, help: &str, labels: &[&str]| {
        let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        registry
            .register(Box::new(g.clone()))
            .expect("registered once");
        g
    };
    let score = gauge(
        "ecogate_firm_evaluation_score",
        "Per-mu evaluation score of the year to date (provisional, metered figures annualised); NaN when the firm is not rated.",
        &["firm"],
    );
    let rank = gauge(
        "ecogate_firm_evaluation_rank",
        "Rank in the per-mu evaluation of the year to date (ties share the better rank); NaN when not rated.",
        &["firm"],
    );
    let class = gauge(
        "ecogate_firm_evaluation_class",
        "1 for the firm's class in the per-mu evaluation of the year to date, 0 for the others.",
        &["firm", "class"],
    );
    let flag = gauge(
        "ecogate_firm_flag",
        "1 while the flag holds for the year to date (two_high, key_energy_unit, over_carbon_intensity, over_carbon_budget, over_product_quota, commitment_shortfall).",
        &["firm", "flag"],
    );
    let state: std::sync::Mutex<(Option<std::time::Instant>, Option<i64>)> =
        std::sync::Mutex::new((None, None));
    std::sync::Arc::new(move || {
        let Ok(mut st) = state.lock() else { return };
        if st
            .0
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(600))
        {
            return;
        }
        st.0 = Some(std::time::Instant::now());
        let now = now_ms(&config);
        let written_at = chrono::Utc::now().timestamp_millis();
        let Ok(store) = Store::open(&config.store.path) else {
            return;
        };
        let mut stats = StatsStore::open(&config.evaluation.statistics_path).ok();
        let year = chrono::DateTime::from_timestamp_millis(now)
            .map(|t| t.with_timezone(&config.park.timezone).year())
            .unwrap_or(1970);
        let ev = match evaluate_year(&config, &store, stats.as_ref(), year, now) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!("evaluation of {year}: {e}");
                return;
            }
        };
        if let Ok(mut l) = latest.lock() {
            *l = Some(std::sync::Arc::new(ev.clone()));
        }
        for f in &ev.firms {
            score
                .with_label_values(&[&f.firm])
                .set(f.score.unwrap_or(f64::NAN));
            rank.with_label_values(&[&f.firm])
                .set(f.rank.map_or(f64::NAN, |r| r as f64));
            for c in config.evaluation.classes.names() {
                class
                    .with_label_values(&[&f.firm, c])
                    .set(if f.class.as_deref() == Some(c) {
                        1.0
                    } else {
                        0.0
                    });
            }
            for c in crate::config::evaluation::Condition::ALL {
                let on = if c == crate::config::evaluation::Condition::CommitmentShortfall {
                    !f.shortfalls.is_empty()
                } else {
                    f.flags.iter().any(|x| x.condition == c.id())
                };
                flag.with_label_values(&[&f.firm, c.id()])
                    .set(if on { 1.0 } else { 0.0 });
            }
        }
        // Kept with its inputs once a day (a year of hourly records would be large).
        let day = now / 86_400_000;
        if st.1 != Some(day) {
            if let Some(s) = stats.as_mut() {
                match s.record(&ev, now) {
                    Ok(()) => st.1 = Some(day),
                    Err(e) => tracing::warn!("keeping the evaluation: {e}"),
                }
            }
        }
        if let Some(ic) = influx.clone() {
            let lines = evaluation_lines(&ev, written_at);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = crate::sinks::influx::sender::write_once(&ic, lines).await {
                        tracing::warn!("writing the evaluation to InfluxDB: {e}");
                    }
                });
            }
        }
    })
}
