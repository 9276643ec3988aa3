//! Energy carriers: what a channel's counter measures, and how it enters the accounts.
//!
//! The carrier decides the dimension a channel's unit must have and which emission and
//! standard-coal factors apply. Keeping this table in one place is what lets config validation,
//! the accounting and the report agree on every carrier.

use super::factors::FactorKind;
use crate::units::Dimension;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Carrier {
    /// Electricity bought from the grid (Scope 2).
    GridImport,
    /// Electricity sent to the grid; reported, never subtracted from emissions.
    GridExport,
    /// On-site PV generation.
    PvGeneration,
    /// Battery charge and discharge, behind the site's grid meter: internal flows, reported only.
    StorageCharge,
    StorageDischarge,
    /// Energy delivered to vehicles by chargers (also counted by the station's grid meter).
    ChargingDelivered,
    /// Charging sessions completed (a counter of sessions).
    ChargingSessions,
    /// Grid electricity covered by a green-power contract (market-based Scope 2 counts it zero).
    GreenPower,
    NaturalGas,
    Diesel,
    Gasoline,
    Lpg,
    Lng,
    Coal,
    /// Purchased heat (Scope 2).
    Heat,
    /// Purchased steam by mass (Scope 2).
    Steam,
    HydrogenProduced,
    HydrogenDispensed,
    /// Production counter (pieces or mass) valued at a configured unit value: output value.
    Production,
}

/// Fuels burned on site: their CO2 is Scope 1.
pub const FUELS: &[Carrier] = &[
    Carrier::NaturalGas,
    Carrier::Diesel,
    Carrier::Gasoline,
    Carrier::Lpg,
    Carrier::Lng,
    Carrier::Coal,
];

impl Carrier {
    pub const ALL: &'static [Carrier] = &[
        Carrier::GridImport,
        Carrier::GridExport,
        Carrier::PvGeneration,
        Carrier::StorageCharge,
        Carrier::StorageDischarge,
        Carrier::ChargingDelivered,
        Carrier::ChargingSessions,
        Carrier::GreenPower,
        Carrier::NaturalGas,
        Carrier::Diesel,
        Carrier::Gasoline,
        Carrier::Lpg,
        Carrier::Lng,
        Carrier::Coal,
        Carrier::Heat,
        Carrier::Steam,
        Carrier::HydrogenProduced,
        Carrier::HydrogenDispensed,
        Carrier::Production,
    ];

    /// The name used in configuration and in stored metric names.
    pub fn name(self) -> &'static str {
        match self {
            Carrier::GridImport => "grid_import",
            Carrier::GridExport => "grid_export",
            Carrier::PvGeneration => "pv_generation",
            Carrier::StorageCharge => "storage_charge",
            Carrier::StorageDischarge => "storage_discharge",
            Carrier::ChargingDelivered => "charging_delivered",
            Carrier::ChargingSessions => "charging_sessions",
            Carrier::GreenPower => "green_power",
            Carrier::NaturalGas => "natural_gas",
            Carrier::Diesel => "diesel",
            Carrier::Gasoline => "gasoline",
            Carrier::Lpg => "lpg",
            Carrier::Lng => "lng",
            Carrier::Coal => "coal",
            Carrier::Heat => "heat",
            Carrier::Steam => "steam",
            Carrier::HydrogenProduced => "hydrogen_produced",
            Carrier::HydrogenDispensed => "hydrogen_dispensed",
            Carrier::Production => "production",
        }
    }

    pub fn parse(text: &str) -> Option<Carrier> {
        Carrier::ALL.iter().copied().find(|c| c.name() == text)
    }

    /// The dimensions a counter of this carrier may be kept in.
    pub fn dimensions(self) -> &'static [Dimension] {
        match self {
            Carrier::GridImport
            | Carrier::GridExport
            | Carrier::PvGeneration
            | Carrier::StorageCharge
            | Carrier::StorageDischarge
            | Carrier::ChargingDelivered
            | Carrier::GreenPower => &[Dimension::Energy],
            Carrier::ChargingSessions => &[Dimension::Count],
            Carrier::NaturalGas => &[Dimension::Volume],
            Carrier::Diesel
            | Carrier::Gasoline
            | Carrier::Lpg
            | Carrier::Lng
            | Carrier::Coal
            | Carrier::Steam
            | Carrier::HydrogenProduced
            | Carrier::HydrogenDispensed => &[Dimension::Mass],
            Carrier::Heat => &[Dimension::Heat],
            Carrier::Production => &[Dimension::Count, Dimension::Mass],
        }
    }

    pub fn is_fuel(self) -> bool {
        FUELS.contains(&self)
    }
}

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Carrier {
    /// The factors a carrier's deltas are multiplied by.
    pub fn required_factors(self) -> &'static [(FactorKind, &'static str)] {
        use FactorKind::{Co2, Tce};
        match self {
            Carrier::GridImport => &[
                (Co2, "grid_location"),
                (Co2, "grid_market_residual"),
                (Tce, "electricity_equivalent"),
                (Tce, "electricity_coal_consumption"),
            ],
            Carrier::PvGeneration | Carrier::GridExport => &[
                (Tce, "electricity_equivalent"),
                (Tce, "electricity_coal_consumption"),
            ],
            Carrier::GreenPower => &[(Co2, "grid_market_residual")],
            Carrier::NaturalGas => &[(Co2, "natural_gas"), (Tce, "natural_gas")],
            Carrier::Diesel => &[(Co2, "diesel"), (Tce, "diesel")],
            Carrier::Gasoline => &[(Co2, "gasoline"), (Tce, "gasoline")],
            Carrier::Lpg => &[(Co2, "lpg"), (Tce, "lpg")],
            Carrier::Lng => &[(Co2, "lng"), (Tce, "lng")],
            Carrier::Coal => &[(Co2, "coal"), (Tce, "coal")],
            Carrier::Heat => &[(Co2, "heat"), (Tce, "heat")],
            Carrier::Steam => &[(Co2, "steam"), (Tce, "steam")],
            Carrier::StorageCharge
            | Carrier::StorageDischarge
            | Carrier::ChargingDelivered
            | Carrier::ChargingSessions
            | Carrier::HydrogenProduced
            | Carrier::HydrogenDispensed
            | Carrier::Production => &[],
        }
    }
}
