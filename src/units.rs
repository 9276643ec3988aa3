//! Units of measure and their normalisation.
//!
//! Meters speak in many units (Wh or kWh, m3 or Nm3, kg or t, MJ or GJ, W or kW). Every reading is
//! normalised to one base unit per dimension on entry, so that nothing downstream can mix kWh with Wh.
//! Quantities that are summed are then held as integer millionths of the base unit ("micro units"),
//! which makes sums exact and additive across batches, restarts and gateways.

use std::fmt;

/// What a unit measures. Rates (power, flow) are kept apart from the amounts they integrate to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// Electric (or thermal-equivalent) energy; base kWh.
    Energy,
    /// Power; base kW (kWh per hour).
    Power,
    /// Gas volume at standard conditions; base Nm3.
    Volume,
    /// Gas flow; base Nm3/h.
    VolumeFlow,
    /// Mass; base kg.
    Mass,
    /// Mass flow; base kg/h.
    MassFlow,
    /// Heat; base GJ.
    Heat,
    /// Dimensionless count (pieces, sessions); base 1.
    Count,
    /// Electrical quantities that are recorded but never accounted.
    Voltage,
    Current,
    Frequency,
    /// Power factor and other plain ratios.
    Ratio,
    /// Reactive energy (a DL/T 645 meter's kvarh registers): recorded, never accounted.
    ReactiveEnergy,
    /// Reactive power, kvar: recorded, never accounted.
    ReactivePower,
    /// Apparent power, kVA: recorded, never accounted.
    ApparentPower,
}

impl Dimension {
    /// The amount dimension a rate integrates to over time (per hour), if this is a rate.
    pub fn integrates_to(self) -> Option<Dimension> {
        match self {
            Dimension::Power => Some(Dimension::Energy),
            Dimension::VolumeFlow => Some(Dimension::Volume),
            Dimension::MassFlow => Some(Dimension::Mass),
            _ => None,
        }
    }

    /// Symbol of the base unit, used in names and messages.
    pub fn base_symbol(self) -> &'static str {
        match self {
            Dimension::Energy => "kWh",
            Dimension::Power => "kW",
            Dimension::Volume => "Nm3",
            Dimension::VolumeFlow => "Nm3/h",
            Dimension::Mass => "kg",
            Dimension::MassFlow => "kg/h",
            Dimension::Heat => "GJ",
            Dimension::Count => "1",
            Dimension::Voltage => "V",
            Dimension::Current => "A",
            Dimension::Frequency => "Hz",
            Dimension::Ratio => "ratio",
            Dimension::ReactiveEnergy => "kvarh",
            Dimension::ReactivePower => "kvar",
            Dimension::ApparentPower => "kVA",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Dimension::Energy => "energy",
            Dimension::Power => "power",
            Dimension::Volume => "volume",
            Dimension::VolumeFlow => "volume flow",
            Dimension::Mass => "mass",
            Dimension::MassFlow => "mass flow",
            Dimension::Heat => "heat",
            Dimension::Count => "count",
            Dimension::Voltage => "voltage",
            Dimension::Current => "current",
            Dimension::Frequency => "frequency",
            Dimension::Ratio => "ratio",
            Dimension::ReactiveEnergy => "reactive energy",
            Dimension::ReactivePower => "reactive power",
            Dimension::ApparentPower => "apparent power",
        };
        f.write_str(name)
    }
}

/// A unit a meter may report in: its canonical symbol, dimension and factor to the base unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    pub symbol: &'static str,
    pub dimension: Dimension,
    /// Multiply an amount in this unit by this to get the base unit.
    pub to_base: f64,
}

/// Every unit ecogate accepts. `m3` is taken as standard cubic metres: gas meters used for billing
/// in China report volume corrected to standard conditions; an uncorrected meter needs its
/// corrector's output, not ecogate guessing temperature and pressure.
const UNITS: &[(&str, &[&str], Dimension, f64)] = &[
    ("Wh", &["wh"], Dimension::Energy, 0.001),
    ("kWh", &["kwh"], Dimension::Energy, 1.0),
    ("MWh", &["mwh"], Dimension::Energy, 1000.0),
    ("W", &["w"], Dimension::Power, 0.001),
    ("kW", &["kw"], Dimension::Power, 1.0),
    ("MW", &["mw"], Dimension::Power, 1000.0),
    ("Nm3", &["nm3", "nm³"], Dimension::Volume, 1.0),
    ("m3", &["m3", "m³"], Dimension::Volume, 1.0),
    ("Nm3/h", &["nm3/h", "nm³/h"], Dimension::VolumeFlow, 1.0),
    ("m3/h", &["m3/h", "m³/h"], Dimension::VolumeFlow, 1.0),
    ("g", &["g"], Dimension::Mass, 0.001),
    ("kg", &["kg"], Dimension::Mass, 1.0),
    ("t", &["t", "tonne"], Dimension::Mass, 1000.0),
    ("kg/h", &["kg/h"], Dimension::MassFlow, 1.0),
    ("t/h", &["t/h"], Dimension::MassFlow, 1000.0),
    ("MJ", &["mj"], Dimension::Heat, 0.001),
    ("GJ", &["gj"], Dimension::Heat, 1.0),
    ("pcs", &["pcs", "piece", "pieces"], Dimension::Count, 1.0),
    ("unit", &["unit", "units"], Dimension::Count, 1.0),
    ("session", &["session", "sessions"], Dimension::Count, 1.0),
    ("V", &["v"], Dimension::Voltage, 1.0),
    ("kV", &["kv"], Dimension::Voltage, 1000.0),
    ("A", &["a"], Dimension::Current, 1.0),
    ("Hz", &["hz"], Dimension::Frequency, 1.0),
    ("ratio", &["ratio", "pf"], Dimension::Ratio, 1.0),
    ("kvarh", &["kvarh"], Dimension::ReactiveEnergy, 1.0),
    ("Mvarh", &["mvarh"], Dimension::ReactiveEnergy, 1000.0),
    ("kvar", &["kvar"], Dimension::ReactivePower, 1.0),
    ("kVA", &["kva"], Dimension::ApparentPower, 1.0),
];

impl Unit {
    /// Parses a unit symbol, case-insensitively (meters and exports disagree on `kWh` vs `KWH`).
    pub fn parse(text: &str) -> Option<Unit> {
        let lower = text.trim().to_ascii_lowercase();
        UNITS
            .iter()
            .find(|(_, aliases, _, _)| aliases.contains(&lower.as_str()))
            .map(|&(symbol, _, dimension, to_base)| Unit {
                symbol,
                dimension,
                to_base,
            })
    }

    /// The accepted symbols for a dimension, for error messages.
    pub fn symbols_for(dimension: Dimension) -> Vec<&'static str> {
        UNITS
            .iter()
            .filter(|u| u.2 == dimension)
            .map(|u| u.0)
            .collect()
    }

    /// Converts an amount in this unit to the base unit of its dimension.
    pub fn to_base_amount(&self, amount: f64) -> f64 {
        amount * self.to_base
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol)
    }
}

/// Millionths per base unit.
pub const MICRO: f64 = 1_000_000.0;

/// Largest magnitude in micro units that f64 still represents exactly (2^53).
const MAX_EXACT_MICRO: f64 = 9_007_199_254_740_992.0;

/// Converts an amount in base units to integer micro units, or `None` if it is not finite or too
/// large to be held exactly (about 9 billion base units).
pub fn to_micro(base_amount: f64) -> Option<i64> {
    let scaled = (base_amount * MICRO).round();
    if scaled.is_finite() && scaled.abs() < MAX_EXACT_MICRO {
        Some(scaled as i64)
    } else {
        None
    }
}

/// Converts micro units back to base units.
pub fn from_micro(micro: i64) -> f64 {
    micro as f64 / MICRO
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_normalises() {
        let wh = Unit::parse("WH").unwrap();
        assert_eq!(wh.symbol, "Wh");
        // 1500 Wh = 1.5 kWh
        assert_eq!(wh.to_base_amount(1500.0), 1.5);
        let t = Unit::parse("t").unwrap();
        // 2.5 t = 2500 kg
        assert_eq!(t.to_base_amount(2.5), 2500.0);
        let mj = Unit::parse("MJ").unwrap();
        // 250 MJ = 0.25 GJ
        assert_eq!(mj.to_base_amount(250.0), 0.25);
        assert_eq!(Unit::parse("m³").unwrap().dimension, Dimension::Volume);
        assert!(Unit::parse("furlong").is_none());
    }

    #[test]
    fn micro_units_are_exact_and_bounded() {
        assert_eq!(to_micro(12345.678901), Some(12_345_678_901));
        assert_eq!(to_micro(0.1 + 0.2), Some(300_000));
        assert_eq!(to_micro(f64::NAN), None);
        assert_eq!(to_micro(f64::INFINITY), None);
        assert_eq!(to_micro(1e10), None);
        assert_eq!(from_micro(1_500_000), 1.5);
    }
}
