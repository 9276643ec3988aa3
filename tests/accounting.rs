//! Hand-computed accounting: the arithmetic is written out beside each assertion.

mod common;

use common::*;
use ecogate::accounting::indicators::{derive, HydrogenClass, OutputSource, Period};
use ecogate::accounting::ledger::Entity;
use ecogate::accounting::metric::{Metric, Sums};
use ecogate::accounting::window::WindowKind;
use ecogate::config::FirmStats;
use ecogate::report;

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{actual} != {expected}"
    );
}

#[test]
fn a_day_of_grid_pv_and_gas_gives_exact_co2_and_tce() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(FACTORY);
    let mut p = pipeline(&cfg, &store_path(&dir));
    // Baselines at local midnight 2022-06-01 (16:00Z the day before), closing readings at 23:59.
    let day_start = "2022-05-31T16:00:00Z";
    let day_end = "2022-06-01T15:59:00Z";
    p.ingest(&[
        reading("grid", "import", 40_000.0, "kWh", day_start),
        reading("grid", "export", 10.0, "kWh", day_start),
        reading("pv", "gen", 7_000.0, "kWh", day_start),
        reading("gas", "vol", 500.0, "Nm3", day_start),
        reading("line", "pcs", 1_000.0, "pcs", day_start),
    ])
    .unwrap();
    // 12,000 kWh imported, 3,000 kWh PV all self-consumed (export unchanged), 1,000 Nm3 gas,
    // 400 pieces made.
    let batch = p
        .ingest(&[
            reading("grid", "import", 52_000.0, "kWh", day_end),
            reading("grid", "export", 10.0, "kWh", day_end),
            reading("pv", "gen", 10_000.0, "kWh", day_end),
            reading("gas", "vol", 1_500.0, "Nm3", day_end),
            reading("line", "pcs", 1_400.0, "pcs", day_end),
        ])
        .unwrap();
    assert!(batch.rejections.is_empty());
    let day = p
        .store()
        .sums(
            p.accountant(),
            WindowKind::Day,
            Entity::Firm(0),
            ts(day_start),
            ts(day_start) + 86_400_000,
        )
        .unwrap();
    assert_eq!(day.get(Metric::GridImportKwh), 12_000.0);
    assert_eq!(day.get(Metric::PvSelfConsumedKwh), 3_000.0);
    // Electricity consumed = 12,000 + 3,000 - 0 = 15,000 kWh.
    assert_eq!(day.get(Metric::ElectricityConsumedKwh), 15_000.0);
    // Scope 2 location = 12,000 kWh x 0.5366 kg/kWh (2022 national) = 6,439.2 kg.
    assert_eq!(day.get(Metric::Co2Scope2LocationKg), 6_439.2);
    // Market gross = 12,000 x 0.5856 (2022 residual) = 7,027.2 kg.
    assert_eq!(day.get(Metric::Co2Scope2MarketGrossKg), 7_027.2);
    // Scope 1 = 1,000 Nm3 x 2.162 kg/Nm3 = 2,162 kg.
    assert_eq!(day.get(Metric::Co2Scope1Kg), 2_162.0);
    // tce equivalent = 15,000 x 0.1229 + 1,000 x 1.2143 = 1,843.5 + 1,214.3 = 3,057.8 kgce.
    assert_eq!(day.get(Metric::EnergyEquivalentKgce), 3_057.8);
    // Coal-consumption value = 15,000 x 0.404 + 1,214.3 = 6,060 + 1,214.3 = 7,274.3 kgce.
    assert_eq!(day.get(Metric::EnergyCoalConsumptionKgce), 7_274.3);
    // Output = 400 pieces x 250 CNY = 100,000 CNY.
    assert_eq!(day.get(Metric::OutputCny), 100_000.0);

    let period = Period {
        days: 1.0,
        year_days: 365.0,
        whole_year_holdings: false,
    };
    let i = report::firm_indicators(&cfg, 0, &day, period);
    // Total CO2 = 2.162 + 6.4392 = 8.6012 t.
    close(i.co2_total_t, 8.6012);
    close(i.energy_equivalent_tce, 3.0578);
    assert_eq!(i.output_source, OutputSource::Counters);
    // Output per mu = 100,000 / 50 = 2,000 CNY; annualised x 365 = 730,000 CNY/mu.
    close(i.output_per_mu_cny.unwrap(), 2_000.0);
    close(i.output_per_mu_annualised_cny.unwrap(), 730_000.0);
    // Carbon intensity = 8.6012 t / (100,000 / 10,000) = 0.86012 tCO2 per 10k CNY.
    close(i.carbon_intensity_tco2_per_10k_cny.unwrap(), 0.86012);
    // Energy intensity = 3.0578 / 10 = 0.30578 tce per 10k CNY.
    close(i.energy_intensity_tce_per_10k_cny.unwrap(), 0.30578);
    // Green share = 3,000 PV / 15,000 consumed = 0.2.
    close(i.green_share.unwrap(), 0.2);
    // Market-based Scope 2 with no green power equals the gross: 7.0272 t.
    close(i.co2_scope2_market_t, 7.0272);

    // The park level holds the same sums (one firm). Each delta covers (00:00, 23:59] and is
    // spread over it by time: the hours of the day add up to the day exactly, and the last
    // hour (23:00-23:59 local, 15:00-15:59Z) holds 59 of its 1,439 minutes:
    // 12,000 kWh - round(12,000,000,000 x 1,380 / 1,439) micro = 12,000 - 11,507.991661
    // = 492.008339 kWh (12,000 x 59 / 1,439 = 492.0083391...).
    let park = p
        .store()
        .sums(p.accountant(), WindowKind::Year, Entity::Park, 0, i64::MAX)
        .unwrap();
    assert_eq!(park, day);
    let hours = p
        .store()
        .sums(
            p.accountant(),
            WindowKind::Hour,
            Entity::Firm(0),
            ts(day_start),
            ts(day_start) + 86_400_000,
        )
        .unwrap();
    assert_eq!(hours, day);
    let last_hour = p
        .store()
        .sums(
            p.accountant(),
            WindowKind::Hour,
            Entity::Firm(0),
            ts("2022-06-01T15:00:00Z"),
            ts("2022-06-01T16:00:00Z"),
        )
        .unwrap();
    assert_eq!(last_hour.get(Metric::GridImportKwh), 492.008339);
}

#[test]
fn green_certificates_and_green_power_net_market_based_scope2_only() {
    let mut sums = Sums::default();
    // 12,000 kWh grid at 0.5856 residual = 7,027.2 kg market gross; location 6,439.2 kg.
    sums.add(Metric::GridImportKwh, 12_000_000_000);
    sums.add(Metric::ElectricityConsumedKwh, 12_000_000_000);
    sums.add(Metric::Co2Scope2MarketGrossKg, 7_027_200_000);
    sums.add(Metric::Co2Scope2LocationKg, 6_439_200_000);
    sums.add(Metric::GreenPowerKwh, 2_000_000_000);
    let stats = FirmStats {
        green_certificates: Some(5.0),
        ..Default::default()
    };
    let owner = ecogate::accounting::indicators::Owner {
        land_mu: 10.0,
        stats: &stats,
        has_production_counters: false,
    };
    let year = Period {
        days: 365.0,
        year_days: 365.0,
        whole_year_holdings: true,
    };
    let i = derive(&sums, year, Some(owner), 0.5856);
    // Green = 2,000 kWh contract + 5 GEC x 1,000 kWh = 7,000 kWh.
    close(i.green_electricity_kwh, 7_000.0);
    // Market = 7,027.2 - 7,000 x 0.5856 = 7,027.2 - 4,099.2 = 2,928 kg = 2.928 t.
    close(i.co2_scope2_market_t, 2.928);
    // Location-based is untouched: 6.4392 t.
    close(i.co2_scope2_location_t, 6.4392);
    // Green share 7,000 / 12,000.
    close(i.green_share.unwrap(), 7_000.0 / 12_000.0);
    // Outside a year-level figure the certificates do not apply: only the 2,000 kWh contract.
    let month = Period {
        days: 30.0,
        year_days: 365.0,
        whole_year_holdings: false,
    };
    let m = derive(&sums, month, Some(owner), 0.5856);
    close(m.green_electricity_kwh, 2_000.0);
    // Certificates beyond the grid import cannot make emissions negative.
    let big = FirmStats {
        green_certificates: Some(100.0),
        ..Default::default()
    };
    let b = derive(
        &sums,
        year,
        Some(ecogate::accounting::indicators::Owner {
            land_mu: 10.0,
            stats: &big,
            has_production_counters: false,
        }),
        0.5856,
    );
    close(b.co2_scope2_market_t, 0.0);
}

#[test]
fn hydrogen_classes_at_the_exact_boundaries() {
    let at = |co2_kg_micro: i64, h2_kg_micro: i64| {
        let mut s = Sums::default();
        s.add(Metric::Co2Scope1Kg, co2_kg_micro);
        s.add(Metric::HydrogenProducedKg, h2_kg_micro);
        let period = Period {
            days: 1.0,
            year_days: 365.0,
            whole_year_holdings: false,
        };
        derive(&s, period, None, 0.0).hydrogen.unwrap()
    };
    // 49 kg CO2 / 10 kg H2 = 4.9 exactly: clean.
    let h = at(49_000_000, 10_000_000);
    assert_eq!(h.kgco2_per_kg, Some(4.9));
    assert_eq!(h.class, Some(HydrogenClass::Clean));
    // 49.001 / 10 = 4.9001: low-carbon.
    assert_eq!(
        at(49_001_000, 10_000_000).class,
        Some(HydrogenClass::LowCarbon)
    );
    // 145.1 / 10 = 14.51 exactly: low-carbon (inclusive).
    assert_eq!(
        at(145_100_000, 10_000_000).class,
        Some(HydrogenClass::LowCarbon)
    );
    // 145.2 / 10 = 14.52: conventional.
    assert_eq!(
        at(145_200_000, 10_000_000).class,
        Some(HydrogenClass::Conventional)
    );
    assert_eq!(HydrogenClass::classify(4.9), HydrogenClass::Clean);
    assert_eq!(HydrogenClass::classify(14.51), HydrogenClass::LowCarbon);
}

#[test]
fn electrolyser_intensity_counts_grid_but_not_onsite_pv() {
    let text = r#"
[park]
name = "H2 Park"
grid_factor_year = 2022

[[firms]]
id = "h2co"
name = "H2 Co"
land_mu = 10

[[sites]]
id = "ely"
firm = "h2co"
kind = "hydrogen_site"

[[meters]]
id = "m"
site = "ely"
channels = [
  { id = "grid", carrier = "grid_import", kind = "counter", unit = "kWh", max_rate_per_hour = 5000 },
  { id = "pv", carrier = "pv_generation", kind = "counter", unit = "kWh", max_rate_per_hour = 5000 },
  { id = "h2", carrier = "hydrogen_produced", kind = "counter", unit = "kg", max_rate_per_hour = 100 },
]
"#;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(text);
    let mut p = pipeline(&cfg, &store_path(&dir));
    p.ingest(&[
        reading("m", "grid", 0.0, "kWh", "2022-03-01T00:00:00Z"),
        reading("m", "pv", 0.0, "kWh", "2022-03-01T00:00:00Z"),
        reading("m", "h2", 0.0, "kg", "2022-03-01T00:00:00Z"),
    ])
    .unwrap();
    // One hour: 400 kWh grid + 150 kWh PV = 550 kWh for 10 kg H2.
    p.ingest(&[
        reading("m", "grid", 400.0, "kWh", "2022-03-01T01:00:00Z"),
        reading("m", "pv", 150.0, "kWh", "2022-03-01T01:00:00Z"),
        reading("m", "h2", 10.0, "kg", "2022-03-01T01:00:00Z"),
    ])
    .unwrap();
    let sums = p
        .store()
        .sums(
            p.accountant(),
            WindowKind::Day,
            Entity::Site(0),
            0,
            i64::MAX,
        )
        .unwrap();
    let period = Period {
        days: 1.0 / 24.0,
        year_days: 365.0,
        whole_year_holdings: false,
    };
    let h = derive(&sums, period, None, 0.5856).hydrogen.unwrap();
    // 550 kWh / 10 kg = 55 kWh/kg.
    close(h.kwh_per_kg.unwrap(), 55.0);
    // 400 kWh x 0.5366 = 214.64 kg CO2 / 10 kg = 21.464 kgCO2e/kg (PV counts zero): conventional.
    close(h.kgco2_per_kg.unwrap(), 21.464);
    assert_eq!(h.class, Some(HydrogenClass::Conventional));
}

#[test]
fn units_are_normalised_on_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(FACTORY);
    let mut p = pipeline(&cfg, &store_path(&dir));
    // The channel is configured in kWh; the source reports Wh, then MWh.
    p.ingest(&[reading(
        "grid",
        "import",
        1_000_000.0,
        "Wh",
        "2024-01-01T00:00:00Z",
    )])
    .unwrap();
    p.ingest(&[reading(
        "grid",
        "import",
        1.25,
        "MWh",
        "2024-01-01T00:15:00Z",
    )])
    .unwrap();
    let sums = p
        .store()
        .sums(
            p.accountant(),
            WindowKind::Year,
            Entity::Meter(0),
            0,
            i64::MAX,
        )
        .unwrap();
    // 1,000,000 Wh = 1,000 kWh; 1.25 MWh = 1,250 kWh: 250 kWh consumed.
    assert_eq!(sums.get(Metric::GridImportKwh), 250.0);
    // A unit of the wrong kind is refused, by reason.
    let b = p
        .ingest(&[reading(
            "grid",
            "import",
            5.0,
            "Nm3",
            "2024-01-01T00:30:00Z",
        )])
        .unwrap();
    assert_eq!(b.rejections.len(), 1);
    assert_eq!(b.rejections[0].reason.name(), "unit_mismatch");
    assert_eq!(
        p.metrics()
            .rejected(ecogate::accounting::ledger::RejectReason::UnitMismatch),
        1
    );
}

/// A park of one firm, one factory site and one meter `m`, with the given channels (and any
/// further sections).
fn one_meter(channels: &str) -> std::sync::Arc<ecogate::config::Config> {
    config(&format!(
        "{}{channels}\n",
        r#"
[park]
name = "P"
grid_factor_year = 2022
[[firms]]
id = "f"
name = "F"
land_mu = 1
[[sites]]
id = "s"
firm = "f"
kind = "factory"
[[meters]]
id = "m"
site = "s"
"#
    ))
}

#[test]
fn integrated_gauge_adds_energy_and_records_gaps() {
    let cfg = one_meter(
        r#"channels = [{ id = "p", carrier = "grid_import", kind = "gauge", unit = "kW", integrate = true }]
[accounting]
gauge_max_gap_s = 600"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(&cfg, &store_path(&dir));
    p.ingest(&[
        reading("m", "p", 100.0, "kW", "2024-01-01T00:00:00Z"),
        reading("m", "p", 300.0, "kW", "2024-01-01T00:06:00Z"),
        // 30 minutes later: beyond the 600 s gap limit, not integrated, recorded.
        reading("m", "p", 300.0, "kW", "2024-01-01T00:36:00Z"),
    ])
    .unwrap();
    let sums = p
        .store()
        .sums(
            p.accountant(),
            WindowKind::Year,
            Entity::Meter(0),
            0,
            i64::MAX,
        )
        .unwrap();
    // Trapezoid: (100 + 300) / 2 kW x 0.1 h = 20 kWh.
    assert_eq!(sums.get(Metric::GridImportKwh), 20.0);
    assert_eq!(p.store().event_count("gauge_gap").unwrap(), 1);
}

/// A gauge that is only recorded (no integration) is stored as a reading and keeps no counter
/// state: nothing later depends on its last value, and writing one state row per reading was
/// most of a commit's cost at 1,000 Modbus devices.
#[test]
fn recorded_gauge_is_stored_without_state() {
    let cfg = one_meter(
        r#"channels = [
  { id = "v", kind = "gauge", unit = "V" },
  { id = "e", carrier = "grid_import", kind = "counter", unit = "kWh", max_rate_per_hour = 1000 },
]"#,
    );
    let acct = ecogate::accounting::Accountant::new(cfg);
    let readings = [
        reading("m", "v", 230.5, "V", "2024-01-01T00:00:00Z"),
        reading("m", "e", 10.0, "kWh", "2024-01-01T00:00:00Z"),
        reading("m", "v", 231.0, "V", "2024-01-01T00:01:00Z"),
    ];
    let batch = acct.process(&readings, ts("2024-01-02T00:00:00Z"));
    // All three readings accepted; the one state is the counter's (m.e = channel 1).
    assert_eq!(batch.accepted.len(), 3);
    assert!(batch.rejections.is_empty());
    let states: Vec<u32> = batch.states.keys().map(|r| r.channel).collect();
    assert_eq!(states, vec![1]);
}

/// Deltas are gathered per meter and local minute, or split across windows, before they are
/// spread over the entities; the result must equal spreading each delta over its interval by
/// time, computed here second by second from each reading's time alone. Readings every 37 s for 3 hours across Berlin's 2024 autumn DST
/// change (03:00 CEST -> 02:00 CET on 27 October, 01:00Z), in one batch.
#[test]
fn windows_gathered_by_minute_equal_windows_per_reading() {
    use ecogate::accounting::window::LocalTime;
    use std::collections::BTreeMap;
    let text = FACTORY.replace(
        "name = \"Test Park\"",
        "name = \"Test Park\"\ntimezone = \"Europe/Berlin\"",
    );
    let cfg = config(&text);
    let tz = cfg.park.timezone;
    let acct = ecogate::accounting::Accountant::new(cfg.clone());
    let t0 = ts("2024-10-26T23:30:00Z");
    let mut readings = Vec::new();
    let mut expected: BTreeMap<(WindowKind, i64), f64> = BTreeMap::new();
    let mut kwh = 1_000.0;
    for k in 0..292 {
        let at = t0 + k * 37_000;
        let delta = if k == 0 {
            0.0
        } else {
            0.5 + (k % 7) as f64 * 0.25
        };
        kwh += delta;
        let mut r = reading("grid", "import", kwh, "kWh", "2024-10-26T23:30:00Z");
        r.ts_ms = at;
        readings.push(r);
        if k > 0 {
            // The delta covers (at - 37 s, at], evenly: each of its 37 seconds holds 1/37 and
            // belongs to the windows of its last instant.
            for sec in 0..37 {
                let instant = at - sec * 1_000 - 1;
                let local = LocalTime::new(instant, tz).unwrap();
                for &w in WindowKind::ALL {
                    *expected
                        .entry((w, local.window_start_ms(w, tz)))
                        .or_default() += delta / 37.0;
                }
            }
        }
    }
    let batch = acct.process(&readings, i64::MAX / 2);
    assert!(batch.rejections.is_empty(), "{:?}", batch.rejections);
    let mut got: BTreeMap<(WindowKind, i64), f64> = BTreeMap::new();
    for (key, sums) in &batch.aggregates {
        if key.entity == Entity::Meter(0) {
            got.insert((key.window, key.start_ms), sums.get(Metric::GridImportKwh));
        }
    }
    assert_eq!(got.len(), expected.len());
    for (k, v) in &expected {
        // Each part is rounded to a micro-kWh: a window holds at most a few parts.
        assert!((got[k] - v).abs() < 1e-5, "{k:?}: {} != {v}", got[k]);
    }
    // Three clock hours of data, but 4 hour windows in UTC terms: the repeated 02:00 hour is two.
    assert_eq!(
        got.keys().filter(|(w, _)| *w == WindowKind::Hour).count(),
        4
    );
}

/// One firm that uses every carrier and rule, over the whole of 2022 (national grid factors:
/// location 0.5366, residual 0.5856 kgCO2/kWh), read at local midnight on 1 January 2022 and
/// 1 January 2023 (the closing reading at the boundary closes 2022).
const EVERY_CARRIER: &str = r#"
[park]
name = "Audit Park"
grid_region = "national"
grid_factor_year = 2022

[[firms]]
id = "f1"
name = "Every Carrier Co."
land_mu = 30

[firms.stats]
tax_cny = 1_500_000
value_added_cny = 20_000_000
output_value_cny = 60_000_000
green_certificates = 100

[[sites]]
id = "plant"
firm = "f1"
kind = "factory"

[[sites]]
id = "bess"
firm = "f1"
kind = "storage"

[factors.co2.steam]
value = 0.19
unit = "tCO2/t"
year = 2022
source = "supplier declaration 2022 (test)"

[[meters]]
id = "m"
site = "plant"
channels = [
  { id = "imp", carrier = "grid_import", kind = "counter", unit = "kWh", max_rate_per_hour = 1e9 },
  { id = "exp", carrier = "grid_export", kind = "counter", unit = "kWh", max_rate_per_hour = 1e9 },
  { id = "pv", carrier = "pv_generation", kind = "counter", unit = "kWh", max_rate_per_hour = 1e9 },
  { id = "ppa", carrier = "green_power", kind = "counter", unit = "kWh", max_rate_per_hour = 1e9 },
  { id = "diesel", carrier = "diesel", kind = "counter", unit = "t", max_rate_per_hour = 1e9 },
  { id = "lpg", carrier = "lpg", kind = "counter", unit = "t", max_rate_per_hour = 1e9 },
  { id = "coal", carrier = "coal", kind = "counter", unit = "t", max_rate_per_hour = 1e9 },
  { id = "heat", carrier = "heat", kind = "counter", unit = "GJ", max_rate_per_hour = 1e9 },
  { id = "steam", carrier = "steam", kind = "counter", unit = "t", max_rate_per_hour = 1e9 },
]

[[meters]]
id = "b"
site = "bess"
channels = [
  { id = "chg", carrier = "storage_charge", kind = "counter", unit = "kWh", max_rate_per_hour = 1e9 },
  { id = "dis", carrier = "storage_discharge", kind = "counter", unit = "kWh", max_rate_per_hour = 1e9 },
]
"#;

#[test]
fn a_firm_with_every_carrier_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(EVERY_CARRIER);
    let mut p = pipeline(&cfg, &store_path(&dir));
    let (start, end) = ("2021-12-31T16:00:00Z", "2022-12-31T16:00:00Z");
    // (meter, channel, unit, first, last): the year's delta is last - first.
    let channels = [
        ("m", "imp", "kWh", 10_000.0, 1_010_000.0), // 1,000,000 kWh imported
        ("m", "exp", "kWh", 500.0, 50_500.0),       // 50,000 kWh exported
        ("m", "pv", "kWh", 0.0, 200_000.0),         // 200,000 kWh generated
        ("m", "ppa", "kWh", 0.0, 300_000.0),        // 300,000 kWh green-power contract
        ("m", "diesel", "t", 1.0, 3.0),             // 2 t diesel
        ("m", "lpg", "t", 0.5, 2.0),                // 1.5 t LPG
        ("m", "coal", "t", 20.0, 120.0),            // 100 t coal
        ("m", "heat", "GJ", 0.0, 500.0),            // 500 GJ heat
        ("m", "steam", "t", 100.0, 900.0),          // 800 t steam
        ("b", "chg", "kWh", 0.0, 30_000.0),         // 30,000 kWh into the battery
        ("b", "dis", "kWh", 0.0, 27_000.0),         // 27,000 kWh out of it
    ];
    let at = |when: &str, last: bool| -> Vec<ecogate::reading::Reading> {
        channels
            .iter()
            .map(|&(m, c, u, first, end_value)| {
                reading(m, c, if last { end_value } else { first }, u, when)
            })
            .collect()
    };
    p.ingest(&at(start, false)).unwrap();
    let b = p.ingest(&at(end, true)).unwrap();
    assert!(b.rejections.is_empty(), "{:?}", b.rejections);
    let year = p
        .store()
        .sums(
            p.accountant(),
            WindowKind::Year,
            Entity::Firm(0),
            ts(start),
            ts(start) + 1,
        )
        .unwrap();
    // Electricity consumed = 1,000,000 + 200,000 - 50,000 = 1,150,000 kWh; PV self-consumed =
    // 200,000 - 50,000 = 150,000 kWh. Storage is reported and enters no balance.
    assert_eq!(year.get(Metric::ElectricityConsumedKwh), 1_150_000.0);
    assert_eq!(year.get(Metric::PvSelfConsumedKwh), 150_000.0);
    assert_eq!(year.get(Metric::GridExportKwh), 50_000.0);
    assert_eq!(year.get(Metric::StorageChargeKwh), 30_000.0);
    assert_eq!(year.get(Metric::StorageDischargeKwh), 27_000.0);
    assert_eq!(year.get(Metric::CoalKg), 100_000.0);
    assert_eq!(year.get(Metric::SteamKg), 800_000.0);
    // Scope 1 = diesel 2 t x 3.0959 + LPG 1.5 t x 3.1013 + coal 100 t x 1.7418
    //         = 6.1918 + 4.65195 + 174.18 = 185.02375 t.
    assert_eq!(year.get(Metric::Co2Scope1Kg), 185_023.75);
    // Scope 2 location = grid 1,000,000 x 0.5366 kg + heat 500 GJ x 0.11 t + steam 800 t x 0.19 t
    //                  = 536.6 + 55 + 152 = 743.6 t. Exported PV subtracts nothing.
    assert_eq!(year.get(Metric::Co2Scope2LocationKg), 743_600.0);
    // Market gross = 1,000,000 x 0.5856 + 55,000 + 152,000 = 792,600 kg.
    assert_eq!(year.get(Metric::Co2Scope2MarketGrossKg), 792_600.0);
    // tce equivalent = 1,150,000 x 0.1229 + 2,000 kg x 1.4571 + 1,500 x 1.7143 + 100,000 x 0.7143
    //   + 500 GJ x 34.12 + 800,000 kg x 0.1286
    //   = 141,335 + 2,914.2 + 2,571.45 + 71,430 + 17,060 + 102,880 = 338,190.65 kgce.
    assert_eq!(year.get(Metric::EnergyEquivalentKgce), 338_190.65);
    // Coal-consumption value: electricity at 0.404: 464,600 + the same 196,855.65 = 661,455.65.
    assert_eq!(year.get(Metric::EnergyCoalConsumptionKgce), 661_455.65);

    let period = Period {
        days: 365.0,
        year_days: 365.0,
        whole_year_holdings: true,
    };
    let i = report::firm_indicators(&cfg, 0, &year, period);
    // Green electricity = min(300,000 contract + 100 GEC x 1,000, grid 1,000,000) = 400,000 kWh;
    // market-based Scope 2 = 792.6 - 400,000 x 0.5856 / 1,000 = 792.6 - 234.24 = 558.36 t.
    close(i.green_electricity_kwh, 400_000.0);
    close(i.co2_scope2_market_t, 558.36);
    // Total (Scope 1 + location Scope 2) = 185.02375 + 743.6 = 928.62375 t.
    close(i.co2_total_t, 928.62375);
    // No production counter: the annual output value, whole year = 60,000,000 CNY.
    assert_eq!(i.output_source, OutputSource::AnnualStatistics);
    close(i.output_cny.unwrap(), 60_000_000.0);
    // Per mu: 60,000,000 / 30 = 2,000,000 CNY/mu; tax 1,500,000 / 30 = 50,000 CNY/mu.
    close(i.output_per_mu_cny.unwrap(), 2_000_000.0);
    close(i.tax_per_mu_cny.unwrap(), 50_000.0);
    // Carbon intensity = 928.62375 / 6,000 = 0.154770625 tCO2 per 10,000 CNY; energy intensity
    // = 338.19065 / 6,000 = 0.0563651083... tce per 10,000 CNY.
    close(i.carbon_intensity_tco2_per_10k_cny.unwrap(), 0.154770625);
    close(
        i.energy_intensity_tce_per_10k_cny.unwrap(),
        338.19065 / 6_000.0,
    );
    // Value added per tce = 20,000,000 / 338.19065 = 59,138.3... CNY/tce.
    close(i.value_added_per_tce_cny.unwrap(), 20_000_000.0 / 338.19065);
    // Green share = (150,000 PV self-consumed + 400,000 green) / 1,150,000 = 0.4782608...
    close(i.green_share.unwrap(), 550_000.0 / 1_150_000.0);
}

#[test]
fn a_metering_firm_that_produced_nothing_has_output_zero() {
    // FACTORY's firm has a production counter and no annual output: with one configured, a
    // period without production still has output 0 from the counters, not a prorated share.
    let text = FACTORY.replace(
        "land_mu = 50",
        "land_mu = 50\n[firms.stats]\noutput_value_cny = 36_500_000",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&text);
    let mut p = pipeline(&cfg, &store_path(&dir));
    p.ingest(&[
        reading("line", "pcs", 1_000.0, "pcs", "2022-06-01T00:00:00Z"),
        reading("grid", "import", 100.0, "kWh", "2022-06-01T00:00:00Z"),
    ])
    .unwrap();
    p.ingest(&[
        reading("line", "pcs", 1_000.0, "pcs", "2022-06-02T00:00:00Z"),
        reading("grid", "import", 200.0, "kWh", "2022-06-02T00:00:00Z"),
    ])
    .unwrap();
    let sums = p
        .store()
        .sums(
            p.accountant(),
            WindowKind::Year,
            Entity::Firm(0),
            0,
            i64::MAX,
        )
        .unwrap();
    let period = Period {
        days: 1.0,
        year_days: 365.0,
        whole_year_holdings: false,
    };
    let i = report::firm_indicators(&cfg, 0, &sums, period);
    assert_eq!(i.output_source, OutputSource::Counters);
    assert_eq!(i.output_cny, Some(0.0));
    assert_eq!(i.carbon_intensity_tco2_per_10k_cny, None);
}
