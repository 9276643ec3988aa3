//! Reports of accounted figures: per firm, with sites that have their own figures (hydrogen,
//! charging), the park total, and the per-mu evaluation.
//!
//! `period` parses report periods; `tables` builds what a report holds, as tables of typed
//! cells with English and Chinese headings; `render` writes them as text, CSV, JSON, Markdown,
//! HTML or XLSX. The text summary below is what `replay` prints.

pub mod period;
pub mod render;
pub mod tables;

use crate::accounting::indicators::{Indicators, Period};
use crate::accounting::ledger::Entity;
use crate::accounting::metric::{Metric, Sums};
use crate::config::{Config, SiteKind};
use std::collections::HashMap;
use std::fmt::Write;

/// Formats a number with thousands separators and `decimals` places.
pub fn num(x: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, x.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(i, f)| (i, f));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if x < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

fn opt(x: Option<f64>, decimals: usize, suffix: &str) -> String {
    x.map_or("n/a".to_string(), |v| {
        format!("{}{suffix}", num(v, decimals))
    })
}

/// Indicators of one firm from its sums.
pub fn firm_indicators(config: &Config, firm: usize, sums: &Sums, period: Period) -> Indicators {
    crate::figures::derive(config, Entity::Firm(firm as u32), sums, period)
}

fn carrier_lines(out: &mut String, sums: &Sums) {
    let quantities = [
        (Metric::NaturalGasNm3, "natural gas", "Nm3"),
        (Metric::DieselKg, "diesel", "kg"),
        (Metric::GasolineKg, "gasoline", "kg"),
        (Metric::LpgKg, "LPG", "kg"),
        (Metric::LngKg, "LNG", "kg"),
        (Metric::CoalKg, "coal", "kg"),
        (Metric::HeatGj, "heat", "GJ"),
        (Metric::SteamKg, "steam", "kg"),
        (Metric::GridExportKwh, "export to grid", "kWh"),
        (Metric::StorageChargeKwh, "storage charged", "kWh"),
        (Metric::StorageDischargeKwh, "storage discharged", "kWh"),
    ];
    for (metric, name, unit) in quantities {
        if sums.micro(metric) != 0 {
            let _ = writeln!(out, "    {name:<13} {} {unit}", num(sums.get(metric), 3));
        }
    }
}

fn indicator_lines(out: &mut String, i: &Indicators, sums: &Sums) {
    let _ = writeln!(
        out,
        "    electricity   {} kWh consumed (grid {} kWh, PV self-consumed {} kWh, green {} kWh)",
        num(i.electricity_consumed_kwh, 3),
        num(i.grid_import_kwh, 3),
        num(i.pv_self_consumed_kwh, 3),
        num(i.green_electricity_kwh, 3)
    );
    carrier_lines(out, sums);
    let _ = writeln!(
        out,
        "    energy        {} tce equivalent value, {} tce coal-consumption value",
        num(i.energy_equivalent_tce, 4),
        num(i.energy_coal_consumption_tce, 4)
    );
    let _ = writeln!(
        out,
        "    CO2           {} t total = scope 1 {} t + scope 2 {} t location-based (market-based scope 2: {} t)",
        num(i.co2_total_t, 4),
        num(i.co2_scope1_t, 4),
        num(i.co2_scope2_location_t, 4),
        num(i.co2_scope2_market_t, 4)
    );
    let _ = writeln!(
        out,
        "    green share   {}",
        opt(i.green_share.map(|s| s * 100.0), 1, " %")
    );
}

/// The per-firm report for sums covering `period`, in configuration order, then the park.
pub fn render(config: &Config, totals: &HashMap<Entity, Sums>, period: Period) -> String {
    let mut out = String::new();
    let get = |e: Entity| totals.get(&e).copied().unwrap_or_default();
    for (fi, firm) in config.firms.iter().enumerate() {
        let sums = get(Entity::Firm(fi as u32));
        let i = firm_indicators(config, fi, &sums, period);
        let _ = writeln!(
            out,
            "firm {} ({}), {} mu{}",
            firm.id,
            firm.name,
            num(firm.land_mu, 2),
            firm.sector
                .as_deref()
                .map(|s| format!(", sector {s}"))
                .unwrap_or_default()
        );
        indicator_lines(&mut out, &i, &sums);
        let _ = writeln!(
            out,
            "    output        {} CNY ({}); per mu {} CNY, annualised {} CNY/mu",
            opt(i.output_cny, 2, ""),
            i.output_source.name(),
            opt(i.output_per_mu_cny, 2, ""),
            opt(i.output_per_mu_annualised_cny, 2, "")
        );
        let _ = writeln!(
            out,
            "    intensity     {} tCO2 per 10,000 CNY, {} tce per 10,000 CNY",
            opt(i.carbon_intensity_tco2_per_10k_cny, 4, ""),
            opt(i.energy_intensity_tce_per_10k_cny, 4, "")
        );
        if let Some(threshold) = firm.stats.intensity_threshold_tco2_per_10k_cny {
            let over = i
                .carbon_intensity_tco2_per_10k_cny
                .is_some_and(|x| x > threshold);
            let _ = writeln!(
                out,
                "    threshold     {} tCO2 per 10,000 CNY: {}",
                num(threshold, 4),
                if over { "ABOVE" } else { "within" }
            );
        }
        for (si, site) in config
            .sites
            .iter()
            .enumerate()
            .filter(|(_, s)| s.firm == fi)
        {
            let site_sums = get(Entity::Site(si as u32));
            let si_ind =
                crate::figures::derive(config, Entity::Site(si as u32), &site_sums, period);
            match site.kind {
                SiteKind::HydrogenSite => {
                    if let Some(h) = &si_ind.hydrogen {
                        let _ = writeln!(
                            out,
                            "    site {} hydrogen: {} kg produced, {} kg dispensed, {} kWh/kg, {} kgCO2e/kg: {}",
                            site.id,
                            num(h.produced_kg, 3),
                            num(h.dispensed_kg, 3),
                            opt(h.kwh_per_kg, 2, ""),
                            opt(h.kgco2_per_kg, 3, ""),
                            h.class_name()
                        );
                    }
                }
                SiteKind::ChargingStation => {
                    if let Some(c) = &si_ind.charging {
                        let _ = writeln!(
                            out,
                            "    site {} charging: {} kWh delivered in {} sessions, green share {}",
                            site.id,
                            num(c.delivered_kwh, 3),
                            num(c.sessions, 0),
                            opt(c.green_share.map(|s| s * 100.0), 1, " %")
                        );
                    }
                }
                _ => {}
            }
        }
    }
    let park = get(Entity::Park);
    let i = crate::figures::derive(config, Entity::Park, &park, period);
    let _ = writeln!(out, "park {}", config.park.name);
    indicator_lines(&mut out, &i, &park);
    out
}

#[cfg(test)]
mod tests {
    use super::num;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(num(1234567.891, 2), "1,234,567.89");
        assert_eq!(num(-1000.0, 0), "-1,000");
        assert_eq!(num(0.5, 3), "0.500");
        assert_eq!(num(-0.0001, 2), "0.00");
    }
}
