//! The additive figures kept per window and entity.
//!
//! Every figure is a sum held in integer micro units (millionths of the unit in its name), so that
//! adding batches, restarts or several gateways' results together is exact. Ratios (intensities,
//! shares, kWh per kg) are never stored: they are derived from these sums by `indicators`.

use crate::config::carrier::Carrier;

macro_rules! metrics {
    ($($(#[$doc:meta])* $variant:ident => $name:literal),+ $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Metric { $($(#[$doc])* $variant),+ }

        impl Metric {
            pub const ALL: &'static [Metric] = &[$(Metric::$variant),+];

            /// Stored name; the suffix is the unit.
            pub fn name(self) -> &'static str {
                match self { $(Metric::$variant => $name),+ }
            }
        }
    };
}

metrics! {
    GridImportKwh => "grid_import_kwh",
    GridExportKwh => "grid_export_kwh",
    PvGenerationKwh => "pv_generation_kwh",
    StorageChargeKwh => "storage_charge_kwh",
    StorageDischargeKwh => "storage_discharge_kwh",
    ChargingDeliveredKwh => "charging_delivered_kwh",
    ChargingSessions => "charging_sessions",
    GreenPowerKwh => "green_power_kwh",
    NaturalGasNm3 => "natural_gas_nm3",
    DieselKg => "diesel_kg",
    GasolineKg => "gasoline_kg",
    LpgKg => "lpg_kg",
    LngKg => "lng_kg",
    CoalKg => "coal_kg",
    HeatGj => "heat_gj",
    SteamKg => "steam_kg",
    HydrogenProducedKg => "hydrogen_produced_kg",
    HydrogenDispensedKg => "hydrogen_dispensed_kg",
    /// grid import + PV generation - export: the site boundary's electricity balance.
    ElectricityConsumedKwh => "electricity_consumed_kwh",
    /// PV generation - export (export is taken to come from PV). Can be negative in a short
    /// window where the two meters are read at different instants; sums over longer windows are right.
    PvSelfConsumedKwh => "pv_self_consumed_kwh",
    Co2Scope1Kg => "co2_scope1_kg",
    Co2Scope2LocationKg => "co2_scope2_location_kg",
    /// Market-based Scope 2 before green power is netted off: grid import x residual factor
    /// + heat and steam. The netting is not additive, so it is derived (see `indicators`).
    Co2Scope2MarketGrossKg => "co2_scope2_market_gross_kg",
    EnergyEquivalentKgce => "energy_equivalent_kgce",
    EnergyCoalConsumptionKgce => "energy_coal_consumption_kgce",
    OutputCny => "output_cny",
    /// Counter deltas and gauge integrations that fed this window: a completeness figure.
    Deltas => "deltas",
}

pub const METRIC_COUNT: usize = Metric::ALL.len();

impl Metric {
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.iter().copied().find(|m| m.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The quantity metric a carrier's counter adds to (production adds output value instead).
    pub fn for_carrier(carrier: Carrier) -> Option<Metric> {
        Some(match carrier {
            Carrier::GridImport => Metric::GridImportKwh,
            Carrier::GridExport => Metric::GridExportKwh,
            Carrier::PvGeneration => Metric::PvGenerationKwh,
            Carrier::StorageCharge => Metric::StorageChargeKwh,
            Carrier::StorageDischarge => Metric::StorageDischargeKwh,
            Carrier::ChargingDelivered => Metric::ChargingDeliveredKwh,
            Carrier::ChargingSessions => Metric::ChargingSessions,
            Carrier::GreenPower => Metric::GreenPowerKwh,
            Carrier::NaturalGas => Metric::NaturalGasNm3,
            Carrier::Diesel => Metric::DieselKg,
            Carrier::Gasoline => Metric::GasolineKg,
            Carrier::Lpg => Metric::LpgKg,
            Carrier::Lng => Metric::LngKg,
            Carrier::Coal => Metric::CoalKg,
            Carrier::Heat => Metric::HeatGj,
            Carrier::Steam => Metric::SteamKg,
            Carrier::HydrogenProduced => Metric::HydrogenProducedKg,
            Carrier::HydrogenDispensed => Metric::HydrogenDispensedKg,
            Carrier::Production => return None,
        })
    }
}

/// One sum per metric, in micro units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sums(pub [i64; METRIC_COUNT]);

impl Default for Sums {
    fn default() -> Self {
        Sums([0; METRIC_COUNT])
    }
}

impl Sums {
    pub fn add(&mut self, metric: Metric, micro: i64) {
        let slot = &mut self.0[metric.index()];
        *slot = slot.saturating_add(micro);
    }

    pub fn merge(&mut self, other: &Sums) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    pub fn micro(&self, metric: Metric) -> i64 {
        self.0[metric.index()]
    }

    /// The sum in the unit of the metric's name (kWh, kg, CNY, ...).
    pub fn get(&self, metric: Metric) -> f64 {
        crate::units::from_micro(self.micro(metric))
    }

    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|v| *v == 0)
    }

    /// Non-zero entries, for storing in long form.
    pub fn non_zero(&self) -> impl Iterator<Item = (Metric, i64)> + '_ {
        Metric::ALL
            .iter()
            .map(|m| (*m, self.micro(*m)))
            .filter(|(_, v)| *v != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_indices_match() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
            assert_eq!(Metric::parse(m.name()), Some(*m));
        }
    }
}
