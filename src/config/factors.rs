//! Emission (CO2) and standard-coal (tce) factors: the shipped defaults with their sources, and
//! the parsing of factor units in overrides.
//!
//! Every figure here comes from `shared/reference/carbon-factors.md` and carries its source and
//! year, so that an auditor can trace each tonne. Confidence marks follow that table: R read in a
//! public repost of the official notice, C seen only in third-party code or data. Verify R/C
//! figures against the official text before an audited report; every one can be overridden in
//! `[factors.co2.*]` / `[factors.tce.*]`.

use crate::units::{Dimension, Unit};

/// Which kind of factor a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FactorKind {
    /// kg CO2 per base unit of the carrier.
    Co2,
    /// kg of standard coal equivalent (kgce) per base unit of the carrier.
    Tce,
}

impl FactorKind {
    pub fn section(self) -> &'static str {
        match self {
            FactorKind::Co2 => "co2",
            FactorKind::Tce => "tce",
        }
    }
}

/// A factor key and the dimension its denominator is in.
#[derive(Debug, Clone, Copy)]
pub struct FactorSlot {
    pub kind: FactorKind,
    pub name: &'static str,
    pub per: Dimension,
}

/// Every factor ecogate knows how to use.
pub const SLOTS: &[FactorSlot] = &[
    slot(FactorKind::Co2, "grid_location", Dimension::Energy),
    slot(FactorKind::Co2, "grid_market_residual", Dimension::Energy),
    slot(FactorKind::Co2, "natural_gas", Dimension::Volume),
    slot(FactorKind::Co2, "diesel", Dimension::Mass),
    slot(FactorKind::Co2, "gasoline", Dimension::Mass),
    slot(FactorKind::Co2, "lpg", Dimension::Mass),
    slot(FactorKind::Co2, "lng", Dimension::Mass),
    slot(FactorKind::Co2, "coal", Dimension::Mass),
    slot(FactorKind::Co2, "heat", Dimension::Heat),
    slot(FactorKind::Co2, "steam", Dimension::Mass),
    slot(FactorKind::Tce, "electricity_equivalent", Dimension::Energy),
    slot(
        FactorKind::Tce,
        "electricity_coal_consumption",
        Dimension::Energy,
    ),
    slot(FactorKind::Tce, "natural_gas", Dimension::Volume),
    slot(FactorKind::Tce, "diesel", Dimension::Mass),
    slot(FactorKind::Tce, "gasoline", Dimension::Mass),
    slot(FactorKind::Tce, "lpg", Dimension::Mass),
    slot(FactorKind::Tce, "lng", Dimension::Mass),
    slot(FactorKind::Tce, "coal", Dimension::Mass),
    slot(FactorKind::Tce, "heat", Dimension::Heat),
    slot(FactorKind::Tce, "steam", Dimension::Mass),
    slot(FactorKind::Tce, "hydrogen", Dimension::Mass),
];

const fn slot(kind: FactorKind, name: &'static str, per: Dimension) -> FactorSlot {
    FactorSlot { kind, name, per }
}

pub fn find_slot(kind: FactorKind, name: &str) -> Option<&'static FactorSlot> {
    SLOTS.iter().find(|s| s.kind == kind && s.name == name)
}

/// A factor as shipped or configured: the figure as written, its unit and provenance, and the
/// same figure per base unit (kg CO2 or kgce per kWh, Nm3, kg or GJ) that the accounting uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Factor {
    pub value: f64,
    pub unit: String,
    pub year: Option<i32>,
    pub source: String,
    pub per_base: f64,
}

struct Default {
    kind: FactorKind,
    name: &'static str,
    value: f64,
    unit: &'static str,
    year: Option<i32>,
    source: &'static str,
}

const fn d(
    kind: FactorKind,
    name: &'static str,
    value: f64,
    unit: &'static str,
    year: Option<i32>,
    source: &'static str,
) -> Default {
    Default {
        kind,
        name,
        value,
        unit,
        year,
        source,
    }
}

use FactorKind::{Co2, Tce};

const GB32151: &str =
    "GB/T 32150/32151-style default: emission factor = NCV x carbon content x oxidation x 44/12 (conf C)";

/// Fixed defaults (the grid factors depend on region and year; see `grid_defaults`).
const DEFAULTS: &[Default] = &[
    d(Co2, "natural_gas", 2.162, "kgCO2/Nm3", None,
      "GB/T 32150/32151-style default: NCV 389.31 GJ/10^4 Nm3 x 15.3 tC/TJ x 0.99 x 44/12 = 21.62 tCO2/10^4 Nm3 (conf C)"),
    d(Co2, "diesel", 3.0959, "tCO2/t", None, GB32151),
    d(Co2, "gasoline", 2.9251, "tCO2/t", None, GB32151),
    d(Co2, "lpg", 3.1013, "tCO2/t", None, GB32151),
    d(Co2, "lng", 2.8313, "tCO2/t", None, GB32151),
    d(Co2, "coal", 1.7418, "tCO2/t", None,
      "GB/T 32150/32151-style default for bituminous coal: NCV 19.570 GJ/t x 26.1 tC/TJ x 0.93 x 44/12 (conf C)"),
    d(Co2, "heat", 0.11, "tCO2/GJ", None, "GB/T 32150/32151-style default for purchased heat and steam (conf C)"),
    d(Tce, "electricity_equivalent", 0.1229, "kgce/kWh", Some(2020),
      "GB/T 2589-2020, electricity equivalent value (当量值) (conf R)"),
    d(Tce, "electricity_coal_consumption", 0.404, "kgce/kWh", None,
      "GB/T 2589 coal-consumption value (等价值): long-used statistical value; set the year's thermal-power supply coal rate (conf R, old value)"),
    d(Tce, "natural_gas", 1.2143, "kgce/Nm3", Some(2020), "GB/T 2589-2020 statistical value (range 1.1000-1.3300) (conf C/R)"),
    d(Tce, "diesel", 1.4571, "kgce/kg", Some(2020), "GB/T 2589-2020 (conf R)"),
    d(Tce, "gasoline", 1.4714, "kgce/kg", Some(2020), "GB/T 2589-2020 (conf R)"),
    d(Tce, "lpg", 1.7143, "kgce/kg", Some(2020), "GB/T 2589-2020 (conf R)"),
    d(Tce, "coal", 0.7143, "kgce/kg", Some(2020), "GB/T 2589-2020, raw coal (conf R)"),
    d(Tce, "heat", 0.03412, "kgce/MJ", Some(2020), "GB/T 2589-2020 (conf C)"),
    d(Tce, "steam", 0.1286, "kgce/kg", Some(2020), "GB/T 2589-2020, low-pressure steam (conf C)"),
    d(Tce, "hydrogen", 4.093, "kgce/kg", None,
      "no official coefficient; derived by energy content: 119.96 MJ/kg / 29.307 MJ/kgce"),
];

/// Grid regions with published average factors.
pub const GRID_REGIONS: &[&str] = &["national", "central_china", "henan"];

const MEE_2024_12: &str = "MEE/NBS notice 2024 No. 12 (2024-04-12)";

/// (region, data year, location-based average, confidence and source).
const GRID_LOCATION: &[(&str, i32, f64, &str)] = &[
    (
        "national",
        2021,
        0.5568,
        "MEE/NBS notice 2024 No. 12 (2024-04-12), national average (conf R)",
    ),
    (
        "national",
        2022,
        0.5366,
        "MEE/NBS notice 2024-12, national average (conf R)",
    ),
    (
        "national",
        2023,
        0.5306,
        "MEE/NBS notice ~2025-12, national average (conf R)",
    ),
    (
        "central_china",
        2022,
        0.5395,
        "MEE/NBS notice 2024-12, Central China regional grid (conf R)",
    ),
    (
        "central_china",
        2023,
        0.5271,
        "MEE/NBS notice ~2025-12, Central China regional grid (conf R)",
    ),
    (
        "henan",
        2021,
        0.6369,
        "provincial table in MEE/NBS notice 2024 No. 12, Henan (conf C)",
    ),
    (
        "henan",
        2022,
        0.6058,
        "provincial table in MEE/NBS notice 2024-12, Henan (conf C)",
    ),
];

/// Only national residual factors are published; regional parks use the national one.
const GRID_RESIDUAL: &[(i32, f64, &str)] = &[
    (2021, 0.5942, MEE_2024_12),
    (2022, 0.5856, "MEE/NBS notice 2024-12"),
    (2023, 0.6096, "MEE/NBS notice ~2025-12"),
];

/// The newest data year with a published national factor: the default.
pub const DEFAULT_GRID_YEAR: i32 = 2023;

/// The built-in default for a slot, or `None` where ecogate ships none (the configuration must
/// then give one if a channel needs it). Grid factors depend on the park's region and year.
pub fn builtin(kind: FactorKind, name: &str, region: &str, year: i32) -> Option<Factor> {
    if kind == Co2 && name == "grid_location" {
        return GRID_LOCATION
            .iter()
            .find(|(r, y, _, _)| *r == region && *y == year)
            .map(|&(_, y, value, source)| Factor {
                value,
                unit: "kgCO2/kWh".into(),
                year: Some(y),
                source: source.into(),
                per_base: value,
            });
    }
    if kind == Co2 && name == "grid_market_residual" {
        return GRID_RESIDUAL
            .iter()
            .find(|(y, _, _)| *y == year)
            .map(|&(y, value, source)| Factor {
                value,
                unit: "kgCO2/kWh".into(),
                year: Some(y),
                source: format!(
                    "{source}, national average excluding market-traded non-fossil power (residual; conf R)"
                ),
                per_base: value,
            });
    }
    let def = DEFAULTS.iter().find(|d| d.kind == kind && d.name == name)?;
    let slot = find_slot(kind, name)?;
    let per_base = per_base(kind, slot.per, def.value, def.unit).ok()?;
    Some(Factor {
        value: def.value,
        unit: def.unit.into(),
        year: def.year,
        source: def.source.into(),
        per_base,
    })
}

/// Converts a factor written in `unit` (e.g. `tCO2/MWh`, `kgce/MJ`) to kg per base unit of
/// `per`. The error says which units would fit.
pub fn per_base(kind: FactorKind, per: Dimension, value: f64, unit: &str) -> Result<f64, String> {
    let (numerator, denominator) = unit.split_once('/').ok_or_else(|| expected(kind, per))?;
    let numerator_kg = match (kind, numerator.trim()) {
        (Co2, "kgCO2") | (Co2, "kgCO2e") => 1.0,
        (Co2, "tCO2") | (Co2, "tCO2e") => 1000.0,
        (Tce, "kgce") => 1.0,
        (Tce, "tce") => 1000.0,
        _ => return Err(expected(kind, per)),
    };
    let unit = Unit::parse(denominator).ok_or_else(|| expected(kind, per))?;
    if unit.dimension != per {
        return Err(expected(kind, per));
    }
    // Scale first, so that tCO2/MWh (1000/1000) leaves the figure exactly as written.
    Ok(value * (numerator_kg / unit.to_base))
}

fn expected(kind: FactorKind, per: Dimension) -> String {
    let numerators = match kind {
        Co2 => "kgCO2 or tCO2",
        Tce => "kgce or tce",
    };
    format!(
        "the unit must be {numerators} per a unit of {per} ({})",
        Unit::symbols_for(per).join(", ")
    )
}

/// Every shipped default: (kind, name, grid region for grid factors, year for grid factors,
/// the factor as `builtin` gives it). For tests and listings that must cover all of them.
/// A shipped default: kind, name, grid region and year (grid factors only), the factor.
pub type ShippedFactor = (
    FactorKind,
    &'static str,
    Option<&'static str>,
    Option<i32>,
    Factor,
);

pub fn all_defaults() -> Vec<ShippedFactor> {
    let mut out = Vec::new();
    for &(region, year, _, _) in GRID_LOCATION {
        if let Some(f) = builtin(Co2, "grid_location", region, year) {
            out.push((Co2, "grid_location", Some(region), Some(year), f));
        }
    }
    for &(year, _, _) in GRID_RESIDUAL {
        if let Some(f) = builtin(Co2, "grid_market_residual", "national", year) {
            out.push((Co2, "grid_market_residual", Some("national"), Some(year), f));
        }
    }
    for def in DEFAULTS {
        if let Some(f) = builtin(def.kind, def.name, "national", DEFAULT_GRID_YEAR) {
            out.push((def.kind, def.name, None, None, f));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_units_convert_to_base() {
        // 0.11 tCO2/GJ = 110 kgCO2/GJ
        let heat_co2 = per_base(Co2, Dimension::Heat, 0.11, "tCO2/GJ").unwrap();
        assert!((heat_co2 - 110.0).abs() < 1e-9);
        // 0.03412 kgce/MJ = 34.12 kgce/GJ
        let heat = per_base(Tce, Dimension::Heat, 0.03412, "kgce/MJ").unwrap();
        assert!((heat - 34.12).abs() < 1e-12);
        // 0.5366 tCO2/MWh = 0.5366 kgCO2/kWh
        assert_eq!(
            per_base(Co2, Dimension::Energy, 0.5366, "tCO2/MWh").unwrap(),
            0.5366
        );
        let err = per_base(Co2, Dimension::Energy, 1.0, "kgCO2/Nm3").unwrap_err();
        assert!(err.contains("per a unit of energy"), "{err}");
    }

    #[test]
    fn every_default_has_a_source_and_converts() {
        for def in DEFAULTS {
            let f = builtin(def.kind, def.name, "national", 2022).unwrap();
            assert!(!f.source.is_empty());
            assert!(f.per_base > 0.0);
        }
        let grid = builtin(Co2, "grid_location", "national", 2022).unwrap();
        assert_eq!(grid.per_base, 0.5366);
        assert!(builtin(Co2, "grid_location", "henan", 2023).is_none());
        assert!(builtin(Co2, "steam", "national", 2022).is_none());
    }
}
