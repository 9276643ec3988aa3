//! What the status pages show, as plain data.

use crate::sources::health::MeterStatus;

/// Energy and carbon of the park or a firm over a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub electricity_kwh: f64,
    pub energy_tce: f64,
    /// Scope 1 + Scope 2 (location-based).
    pub co2_t: f64,
    pub green_share: Option<f64>,
}

/// A firm's line in the ranking.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FirmRow {
    pub id: String,
    pub name: String,
    pub land_mu: f64,
    /// Year to date, annualised (CNY per mu a year).
    pub output_per_mu_cny: Option<f64>,
    /// The last 24 hours (the intensity alert's window), tCO2 per 10,000 CNY of output.
    pub carbon_intensity: Option<f64>,
    /// The provisional class of the year's per-mu evaluation (A-D), if rated.
    pub class: Option<String>,
    pub score: Option<f64>,
    /// Alert conditions holding now, as (English, 中文) words.
    pub alerts: Vec<(String, String)>,
}

/// One bar of a chart: a label (hour or day) and its two values.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub energy_kwh: f64,
    pub co2_kg: f64,
}

/// A meter's health with where it sits.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterRow {
    pub status: MeterStatus,
    pub firm: String,
    pub site: String,
    pub description: String,
}

/// `/`: the park at a glance.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    pub park: String,
    /// Local time the page was made, e.g. `2026-12-02 18:30`.
    pub at: String,
    pub today: Totals,
    pub month: Totals,
    /// Ranked by output per mu, best first; unrated after.
    pub firms: Vec<FirmRow>,
    pub meters_up: usize,
    pub meters_total: usize,
    pub evaluation_year: i32,
    /// What a source asks the user to act on (English, 中文), e.g. a broker dropping messages.
    pub notices: Vec<(String, String)>,
}

/// Time of use this month (with a `[tariff]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TouMonth {
    /// (English band name, 中文, kWh), sharp to valley.
    pub bands: Vec<(&'static str, &'static str, f64)>,
    pub cost_cny: Option<f64>,
    pub max_demand_kw: Option<f64>,
    /// Local time of the maximum demand's quarter hour.
    pub max_demand_at: Option<String>,
    pub contract_kw: Option<f64>,
}

/// `/firm/ID`.
#[derive(Debug, Clone, PartialEq)]
pub struct FirmPage {
    pub park: String,
    pub at: String,
    pub firm: FirmRow,
    pub today: Totals,
    pub month: Totals,
    /// The last 24 local hours, oldest first.
    pub hours: Vec<Bar>,
    /// The last 30 local days, oldest first.
    pub days: Vec<Bar>,
    pub tou: Option<TouMonth>,
    pub meters: Vec<MeterRow>,
}

/// `/meters`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetersPage {
    pub park: String,
    pub at: String,
    pub now_ms: i64,
    pub meters: Vec<MeterRow>,
}
