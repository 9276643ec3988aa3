//! Every shipped default factor, tied to its value in docs/accounting.md and in the code: a
//! factor changed in one place and not the other fails here.

use ecogate::config::factors::{all_defaults, FactorKind};

/// (kind, name, region, year, value, unit, as docs/accounting.md writes the value)
type Row = (
    FactorKind,
    &'static str,
    Option<&'static str>,
    Option<i32>,
    f64,
    &'static str,
    &'static str,
);

const TABLE: &[Row] = &[
    (
        FactorKind::Co2,
        "grid_location",
        Some("national"),
        Some(2021),
        0.5568,
        "kgCO2/kWh",
        "0.5568",
    ),
    (
        FactorKind::Co2,
        "grid_location",
        Some("national"),
        Some(2022),
        0.5366,
        "kgCO2/kWh",
        "0.5366",
    ),
    (
        FactorKind::Co2,
        "grid_location",
        Some("national"),
        Some(2023),
        0.5306,
        "kgCO2/kWh",
        "0.5306",
    ),
    (
        FactorKind::Co2,
        "grid_location",
        Some("central_china"),
        Some(2022),
        0.5395,
        "kgCO2/kWh",
        "0.5395",
    ),
    (
        FactorKind::Co2,
        "grid_location",
        Some("central_china"),
        Some(2023),
        0.5271,
        "kgCO2/kWh",
        "0.5271",
    ),
    (
        FactorKind::Co2,
        "grid_location",
        Some("henan"),
        Some(2021),
        0.6369,
        "kgCO2/kWh",
        "0.6369",
    ),
    (
        FactorKind::Co2,
        "grid_location",
        Some("henan"),
        Some(2022),
        0.6058,
        "kgCO2/kWh",
        "0.6058",
    ),
    (
        FactorKind::Co2,
        "grid_market_residual",
        Some("national"),
        Some(2021),
        0.5942,
        "kgCO2/kWh",
        "0.5942",
    ),
    (
        FactorKind::Co2,
        "grid_market_residual",
        Some("national"),
        Some(2022),
        0.5856,
        "kgCO2/kWh",
        "0.5856",
    ),
    (
        FactorKind::Co2,
        "grid_market_residual",
        Some("national"),
        Some(2023),
        0.6096,
        "kgCO2/kWh",
        "0.6096",
    ),
    (
        FactorKind::Co2,
        "natural_gas",
        None,
        None,
        2.162,
        "kgCO2/Nm3",
        "2.162 kgCO2/Nm3",
    ),
    (
        FactorKind::Co2,
        "diesel",
        None,
        None,
        3.0959,
        "tCO2/t",
        "3.0959",
    ),
    (
        FactorKind::Co2,
        "gasoline",
        None,
        None,
        2.9251,
        "tCO2/t",
        "2.9251",
    ),
    (
        FactorKind::Co2,
        "lpg",
        None,
        None,
        3.1013,
        "tCO2/t",
        "3.1013",
    ),
    (
        FactorKind::Co2,
        "lng",
        None,
        None,
        2.8313,
        "tCO2/t",
        "2.8313",
    ),
    (
        FactorKind::Co2,
        "coal",
        None,
        None,
        1.7418,
        "tCO2/t",
        "1.7418 tCO2/t",
    ),
    (
        FactorKind::Co2,
        "heat",
        None,
        None,
        0.11,
        "tCO2/GJ",
        "0.11 tCO2/GJ",
    ),
    (
        FactorKind::Tce,
        "electricity_equivalent",
        None,
        None,
        0.1229,
        "kgce/kWh",
        "0.1229 kgce/kWh",
    ),
    (
        FactorKind::Tce,
        "electricity_coal_consumption",
        None,
        None,
        0.404,
        "kgce/kWh",
        "0.404 kgce/kWh",
    ),
    (
        FactorKind::Tce,
        "natural_gas",
        None,
        None,
        1.2143,
        "kgce/Nm3",
        "1.2143 kgce/Nm3",
    ),
    (
        FactorKind::Tce,
        "diesel",
        None,
        None,
        1.4571,
        "kgce/kg",
        "1.4571",
    ),
    (
        FactorKind::Tce,
        "gasoline",
        None,
        None,
        1.4714,
        "kgce/kg",
        "1.4714",
    ),
    (
        FactorKind::Tce,
        "lpg",
        None,
        None,
        1.7143,
        "kgce/kg",
        "1.7143",
    ),
    (
        FactorKind::Tce,
        "coal",
        None,
        None,
        0.7143,
        "kgce/kg",
        "0.7143 kgce/kg",
    ),
    (
        FactorKind::Tce,
        "heat",
        None,
        None,
        0.03412,
        "kgce/MJ",
        "0.03412 kgce/MJ",
    ),
    (
        FactorKind::Tce,
        "steam",
        None,
        None,
        0.1286,
        "kgce/kg",
        "0.1286 kgce/kg",
    ),
    (
        FactorKind::Tce,
        "hydrogen",
        None,
        None,
        4.093,
        "kgce/kg",
        "4.093 kgce/kg",
    ),
];

#[test]
fn every_default_factor_matches_the_docs_and_the_code() {
    let docs = std::fs::read_to_string("docs/accounting.md").unwrap();
    let table = docs
        .split("## 9. Default factors")
        .nth(1)
        .expect("docs/accounting.md has its factor table");
    let shipped = all_defaults();
    assert_eq!(
        shipped.len(),
        TABLE.len(),
        "a default was added or removed: add it to this table and to docs/accounting.md"
    );
    for &(kind, name, region, year, value, unit, in_docs) in TABLE {
        let (_, _, _, _, f) = shipped
            .iter()
            .find(|(k, n, r, y, _)| *k == kind && *n == name && *r == region && *y == year)
            .unwrap_or_else(|| panic!("{kind:?} {name} {region:?} {year:?} is not shipped"));
        assert_eq!(f.value, value, "{name} {region:?} {year:?}");
        assert_eq!(f.unit, unit, "{name}");
        assert!(!f.source.is_empty(), "{name} has no source");
        assert!(
            table.contains(in_docs),
            "docs/accounting.md does not state {name} as `{in_docs}`"
        );
    }
}
