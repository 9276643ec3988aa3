//! What a report holds, as tables of typed cells with English and Chinese headings (the usual
//! terms of ../shared/reference/chinese-terms.md), and the charts of the HTML form. Numbers stay
//! full precision here; renderers round them for display only.

use super::period::ReportPeriod;
use crate::accounting::indicators::Indicators;
use crate::accounting::metric::{Metric, Sums};
use crate::config::evaluation::Indicator;
use crate::config::{Config, SiteKind};
use crate::evaluation::Evaluation;

mod rating;
mod tou;
pub use rating::{evaluation_charts, evaluation_report, evaluation_tables};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn pick<'a>(self, en: &'a str, zh: &'a str) -> &'a str {
        match self {
            Lang::En => en,
            Lang::Zh => zh,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Col {
    /// The CSV/JSON key: English, with the unit in the name.
    pub key: &'static str,
    pub en: &'static str,
    pub zh: &'static str,
    /// Places shown in text, Markdown, HTML and the XLSX number format.
    pub decimals: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Num(f64),
    Empty,
}

impl From<Option<f64>> for Cell {
    fn from(v: Option<f64>) -> Cell {
        match v {
            Some(x) if x.is_finite() => Cell::Num(x),
            _ => Cell::Empty,
        }
    }
}

impl From<f64> for Cell {
    fn from(v: f64) -> Cell {
        Some(v).into()
    }
}

impl From<String> for Cell {
    fn from(v: String) -> Cell {
        Cell::Text(v)
    }
}

impl From<&str> for Cell {
    fn from(v: &str) -> Cell {
        Cell::Text(v.to_string())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub id: &'static str,
    pub en: String,
    pub zh: String,
    pub cols: Vec<Col>,
    pub rows: Vec<Vec<Cell>>,
}

/// A bar chart: one bar per label and series.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub id: &'static str,
    pub en: String,
    pub zh: String,
    pub labels: Vec<String>,
    /// (English name, Chinese name, values).
    pub series: Vec<(String, String, Vec<f64>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub en: String,
    pub zh: String,
    /// Lines under the title (period, sources, provisional marks), per language.
    pub notes: Vec<(String, String)>,
    pub tables: Vec<Table>,
    pub charts: Vec<Chart>,
}

const fn col(key: &'static str, en: &'static str, zh: &'static str, decimals: usize) -> Col {
    Col {
        key,
        en,
        zh,
        decimals,
    }
}

/// The figures of one firm (or the park) for a report.
#[derive(Debug, Clone)]
pub struct Figures {
    pub sums: Sums,
    pub indicators: Indicators,
    /// The period before (环比) and the same period a year earlier (同比), where the store
    /// holds readings for them.
    pub previous: Option<Sums>,
    pub year_before: Option<Sums>,
}

/// Everything a period report is made from.
pub struct ReportData<'a> {
    pub config: &'a Config,
    pub period: ReportPeriod,
    pub firms: Vec<Figures>,
    pub park: Figures,
    /// Charging stations and hydrogen sites: site index and its indicators.
    pub sites: Vec<(usize, Indicators)>,
    /// The park's energy (tce, equivalent) and CO2 (t) per month of the period's year.
    pub months: Vec<(String, f64, f64)>,
    /// The evaluation of the period's year (provisional for a year not over).
    pub evaluation: Option<Evaluation>,
    /// Time of use and demand per firm (by its name) and for the park, when a `[tariff]` is
    /// configured.
    pub tou: Vec<(String, crate::figures::Tou)>,
    /// Meters' own tariff registers against the computed bands.
    pub registers: Vec<crate::figures::Register>,
}

pub fn flag_name(lang: Lang, id: &str) -> &'static str {
    let (en, zh) = match id {
        "two_high" => ("high-energy high-emission sector", "两高行业"),
        "key_energy_unit" => ("key energy-using unit", "重点用能单位"),
        "over_carbon_intensity" => ("over carbon intensity threshold", "碳排放强度超标"),
        "over_carbon_budget" => ("over carbon budget", "超出碳排放预算"),
        "over_product_quota" => ("over product energy quota", "单位产品能耗超限额"),
        "commitment_shortfall" => ("standard-land commitment not met", "标准地承诺未达标"),
        _ => ("?", "?"),
    };
    lang.pick(en, zh)
}

/// Why a firm is unrated, in words.
pub fn unrated_reason(lang: Lang, code: &str, min_land_mu: f64) -> String {
    let (en, zh) = match code {
        crate::evaluation::LAND_BELOW_MINIMUM => {
            return match lang {
                Lang::En => format!("land below the minimum of {min_land_mu} mu"),
                Lang::Zh => format!("用地面积低于{min_land_mu}亩"),
            }
        }
        "tax_cny" => ("tax", "税收"),
        "revenue_cny" => ("revenue", "营业收入"),
        "value_added_cny" => ("value added", "工业增加值"),
        "employees" => ("employees", "从业人员"),
        "rd_spend_cny" => ("R&D spending", "研发经费"),
        "pollutant_t" => ("pollutant emissions", "污染物排放当量"),
        other => (other, other),
    };
    match lang {
        Lang::En => format!("missing {en}"),
        Lang::Zh => format!("缺少{zh}数据"),
    }
}

pub fn indicator_col(i: Indicator) -> Col {
    match i {
        Indicator::TaxPerMu => col(
            "tax_per_mu_10k_cny",
            "Tax per mu (10,000 CNY/mu)",
            "亩均税收(万元/亩)",
            2,
        ),
        Indicator::RevenuePerMu => col(
            "revenue_per_mu_10k_cny",
            "Revenue per mu (10,000 CNY/mu)",
            "亩均营业收入(万元/亩)",
            2,
        ),
        Indicator::ValueAddedPerMu => col(
            "value_added_per_mu_10k_cny",
            "Value added per mu (10,000 CNY/mu)",
            "亩均工业增加值(万元/亩)",
            2,
        ),
        Indicator::ValueAddedPerTce => col(
            "value_added_per_tce_10k_cny",
            "Value added per tce (10,000 CNY/tce)",
            "单位能耗增加值(万元/吨标准煤)",
            3,
        ),
        Indicator::ValueAddedPerTco2 => col(
            "value_added_per_tco2_10k_cny",
            "Value added per tCO2 (10,000 CNY/tCO2)",
            "单位碳排放增加值(万元/吨二氧化碳)",
            3,
        ),
        Indicator::ValueAddedPerPollutant => col(
            "value_added_per_pollutant_10k_cny",
            "Value added per t pollutant (10,000 CNY/t)",
            "单位排放增加值(万元/吨)",
            2,
        ),
        Indicator::RdIntensity => col(
            "rd_intensity_pct",
            "R&D intensity (%)",
            "研发经费投入强度(%)",
            2,
        ),
        Indicator::LabourProductivity => col(
            "labour_productivity_10k_cny",
            "Labour productivity (10,000 CNY/person)",
            "全员劳动生产率(万元/人)",
            2,
        ),
    }
}

fn pct_change(now: f64, before: Option<f64>) -> Cell {
    match before {
        Some(b) if b.abs() > 0.0 => Cell::Num((now - b) / b * 100.0),
        _ => Cell::Empty,
    }
}

fn class_of(e: Option<&Evaluation>, firm: &str) -> (Cell, Cell, Vec<String>) {
    let Some(f) = e.and_then(|e| e.firms.iter().find(|f| f.firm == firm)) else {
        return (Cell::Empty, Cell::Empty, Vec::new());
    };
    let mut flags: Vec<String> = f.flags.iter().map(|x| x.condition.to_string()).collect();
    if !f.shortfalls.is_empty() {
        flags.push("commitment_shortfall".into());
    }
    (
        f.score.into(),
        f.class.clone().map_or(Cell::Empty, Cell::Text),
        flags,
    )
}

fn flags_text(lang: Lang, flags: &[String]) -> Cell {
    if flags.is_empty() {
        return Cell::Empty;
    }
    Cell::Text(
        flags
            .iter()
            .map(|f| flag_name(lang, f))
            .collect::<Vec<_>>()
            .join(lang.pick("; ", "；")),
    )
}

/// The period report: firms with the park total, sites, the evaluation, and the charts.
pub fn period_report(d: &ReportData, lang: Lang) -> Document {
    let cfg = d.config;
    let quantities: Vec<(Metric, Col)> = [
        (
            Metric::NaturalGasNm3,
            col(
                "natural_gas_nm3",
                "Natural gas (Nm3)",
                "天然气消耗量(立方米)",
                0,
            ),
        ),
        (
            Metric::DieselKg,
            col("diesel_kg", "Diesel (kg)", "柴油(千克)", 0),
        ),
        (
            Metric::GasolineKg,
            col("gasoline_kg", "Gasoline (kg)", "汽油(千克)", 0),
        ),
        (
            Metric::LpgKg,
            col("lpg_kg", "LPG (kg)", "液化石油气(千克)", 0),
        ),
        (
            Metric::LngKg,
            col("lng_kg", "LNG (kg)", "液化天然气(千克)", 0),
        ),
        (Metric::CoalKg, col("coal_kg", "Coal (kg)", "煤炭(千克)", 0)),
        (
            Metric::HeatGj,
            col("heat_gj", "Heat (GJ)", "外购热力(吉焦)", 2),
        ),
        (
            Metric::SteamKg,
            col("steam_kg", "Steam (kg)", "蒸汽(千克)", 0),
        ),
    ]
    .into_iter()
    .filter(|(m, _)| d.park.sums.micro(*m) != 0)
    .collect();
    let mut cols = vec![
        col("firm_id", "Firm id", "企业编号", 0),
        col("firm_name", "Firm", "企业名称", 0),
        col("land_mu", "Land (mu)", "用地面积(亩)", 2),
        col(
            "electricity_consumed_kwh",
            "Electricity consumed (kWh)",
            "用电量(千瓦时)",
            0,
        ),
        col(
            "grid_import_kwh",
            "Grid import (kWh)",
            "购入电量(千瓦时)",
            0,
        ),
        col(
            "pv_self_consumed_kwh",
            "PV self-consumed (kWh)",
            "自发自用电量(千瓦时)",
            0,
        ),
    ];
    cols.extend(quantities.iter().map(|(_, c)| c.clone()));
    cols.extend([
        col(
            "energy_equivalent_tce",
            "Energy, equivalent value (tce)",
            "综合能耗(吨标准煤,当量值)",
            3,
        ),
        col(
            "energy_coal_consumption_tce",
            "Energy, coal-consumption value (tce)",
            "综合能耗(吨标准煤,等价值)",
            3,
        ),
        col(
            "co2_scope1_t",
            "CO2 scope 1 (t)",
            "范围一排放(吨二氧化碳)",
            3,
        ),
        col(
            "co2_scope2_location_t",
            "CO2 scope 2, location-based (t)",
            "范围二排放,基于位置(吨二氧化碳)",
            3,
        ),
        col(
            "co2_scope2_market_t",
            "CO2 scope 2, market-based (t)",
            "范围二排放,基于市场(吨二氧化碳)",
            3,
        ),
        col("co2_t", "CO2 emissions (t)", "二氧化碳排放量(吨)", 3),
        col(
            "output_10k_cny",
            "Output value (10,000 CNY)",
            "产值(万元)",
            2,
        ),
        col(
            "output_per_mu_10k_cny",
            "Output per mu (10,000 CNY/mu)",
            "亩均产值(万元/亩)",
            2,
        ),
        col(
            "tax_per_mu_10k_cny",
            "Tax per mu (10,000 CNY/mu)",
            "亩均税收(万元/亩)",
            2,
        ),
        col(
            "carbon_intensity_tco2_per_10k_cny",
            "Carbon intensity (tCO2/10,000 CNY)",
            "单位产值碳排放(吨二氧化碳/万元)",
            4,
        ),
        col(
            "energy_intensity_tce_per_10k_cny",
            "Energy intensity (tce/10,000 CNY)",
            "单位产值能耗(吨标准煤/万元)",
            4,
        ),
        col(
            "green_share_pct",
            "Green electricity share (%)",
            "绿电占比(%)",
            1,
        ),
        col(
            "energy_yoy_pct",
            "Energy year-on-year (%)",
            "综合能耗同比(%)",
            1,
        ),
        col(
            "energy_mom_pct",
            "Energy period-on-period (%)",
            "综合能耗环比(%)",
            1,
        ),
        col("co2_yoy_pct", "CO2 year-on-year (%)", "碳排放同比(%)", 1),
        col(
            "co2_mom_pct",
            "CO2 period-on-period (%)",
            "碳排放环比(%)",
            1,
        ),
        col("score", "Score", "综合得分", 2),
        col("class", "Class", "评价等级", 0),
        col("flags", "Flags", "标记", 0),
    ]);
    let e = d.evaluation.as_ref();
    let row = |id: &str,
               name: &str,
               land: f64,
               f: &Figures,
               (score, class, flags): (Cell, Cell, Vec<String>)| {
        let i = &f.indicators;
        let tce = |s: &Sums| s.get(Metric::EnergyEquivalentKgce) / 1000.0;
        let co2 =
            |s: &Sums| (s.get(Metric::Co2Scope1Kg) + s.get(Metric::Co2Scope2LocationKg)) / 1000.0;
        let mut r: Vec<Cell> = vec![
            id.into(),
            name.into(),
            land.into(),
            i.electricity_consumed_kwh.into(),
            i.grid_import_kwh.into(),
            i.pv_self_consumed_kwh.into(),
        ];
        r.extend(quantities.iter().map(|(m, _)| Cell::from(f.sums.get(*m))));
        r.extend([
            i.energy_equivalent_tce.into(),
            i.energy_coal_consumption_tce.into(),
            i.co2_scope1_t.into(),
            i.co2_scope2_location_t.into(),
            i.co2_scope2_market_t.into(),
            i.co2_total_t.into(),
            i.output_cny.map(|o| o / 10_000.0).into(),
            i.output_per_mu_cny.map(|o| o / 10_000.0).into(),
            i.tax_per_mu_cny.map(|t| t / 10_000.0).into(),
            i.carbon_intensity_tco2_per_10k_cny.into(),
            i.energy_intensity_tce_per_10k_cny.into(),
            i.green_share.map(|g| g * 100.0).into(),
            pct_change(tce(&f.sums), f.year_before.as_ref().map(tce)),
            pct_change(tce(&f.sums), f.previous.as_ref().map(tce)),
            pct_change(co2(&f.sums), f.year_before.as_ref().map(co2)),
            pct_change(co2(&f.sums), f.previous.as_ref().map(co2)),
            score,
            class,
            flags_text(lang, &flags),
        ]);
        r
    };
    let mut rows: Vec<Vec<Cell>> = cfg
        .firms
        .iter()
        .zip(&d.firms)
        .map(|(firm, f)| row(&firm.id, &firm.name, firm.land_mu, f, class_of(e, &firm.id)))
        .collect();
    let land: f64 = cfg.firms.iter().map(|f| f.land_mu).sum();
    let mut park = d.park.clone();
    // The park's output, tax and the ratios on them are the firms' added up (a firm's output may
    // come from prorated statistics, which the park's metered sums do not hold), then divided
    // once: sums first, ratios last.
    let sum = |get: &dyn Fn(&Indicators) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = d.firms.iter().filter_map(|f| get(&f.indicators)).collect();
        (!v.is_empty()).then(|| v.iter().sum())
    };
    let p = &mut park.indicators;
    p.output_cny = sum(&|i| i.output_cny);
    let per = |x: Option<f64>, by: f64| x.and_then(|x| (by > 0.0).then(|| x / by));
    p.output_per_mu_cny = per(p.output_cny, land);
    // Over the land of the firms with a tax figure.
    let taxed: Vec<(f64, f64)> = cfg
        .firms
        .iter()
        .zip(&d.firms)
        .filter_map(|(firm, f)| {
            f.indicators
                .tax_per_mu_cny
                .map(|t| (t * firm.land_mu, firm.land_mu))
        })
        .collect();
    p.tax_per_mu_cny = per(
        Some(taxed.iter().map(|x| x.0).sum()),
        taxed.iter().map(|x| x.1).sum(),
    );
    let output_10k = p.output_cny.map(|o| o / 10_000.0).unwrap_or(0.0);
    p.carbon_intensity_tco2_per_10k_cny = per(Some(p.co2_total_t), output_10k);
    p.energy_intensity_tce_per_10k_cny = per(Some(p.energy_equivalent_tce), output_10k);
    rows.push(row(
        "park",
        lang.pick("Park total", "园区合计"),
        land,
        &park,
        (Cell::Empty, Cell::Empty, Vec::new()),
    ));
    let mut tables = vec![Table {
        id: "firms",
        en: "Energy, emissions and output by firm".into(),
        zh: "企业能耗、碳排放与产出".into(),
        cols,
        rows,
    }];
    if let Some(t) = sites_table(d, lang) {
        tables.push(t);
    }
    if let Some(t) = tou::tou_table(d) {
        tables.push(t);
    }
    if let Some(t) = tou::registers_table(d, lang) {
        tables.push(t);
    }
    let mut charts = Vec::new();
    if let Some(ev) = e {
        tables.extend(evaluation_tables(cfg, ev, lang));
        charts.extend(evaluation_charts(cfg, ev));
    }
    if !d.months.is_empty() {
        charts.push(Chart {
            id: "monthly",
            en: format!("Park energy and CO2 by month, {}", d.period.year()),
            zh: format!("{}年园区逐月综合能耗与碳排放", d.period.year()),
            labels: d.months.iter().map(|m| m.0.clone()).collect(),
            series: vec![
                (
                    "Energy (tce)".into(),
                    "综合能耗(吨标准煤)".into(),
                    d.months.iter().map(|m| m.1).collect(),
                ),
                (
                    "CO2 (t)".into(),
                    "二氧化碳排放量(吨)".into(),
                    d.months.iter().map(|m| m.2).collect(),
                ),
            ],
        });
    }
    let mut notes = vec![(
        format!(
            "Period {} ({} days), time zone {}",
            d.period.label(),
            d.period.days(),
            cfg.park.timezone
        ),
        format!(
            "统计期 {}({}天),时区 {}",
            d.period.label(),
            d.period.days(),
            cfg.park.timezone
        ),
    )];
    notes.push((
        "Energy at equivalent value (0.1229 kgce/kWh) and at coal-consumption value; CO2 = scope 1 + scope 2 location-based; year-on-year and period-on-period only where the store holds the earlier period.".into(),
        "综合能耗按当量值(电力0.1229千克标准煤/千瓦时)与等价值分列;二氧化碳排放量 = 范围一 + 范围二(基于位置);同比、环比仅在存有对比期数据时给出。".into(),
    ));
    if let Some(ev) = e {
        notes.push(evaluation_note(ev));
    }
    Document {
        en: format!(
            "{}: energy and carbon report, {}",
            cfg.park.name,
            d.period.label()
        ),
        zh: format!("{} 能耗与碳排放报告 {}", cfg.park.name, d.period.label()),
        notes,
        tables,
        charts,
    }
}

fn evaluation_note(ev: &Evaluation) -> (String, String) {
    if ev.provisional {
        (
            format!(
                "Evaluation {}: provisional, year to date ({:.1} of {} days), metered figures annualised.",
                ev.year, ev.coverage.days, ev.coverage.year_days
            ),
            format!(
                "{}年亩均效益评价:预评(年初至今,{:.1}/{}天,计量数据年化)。",
                ev.year, ev.coverage.days, ev.coverage.year_days
            ),
        )
    } else {
        (
            format!("Evaluation {}: the whole year.", ev.year),
            format!("{}年亩均效益评价:全年。", ev.year),
        )
    }
}

fn sites_table(d: &ReportData, lang: Lang) -> Option<Table> {
    if d.sites.is_empty() {
        return None;
    }
    let cfg = d.config;
    let cols = vec![
        col("site_id", "Site id", "站点编号", 0),
        col("site_kind", "Kind", "类型", 0),
        col("firm_id", "Firm id", "企业编号", 0),
        col(
            "charging_delivered_kwh",
            "Charging energy delivered (kWh)",
            "充电量(千瓦时)",
            1,
        ),
        col("charging_sessions", "Charging sessions", "充电次数", 0),
        col(
            "charging_green_share_pct",
            "Charging green share (%)",
            "充电绿电占比(%)",
            1,
        ),
        col(
            "hydrogen_produced_kg",
            "Hydrogen produced (kg)",
            "制氢量(千克)",
            2,
        ),
        col(
            "hydrogen_dispensed_kg",
            "Hydrogen dispensed (kg)",
            "加氢量(千克)",
            2,
        ),
        col(
            "hydrogen_kwh_per_kg",
            "Electricity per kg H2 (kWh/kg)",
            "单位制氢电耗(kWh/kg)",
            2,
        ),
        col(
            "hydrogen_kgco2_per_kg",
            "CO2 per kg H2 (kgCO2/kg)",
            "单位制氢碳排放(kgCO2/kg)",
            3,
        ),
        col(
            "hydrogen_class",
            "Hydrogen class (T/CAB 0078-2020)",
            "氢气类别(T/CAB 0078-2020)",
            0,
        ),
    ];
    let rows = d
        .sites
        .iter()
        .map(|(si, i)| {
            let site = &cfg.sites[*si];
            let kind = match site.kind {
                SiteKind::ChargingStation => lang.pick("charging station", "充电站"),
                SiteKind::HydrogenSite => lang.pick("hydrogen site", "制氢加氢站"),
                _ => "",
            };
            let h = i.hydrogen.as_ref();
            let class = h.map(|h| match (lang, h.class_name()) {
                (Lang::Zh, "renewable") => "可再生氢".to_string(),
                (Lang::Zh, "clean") => "清洁氢".to_string(),
                (Lang::Zh, "low-carbon") => "低碳氢".to_string(),
                (Lang::Zh, "conventional") => "常规氢".to_string(),
                (_, c) => c.to_string(),
            });
            vec![
                site.id.as_str().into(),
                kind.into(),
                cfg.firms[site.firm].id.as_str().into(),
                i.charging.as_ref().map(|c| c.delivered_kwh).into(),
                i.charging.as_ref().map(|c| c.sessions).into(),
                i.charging
                    .as_ref()
                    .and_then(|c| c.green_share)
                    .map(|g| g * 100.0)
                    .into(),
                h.map(|h| h.produced_kg).into(),
                h.map(|h| h.dispensed_kg).into(),
                h.and_then(|h| h.kwh_per_kg).into(),
                h.and_then(|h| h.kgco2_per_kg).into(),
                class.map_or(Cell::Empty, Cell::Text),
            ]
        })
        .collect();
    Some(Table {
        id: "sites",
        en: "Charging stations and hydrogen sites".into(),
        zh: "充电站与制氢加氢站".into(),
        cols,
        rows,
    })
}
