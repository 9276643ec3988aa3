//! The per-mu evaluation (亩均效益综合评价), 两高 and key-unit flags, product quotas and 标准地
//! commitments: pure functions of a year's figures per firm, so that every score, class and flag
//! can be recomputed by hand from the inputs stored with it (docs/evaluation.md).
//!
//! The arithmetic, in the order it runs:
//! 1. Comprehensive energy consumption = metered tce (equivalent or coal-consumption value) x
//!    annualisation + off-meter tce; CO2 = metered tCO2 (Scope 1 + Scope 2 location-based) x
//!    annualisation. Annualisation is year_days / days covered (1 for a whole year).
//! 2. Each indicator is a ratio numerator / denominator in its display unit (万元/亩, %, ...).
//! 3. A firm is unrated when its land is below the minimum, or when a statistic an indicator
//!    needs is missing (each missing item is named).
//! 4. Benchmark per indicator over the rated firms: the park's aggregate ratio (sum of
//!    numerators / sum of denominators), the median, or a fixed value.
//! 5. Indicator score = weight x min(value / benchmark, cap); a zero denominator with a positive
//!    numerator (no pollutant at all) scores the cap; total = sum.
//! 6. Rank by total, ties sharing the better rank; class = the first class whose cumulative
//!    share reaches rank / rated firms (or the first whose threshold the total reaches).
//! 7. Downgrade rules: a firm meeting every condition of a rule gets no better than its class.

use crate::config::evaluation::{
    Benchmark, ClassRule, Commitments, Condition, EvaluationConfig, Indicator,
};

/// A year's statistics of one firm (annual figures, CNY).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct YearStats {
    pub tax_cny: Option<f64>,
    pub revenue_cny: Option<f64>,
    pub value_added_cny: Option<f64>,
    pub employees: Option<f64>,
    pub rd_spend_cny: Option<f64>,
    pub pollutant_t: Option<f64>,
    pub off_meter_tce: Option<f64>,
}

/// A product counted on a production meter, with its quota.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProductInput {
    pub name: String,
    /// Quantity produced in the period, in the quota's unit.
    pub quantity: f64,
    /// Comprehensive energy of the site where it is made, in the period, kgce.
    pub site_energy_kgce: f64,
    pub quota_kgce_per_unit: f64,
    pub unit: String,
    pub source: String,
}

/// What the evaluation of one firm starts from: everything here is stored with the result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FirmInput {
    pub firm: String,
    pub land_mu: f64,
    pub sector: Option<String>,
    pub stats: YearStats,
    /// Where the statistics came from (configuration, or an import: file and time).
    pub stats_source: String,
    /// Metered comprehensive energy over the period, tce, on the configured basis.
    pub metered_tce: f64,
    /// Metered CO2 over the period (Scope 1 + Scope 2 location-based), t.
    pub metered_co2_t: f64,
    /// Output value over the period (counters or prorated statistics), CNY.
    pub output_cny: Option<f64>,
    pub carbon_budget_tco2: Option<f64>,
    pub intensity_threshold_tco2_per_10k_cny: Option<f64>,
    pub products: Vec<ProductInput>,
    #[serde(skip)]
    pub commitments: Commitments,
}

/// The stretch of the year the inputs cover.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Coverage {
    pub days: f64,
    pub year_days: f64,
}

impl Coverage {
    pub fn provisional(&self) -> bool {
        self.days + 1e-9 < self.year_days
    }
    /// Factor from the period's metered figures to a year's.
    pub fn annualise(&self) -> f64 {
        if self.days > 0.0 {
            self.year_days / self.days
        } else {
            0.0
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Flag {
    pub condition: &'static str,
    /// The figures behind it, in words.
    pub detail: String,
    /// The same in Chinese.
    pub detail_zh: String,
}

/// A 标准地 commitment not met.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Shortfall {
    pub item: &'static str,
    pub committed: f64,
    pub actual: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IndicatorResult {
    pub indicator: &'static str,
    pub value: Option<f64>,
    pub benchmark: Option<f64>,
    pub weight: f64,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FirmEvaluation {
    pub firm: String,
    /// Annual (annualised when provisional) comprehensive energy consumption, tce.
    pub energy_tce: f64,
    pub co2_t: f64,
    pub indicators: Vec<IndicatorResult>,
    /// `None` when unrated.
    pub score: Option<f64>,
    pub rank: Option<usize>,
    pub class: Option<String>,
    /// The class before downgrade rules, when one changed it.
    pub class_before_downgrade: Option<String>,
    /// Why the firm is not rated: each missing statistic (its key, such as `tax_cny`), or
    /// [`LAND_BELOW_MINIMUM`].
    pub unrated: Vec<String>,
    pub flags: Vec<Flag>,
    pub shortfalls: Vec<Shortfall>,
    pub input: FirmInput,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub year: i32,
    pub coverage: Coverage,
    pub provisional: bool,
    /// In input order.
    pub firms: Vec<FirmEvaluation>,
    pub benchmarks: Vec<(&'static str, Option<f64>)>,
}

/// numerator, denominator of an indicator in its display unit, or the missing statistic.
fn parts(
    i: Indicator,
    f: &FirmInput,
    energy_tce: f64,
    co2_t: f64,
) -> Result<(f64, f64), &'static str> {
    let s = &f.stats;
    let wan = |x: Option<f64>, name| x.map(|v| v / 10_000.0).ok_or(name);
    Ok(match i {
        Indicator::TaxPerMu => (wan(s.tax_cny, "tax_cny")?, f.land_mu),
        Indicator::RevenuePerMu => (wan(s.revenue_cny, "revenue_cny")?, f.land_mu),
        Indicator::ValueAddedPerMu => (wan(s.value_added_cny, "value_added_cny")?, f.land_mu),
        Indicator::ValueAddedPerTce => (wan(s.value_added_cny, "value_added_cny")?, energy_tce),
        Indicator::ValueAddedPerTco2 => (wan(s.value_added_cny, "value_added_cny")?, co2_t),
        Indicator::ValueAddedPerPollutant => (
            wan(s.value_added_cny, "value_added_cny")?,
            s.pollutant_t.ok_or("pollutant_t")?,
        ),
        Indicator::RdIntensity => (
            s.rd_spend_cny.ok_or("rd_spend_cny")? * 100.0,
            s.revenue_cny.ok_or("revenue_cny")?,
        ),
        Indicator::LabourProductivity => (
            wan(s.value_added_cny, "value_added_cny")?,
            s.employees.ok_or("employees")?,
        ),
    })
}

fn ratio(n: f64, d: f64) -> Option<f64> {
    (d > 0.0).then(|| n / d)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// The unrated reason of a firm with less land than `evaluation.min_land_mu`.
pub const LAND_BELOW_MINIMUM: &str = "land_below_minimum";

/// Scores that differ by less than this (relative) are a tie.
const TIE: f64 = 1e-9;

/// Evaluates the firms of one year.
pub fn evaluate(
    year: i32,
    coverage: Coverage,
    inputs: Vec<FirmInput>,
    cfg: &EvaluationConfig,
) -> Evaluation {
    let k = coverage.annualise();
    let mut out: Vec<FirmEvaluation> = inputs
        .into_iter()
        .map(|f| {
            let energy_tce = f.metered_tce * k + f.stats.off_meter_tce.unwrap_or(0.0);
            let co2_t = f.metered_co2_t * k;
            let mut unrated = Vec::new();
            // NaN land (not configured) is below any minimum.
            if f.land_mu.is_nan() || f.land_mu < cfg.min_land_mu {
                unrated.push(LAND_BELOW_MINIMUM.to_string());
            }
            for r in &cfg.indicators {
                if let Err(missing) = parts(r.indicator, &f, energy_tce, co2_t) {
                    if !unrated.iter().any(|u| u == missing) {
                        unrated.push(missing.to_string());
                    }
                }
            }
            FirmEvaluation {
                firm: f.firm.clone(),
                energy_tce,
                co2_t,
                indicators: Vec::new(),
                score: None,
                rank: None,
                class: None,
                class_before_downgrade: None,
                unrated,
                flags: Vec::new(),
                shortfalls: Vec::new(),
                input: f,
            }
        })
        .collect();

    // Benchmarks over the rated firms.
    let rated: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].unrated.is_empty())
        .collect();
    let mut benchmarks = Vec::new();
    for r in &cfg.indicators {
        let values: Vec<(f64, f64)> = rated
            .iter()
            .filter_map(|&i| {
                parts(r.indicator, &out[i].input, out[i].energy_tce, out[i].co2_t).ok()
            })
            .collect();
        let b = match r.benchmark {
            Benchmark::Park => ratio(
                values.iter().map(|v| v.0).sum(),
                values.iter().map(|v| v.1).sum(),
            ),
            Benchmark::Median => median(values.iter().filter_map(|&(n, d)| ratio(n, d)).collect()),
            Benchmark::Fixed(x) => Some(x),
        };
        benchmarks.push((r.indicator.id(), b));
    }
    for &i in &rated {
        let mut total = 0.0;
        let mut results = Vec::new();
        for (r, (_, b)) in cfg.indicators.iter().zip(&benchmarks) {
            let (n, d) = parts(r.indicator, &out[i].input, out[i].energy_tce, out[i].co2_t)
                .expect("rated firms have every statistic");
            let value = ratio(n, d);
            let relative = match (value, b) {
                (Some(v), Some(b)) if *b > 0.0 => (v / b).clamp(0.0, cfg.cap),
                // Nothing in the denominator (no pollutant, no energy) with something to show
                // for it: the best a firm can score.
                (None, Some(_)) if n > 0.0 => cfg.cap,
                _ => 0.0,
            };
            let score = r.weight * relative;
            total += score;
            results.push(IndicatorResult {
                indicator: r.indicator.id(),
                value,
                benchmark: *b,
                weight: r.weight,
                score,
            });
        }
        out[i].indicators = results;
        out[i].score = Some(total);
    }

    // Ranks: ties share the better rank.
    let mut order = rated.clone();
    order.sort_by(|&a, &b| out[b].score.unwrap().total_cmp(&out[a].score.unwrap()));
    let n = order.len();
    let mut rank = 0;
    let mut prev: Option<f64> = None;
    for (pos, &i) in order.iter().enumerate() {
        let s = out[i].score.unwrap();
        let tied = prev.is_some_and(|p| (p - s).abs() <= TIE * p.abs().max(1.0));
        if !tied {
            rank = pos + 1;
        }
        prev = Some(s);
        out[i].rank = Some(rank);
        out[i].class = Some(match &cfg.classes {
            ClassRule::Shares(shares) => {
                let at = rank as f64 / n as f64;
                let mut cumulative = 0.0;
                shares
                    .iter()
                    .find(|(_, share)| {
                        cumulative += share;
                        cumulative + TIE >= at
                    })
                    .or(shares.last())
                    .map(|(c, _)| c.clone())
                    .unwrap_or_default()
            }
            ClassRule::Thresholds(th) => th
                .iter()
                .find(|(_, min)| s + TIE >= *min)
                .or(th.last())
                .map(|(c, _)| c.clone())
                .unwrap_or_default(),
        });
    }

    for f in &mut out {
        f.flags = flags(f, coverage, cfg);
        f.shortfalls = shortfalls(f);
    }
    let names = cfg.classes.names();
    let position = |c: &str| names.iter().position(|n| *n == c).unwrap_or(usize::MAX);
    for f in &mut out {
        let Some(class) = f.class.clone() else {
            continue;
        };
        let mut worst = class.clone();
        for d in &cfg.downgrades {
            let holds = !d.when.is_empty()
                && d.when.iter().all(|c| {
                    (c == &Condition::CommitmentShortfall && !f.shortfalls.is_empty())
                        || f.flags.iter().any(|fl| fl.condition == c.id())
                });
            if holds && position(&d.max_class) > position(&worst) {
                worst = d.max_class.clone();
            }
        }
        if worst != class {
            f.class_before_downgrade = Some(class);
            f.class = Some(worst);
        }
    }
    Evaluation {
        year,
        coverage,
        provisional: coverage.provisional(),
        firms: out,
        benchmarks,
    }
}

fn flags(f: &FirmEvaluation, coverage: Coverage, cfg: &EvaluationConfig) -> Vec<Flag> {
    let input = &f.input;
    let (projected, projected_zh) = if coverage.provisional() {
        (" (projected from the year to date)", "(按年初至今推算)")
    } else {
        ("", "")
    };
    let mut out = Vec::new();
    if cfg.is_high_energy(input.sector.as_deref()) {
        out.push(Flag {
            condition: Condition::TwoHigh.id(),
            detail: format!(
                "sector {} is in the high-energy divisions {}",
                input.sector.as_deref().unwrap_or(""),
                cfg.high_energy_sectors.join(", ")
            ),
            detail_zh: format!(
                "行业代码 {} 属于高耗能行业大类 {}",
                input.sector.as_deref().unwrap_or(""),
                cfg.high_energy_sectors.join("、")
            ),
        });
    }
    if f.energy_tce >= cfg.key_unit_tce {
        out.push(Flag {
            condition: Condition::KeyEnergyUnit.id(),
            detail: format!(
                "{:.1} tce a year{projected} >= {} tce",
                f.energy_tce, cfg.key_unit_tce
            ),
            detail_zh: format!(
                "年综合能耗 {:.1} 吨标准煤{projected_zh} >= {} 吨标准煤",
                f.energy_tce, cfg.key_unit_tce
            ),
        });
    }
    let output_year = input.output_cny.map(|o| o * coverage.annualise());
    if let (Some(limit), Some(intensity)) = (
        input.intensity_threshold_tco2_per_10k_cny,
        output_year.and_then(|o| ratio(f.co2_t, o / 10_000.0)),
    ) {
        if intensity > limit {
            out.push(Flag {
                condition: Condition::OverCarbonIntensity.id(),
                detail: format!("{intensity:.4} tCO2 per 10,000 CNY > threshold {limit}"),
                detail_zh: format!("单位产值碳排放 {intensity:.4} 吨二氧化碳/万元 > 阈值 {limit}"),
            });
        }
    }
    if let Some(budget) = input.carbon_budget_tco2 {
        if f.co2_t > budget {
            out.push(Flag {
                condition: Condition::OverCarbonBudget.id(),
                detail: format!("{:.1} tCO2 a year{projected} > budget {budget}", f.co2_t),
                detail_zh: format!(
                    "年二氧化碳排放 {:.1} 吨{projected_zh} > 预算 {budget} 吨",
                    f.co2_t
                ),
            });
        }
    }
    for p in &input.products {
        if let Some(per_unit) = ratio(p.site_energy_kgce, p.quantity) {
            if per_unit > p.quota_kgce_per_unit {
                out.push(Flag {
                    condition: Condition::OverProductQuota.id(),
                    detail: format!(
                        "{}: {per_unit:.2} kgce/{} > quota {} kgce/{} ({})",
                        p.name, p.unit, p.quota_kgce_per_unit, p.unit, p.source
                    ),
                    detail_zh: format!(
                        "{}:单位产品能耗 {per_unit:.2} 千克标准煤/{} > 限额 {} 千克标准煤/{}({})",
                        p.name, p.unit, p.quota_kgce_per_unit, p.unit, p.source
                    ),
                });
            }
        }
    }
    out
}

fn shortfalls(f: &FirmEvaluation) -> Vec<Shortfall> {
    let c = &f.input.commitments;
    let s = &f.input.stats;
    let mut out = Vec::new();
    let va_10k = s.value_added_cny.map(|v| v / 10_000.0);
    if let Some(committed) = c.tax_per_mu_10k_cny {
        let actual = s.tax_cny.and_then(|t| ratio(t / 10_000.0, f.input.land_mu));
        if actual.is_none_or(|a| a < committed) {
            out.push(Shortfall {
                item: "tax_per_mu_10k_cny",
                committed,
                actual,
            });
        }
    }
    if let Some(committed) = c.value_added_per_tce_10k_cny {
        let actual = va_10k.and_then(|v| ratio(v, f.energy_tce));
        if actual.is_none_or(|a| a < committed) {
            out.push(Shortfall {
                item: "value_added_per_tce_10k_cny",
                committed,
                actual,
            });
        }
    }
    if let Some(committed) = c.energy_per_value_added_tce_per_10k_cny {
        let actual = va_10k.and_then(|v| ratio(f.energy_tce, v));
        if actual.is_none_or(|a| a > committed) {
            out.push(Shortfall {
                item: "energy_per_value_added_tce_per_10k_cny",
                committed,
                actual,
            });
        }
    }
    if let Some(committed) = c.co2_t {
        if f.co2_t > committed {
            out.push(Shortfall {
                item: "co2_t",
                committed,
                actual: Some(f.co2_t),
            });
        }
    }
    out
}
