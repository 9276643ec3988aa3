//! The time-of-use table (分时电量与电费): grid import per band, its cost, the peak-to-valley
//! shift potential, and the period's maximum 15-minute demand against the contracted demand.

use super::*;
use crate::config::tariff::Band;

pub(super) fn tou_table(d: &ReportData) -> Option<Table> {
    let tariff = d.config.tariff.as_ref()?;
    if d.tou.is_empty() {
        return None;
    }
    let tz = d.config.park.timezone;
    let cols = vec![
        col("entity", "Firm", "企业", 0),
        col("sharp_kwh", "Sharp (kWh)", "尖峰电量(千瓦时)", 1),
        col("peak_kwh", "Peak (kWh)", "高峰电量(千瓦时)", 1),
        col("flat_kwh", "Flat (kWh)", "平段电量(千瓦时)", 1),
        col("valley_kwh", "Valley (kWh)", "低谷电量(千瓦时)", 1),
        col("total_kwh", "Grid import (kWh)", "网购电量(千瓦时)", 1),
        col("sharp_cost_cny", "Sharp cost (CNY)", "尖峰电费(元)", 2),
        col("peak_cost_cny", "Peak cost (CNY)", "高峰电费(元)", 2),
        col("flat_cost_cny", "Flat cost (CNY)", "平段电费(元)", 2),
        col("valley_cost_cny", "Valley cost (CNY)", "低谷电费(元)", 2),
        col(
            "energy_cost_cny",
            "Energy cost (CNY)",
            "电度电费合计(元)",
            2,
        ),
        col(
            "shift_potential_cny",
            "Peak-to-valley shift potential (CNY)",
            "移峰填谷潜力(元)",
            2,
        ),
        col(
            "max_demand_kw",
            "Max 15-min demand (kW)",
            "最大需量(千瓦)",
            1,
        ),
        col("max_demand_at", "At", "出现时间", 0),
        col(
            "demand_slide_min",
            "Demand window slides by (min; 15: fixed)",
            "需量滑差(分钟; 15为固定)",
            0,
        ),
        col("contract_kw", "Contracted demand (kW)", "核定需量(千瓦)", 1),
        col(
            "demand_of_contract_pct",
            "Max demand of contract (%)",
            "最大需量占核定比(%)",
            1,
        ),
    ];
    let rows = d
        .tou
        .iter()
        .map(|(name, t)| {
            let mut row: Vec<Cell> = vec![name.clone().into()];
            row.extend(Band::ALL.iter().map(|b| Cell::from(t.energy.kwh(*b))));
            row.push(t.energy.total_kwh().into());
            match t.cost_cny {
                Some(c) => {
                    row.extend(c.iter().map(|x| Cell::from(*x)));
                    row.push(t.energy_cost_cny().into());
                }
                None => row.extend(std::iter::repeat_n(Cell::Empty, 5)),
            }
            row.push(t.shift_potential_cny.into());
            match t.max_demand {
                Some((kw, at)) => {
                    row.push(kw.into());
                    let local = chrono::DateTime::from_timestamp_millis(at)
                        .map(|x| x.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_default();
                    row.push(local.into());
                    row.push(f64::from(t.demand_slide_min).into());
                    row.push(t.contract_kw.into());
                    row.push(
                        t.contract_kw
                            .filter(|c| *c > 0.0)
                            .map(|c| kw / c * 100.0)
                            .into(),
                    );
                }
                None => {
                    row.extend([Cell::Empty, Cell::Empty, Cell::Empty]);
                    row.push(t.contract_kw.into());
                    row.push(Cell::Empty);
                }
            }
            row
        })
        .collect();
    Some(Table {
        id: "time_of_use",
        en: format!("Time of use and demand ({})", tariff.name),
        zh: format!("分时电量、电费与需量（{}）", tariff.name),
        cols,
        rows,
    })
}

/// Meters' own tariff registers beside the band energy computed from their totals.
pub(super) fn registers_table(d: &ReportData, lang: Lang) -> Option<Table> {
    if d.registers.is_empty() {
        return None;
    }
    let cols = vec![
        col("meter_id", "Meter", "表计", 0),
        col("channel", "Register channel", "费率寄存器通道", 0),
        col("band", "Band", "时段", 0),
        col(
            "register_kwh",
            "Meter register (kWh)",
            "表计费率电量(千瓦时)",
            2,
        ),
        col(
            "computed_kwh",
            "Computed by ecogate (kWh)",
            "按分时日历计算(千瓦时)",
            2,
        ),
        col("difference_kwh", "Difference (kWh)", "差值(千瓦时)", 2),
        col("check", "Check", "核对", 0),
    ];
    let rows = d
        .registers
        .iter()
        .map(|r| {
            let diff = match (r.register_kwh, r.computed_kwh) {
                (Some(a), Some(b)) => Some(a - b),
                _ => None,
            };
            let check = match (r.register_kwh, r.differs) {
                (None, _) => lang.pick("no register readings", "无寄存器读数"),
                (_, true) => lang.pick(
                    "differs: check the meter's time-period table",
                    "不一致：请核对表计时段表",
                ),
                (_, false) => lang.pick("agrees", "一致"),
            };
            vec![
                r.meter.clone().into(),
                r.channel.clone().into(),
                lang.pick(r.band.name(), r.band.zh()).into(),
                r.register_kwh.into(),
                r.computed_kwh.into(),
                diff.into(),
                check.into(),
            ]
        })
        .collect();
    Some(Table {
        id: "tariff_registers",
        en: "Meters' tariff registers against the time-of-use calendar".into(),
        zh: "表计费率寄存器与分时日历核对".into(),
        cols,
        rows,
    })
}
