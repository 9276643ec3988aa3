//! The per-mu evaluation against a park of 10 firms computed by hand: the arithmetic is in the
//! comments next to each figure.

use ecogate::app::AppConfig;
use ecogate::config::evaluation::Commitments;
use ecogate::evaluation::{evaluate, Coverage, Evaluation, FirmInput, ProductInput, YearStats};
use std::path::Path;

const CONFIG: &str = r#"
[park]
name = "P"
[evaluation]
cap = 2.0
min_land_mu = 5
class_shares = { A = 0.25, B = 0.45, C = 0.25, D = 0.05 }
indicators = [
  { id = "tax_per_mu", weight = 50 },
  { id = "value_added_per_tce", weight = 30, benchmark = "park" },
  { id = "rd_intensity", weight = 20, benchmark = 2.0 },
]
downgrades = [ { when = ["two_high", "over_carbon_intensity"], max_class = "B" } ]
"#;

const WAN: f64 = 10_000.0;

/// A rated firm with 10 mu, revenue 1,000 万元 and these figures (万元 and tce).
fn firm(id: &str, tax_wan: f64, va_wan: f64, rd_wan: f64, tce: f64) -> FirmInput {
    FirmInput {
        firm: id.into(),
        land_mu: 10.0,
        sector: None,
        stats: YearStats {
            tax_cny: Some(tax_wan * WAN),
            revenue_cny: Some(1_000.0 * WAN),
            value_added_cny: Some(va_wan * WAN),
            employees: Some(100.0),
            rd_spend_cny: Some(rd_wan * WAN),
            pollutant_t: None,
            off_meter_tce: None,
        },
        stats_source: "configuration".into(),
        metered_tce: tce,
        metered_co2_t: 100.0,
        output_cny: Some(10_000.0 * WAN),
        carbon_budget_tco2: None,
        intensity_threshold_tco2_per_10k_cny: None,
        products: Vec::new(),
        commitments: Commitments::default(),
    }
}

fn park() -> Vec<FirmInput> {
    let mut f = vec![
        firm("f1", 50.0, 100.0, 20.0, 100.0),
        firm("f2", 30.0, 200.0, 20.0, 100.0),
        firm("f3", 20.0, 300.0, 20.0, 80.0),
        firm("f4", 20.0, 300.0, 20.0, 100.0),
        firm("f5", 10.0, 400.0, 20.0, 100.0),
        firm("f6", 10.0, 400.0, 20.0, 100.0),
        firm("f7", 5.0, 100.0, 40.0, 100.0),
        firm("f8", 15.0, 200.0, 20.0, 100.0),
        // Not rated, and kept out of the benchmarks: large figures would move them.
        firm("f9", 0.0, 9_000.0, 20.0, 1.0),
        firm("f10", 900.0, 9_000.0, 20.0, 1.0),
    ];
    // f1: chemicals (division 26), 5,000 tCO2 on 10,000 万元 = 0.5 t/万元 over its 0.3.
    f[0].sector = Some("C2614".into());
    f[0].metered_co2_t = 5_000.0;
    f[0].intensity_threshold_tco2_per_10k_cny = Some(0.3);
    // f2: non-metallic minerals (30), 1,000 t / 10,000 万元 = 0.1 t/万元, under its 0.3.
    f[1].sector = Some("30".into());
    f[1].metered_co2_t = 1_000.0;
    f[1].intensity_threshold_tco2_per_10k_cny = Some(0.3);
    // f3: 80 tce metered + 20 tce of coal bought by the tonne = 100 tce; 1,000 t of product on a
    // site that used 100,000 kgce: 100 kgce/t over a quota of 90.
    f[2].stats.off_meter_tce = Some(20.0);
    f[2].products.push(ProductInput {
        name: "ingot".into(),
        quantity: 1_000.0,
        site_energy_kgce: 100_000.0,
        quota_kgce_per_unit: 90.0,
        unit: "t".into(),
        source: "GB 21346-2022 grade 3".into(),
    });
    // f4 committed 2.5 万元/亩 of tax and pays 2; f2 committed 1.5 万元/tce and makes 2.0.
    f[3].commitments.tax_per_mu_10k_cny = Some(2.5);
    f[1].commitments.value_added_per_tce_10k_cny = Some(1.5);
    // f8: 150 tCO2 over a budget of 100.
    f[7].metered_co2_t = 150.0;
    f[7].carbon_budget_tco2 = Some(100.0);
    f[8].stats.tax_cny = None;
    f[9].land_mu = 3.0;
    f
}

fn run(inputs: Vec<FirmInput>, days: f64) -> Evaluation {
    let cfg =
        AppConfig::parse(Path::new("evaluation.toml"), CONFIG).unwrap_or_else(|e| panic!("{e}"));
    evaluate(
        2026,
        Coverage {
            days,
            year_days: 365.0,
        },
        inputs,
        &cfg.evaluation,
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn ten_firms_scored_ranked_and_classed_by_hand() {
    let ev = run(park(), 365.0);
    assert!(!ev.provisional);
    let by = |id: &str| ev.firms.iter().find(|f| f.firm == id).unwrap();
    // Benchmarks over the 8 rated firms:
    //   tax per mu: (50+30+20+20+10+10+5+15) 万元 / 80 mu = 160 / 80 = 2 万元/亩;
    //   VA per tce: (100+200+300+300+400+400+100+200) 万元 / 800 tce = 2.5 万元/tce;
    //   R&D intensity: fixed 2 %.
    let b: Vec<f64> = ev.benchmarks.iter().map(|(_, b)| b.unwrap()).collect();
    assert!(
        close(b[0], 2.0) && close(b[1], 2.5) && close(b[2], 2.0),
        "{b:?}"
    );
    // Scores = 50 x min(tax/mu / 2, 2) + 30 x min(VA/tce / 2.5, 2) + 20 x min(R&D % / 2, 2):
    //   f1: 50 x min(5 / 2, 2) = 100 (capped) + 30 x 0.4 = 12 + 20 x 1 = 20 -> 132
    //   f2: 50 x 1.5 = 75 + 30 x 0.8 = 24 + 20 -> 119
    //   f3: 50 x 1 = 50 + 30 x 1.2 = 36 (300 / (80 + 20 off-meter) tce = 3) + 20 -> 106
    //   f4: 50 + 36 + 20 -> 106 (a tie with f3)
    //   f5, f6: 25 + 30 x 1.6 = 48 + 20 -> 93 (a tie)
    //   f7: 50 x 0.25 = 12.5 + 12 + 20 x min(4 / 2, 2) = 40 -> 64.5
    //   f8: 50 x 0.75 = 37.5 + 24 + 20 -> 81.5
    let expect = [
        ("f1", 132.0, 1, "B", Some("A")),
        ("f2", 119.0, 2, "A", None),
        ("f3", 106.0, 3, "B", None),
        ("f4", 106.0, 3, "B", None),
        ("f5", 93.0, 5, "B", None),
        ("f6", 93.0, 5, "B", None),
        ("f8", 81.5, 7, "C", None),
        ("f7", 64.5, 8, "D", None),
    ];
    // Classes: rank r of 8 goes to the first class whose cumulative share reaches r/8:
    // 1/8 and 2/8 -> A (0.25); 3/8 and 5/8 -> B (0.70); 7/8 -> C (0.95); 8/8 -> D.
    // f1 is A by rank, but a 两高 firm over its intensity threshold is at best B.
    for (id, score, rank, class, before) in expect {
        let f = by(id);
        assert!(
            close(f.score.unwrap(), score),
            "{id}: {:?} != {score}",
            f.score
        );
        assert_eq!(f.rank, Some(rank), "{id} rank");
        assert_eq!(f.class.as_deref(), Some(class), "{id} class");
        assert_eq!(
            f.class_before_downgrade.as_deref(),
            before,
            "{id} before downgrade"
        );
    }
    let f1 = by("f1");
    // 50 万元 / 10 mu = 5 万元/亩, 2.5 x the benchmark, scored at the cap of 2.
    assert!(close(f1.indicators[0].value.unwrap(), 5.0));
    assert!(close(f1.indicators[0].score, 100.0), "the capped indicator");
    // Unrated, with the reason; never ranked.
    assert_eq!(by("f9").unrated, ["tax_cny"]);
    assert_eq!(by("f9").rank, None);
    assert_eq!(by("f10").unrated, [ecogate::evaluation::LAND_BELOW_MINIMUM]);
    assert_eq!(by("f10").class, None);
    // Flags with their reasons.
    let flags = |id: &str| by(id).flags.iter().map(|f| f.condition).collect::<Vec<_>>();
    assert_eq!(flags("f1"), ["two_high", "over_carbon_intensity"]);
    assert_eq!(flags("f2"), ["two_high"]);
    assert_eq!(flags("f3"), ["over_product_quota"]);
    assert!(by("f3").flags[0]
        .detail
        .contains("100.00 kgce/t > quota 90"));
    assert_eq!(flags("f8"), ["over_carbon_budget"]);
    assert!(flags("f5").is_empty());
    // 标准地: f4 pays 20 万元 / 10 mu = 2 万元/亩 against 2.5 committed; f2 meets its 1.5.
    let s = &by("f4").shortfalls;
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0].item, s[0].committed, s[0].actual),
        ("tax_per_mu_10k_cny", 2.5, Some(2.0))
    );
    assert!(by("f2").shortfalls.is_empty());
}

#[test]
fn a_key_energy_unit_is_found_by_projection_from_the_year_to_date() {
    let mut firms = park();
    // 73 of 365 days: x 5. f5: 2,100 tce so far -> 10,500 tce a year >= 10,000: a key unit.
    // f6: 1,900 tce -> 9,500: not yet.
    firms[4].metered_tce = 2_100.0;
    firms[5].metered_tce = 1_900.0;
    let ev = run(firms, 73.0);
    assert!(ev.provisional);
    let f5 = ev.firms.iter().find(|f| f.firm == "f5").unwrap();
    assert!(close(f5.energy_tce, 10_500.0));
    assert_eq!(f5.flags[0].condition, "key_energy_unit");
    assert!(
        f5.flags[0].detail.contains("projected"),
        "{}",
        f5.flags[0].detail
    );
    let f6 = ev.firms.iter().find(|f| f.firm == "f6").unwrap();
    assert!(close(f6.energy_tce, 9_500.0) && f6.flags.is_empty());
}

#[test]
fn score_thresholds_and_median_benchmarks() {
    let text = CONFIG
        .replace(
            "class_shares = { A = 0.25, B = 0.45, C = 0.25, D = 0.05 }",
            "class_thresholds = { A = 110, B = 90, C = 70, D = 0 }",
        )
        .replace(
            "{ id = \"tax_per_mu\", weight = 50 }",
            "{ id = \"tax_per_mu\", weight = 50, benchmark = \"median\" }",
        );
    let cfg =
        AppConfig::parse(Path::new("evaluation.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let ev = evaluate(
        2025,
        Coverage {
            days: 365.0,
            year_days: 365.0,
        },
        park(),
        &cfg.evaluation,
    );
    // Median tax per mu of the rated 8: sorted 0.5 1 1 1.5 2 2 3 5 -> (1.5 + 2) / 2 = 1.75 万元/亩.
    assert!(close(ev.benchmarks[0].1.unwrap(), 1.75));
    // f2: 50 x min(3 / 1.75, 2) = 85.714... + 24 + 20 = 129.71 -> A (>= 110).
    let f2 = ev.firms.iter().find(|f| f.firm == "f2").unwrap();
    assert!(close(f2.score.unwrap(), 50.0 * 3.0 / 1.75 + 44.0));
    assert_eq!(f2.class.as_deref(), Some("A"));
    // f7: 50 x 0.5/1.75 = 14.29 + 12 + 40 = 66.29 -> D (below 70).
    let f7 = ev.firms.iter().find(|f| f.firm == "f7").unwrap();
    assert_eq!(f7.class.as_deref(), Some("D"));
}

#[test]
fn evaluation_settings_are_checked_where_they_are_written() {
    let bad = CONFIG
        .replace("cap = 2.0", "cap = -1")
        .replace("\"rd_intensity\"", "\"rd_intensty\"")
        .replace("max_class = \"B\"", "max_class = \"E\"")
        .replace("D = 0.05", "D = 0.15");
    let e = AppConfig::parse(Path::new("evaluation.toml"), &bad)
        .unwrap_err()
        .to_string();
    for needle in [
        "evaluation.toml:5",
        "evaluation.cap",
        "unknown indicator `rd_intensty`",
        "unknown class; the classes are A, B, C, D",
        "the shares add up to",
    ] {
        assert!(e.contains(needle), "{needle} not in:\n{e}");
    }
}
