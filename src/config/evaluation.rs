//! `[evaluation]` and the per-firm evaluation inputs of the park model: the per-mu (亩均)
//! evaluation's indicators and weights, benchmarks, classes, downgrade rules, the 两高 sector
//! list and the key energy-using unit line; each firm's product quotas and 标准地 commitments.
//!
//! Defaults follow ../shared/reference/carbon-factors.md ("Per-mu evaluation"): the weights of
//! Huangyan, Zhejiang, 2022 (tax/mu 30, value added/mu 20, value added per tce 20, value added per
//! pollutant 10, labour productivity 10, R&D 10), classes A 25 % / B 45 % / C 25 % / D 5 %, the six
//! energy-intensive divisions of GB/T 4754-2017, and 10,000 tce a year for a key energy-using unit
//! (重点用能单位, 《重点用能单位节能管理办法》).

/// A value with where it stands in the file (as in `raw.rs`).
type S<T> = toml::Spanned<T>;
use super::Validator;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One indicator of the evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Indicator {
    TaxPerMu,
    RevenuePerMu,
    ValueAddedPerMu,
    ValueAddedPerTce,
    ValueAddedPerTco2,
    ValueAddedPerPollutant,
    RdIntensity,
    LabourProductivity,
}

impl Indicator {
    pub const ALL: [Indicator; 8] = [
        Indicator::TaxPerMu,
        Indicator::RevenuePerMu,
        Indicator::ValueAddedPerMu,
        Indicator::ValueAddedPerTce,
        Indicator::ValueAddedPerTco2,
        Indicator::ValueAddedPerPollutant,
        Indicator::RdIntensity,
        Indicator::LabourProductivity,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Indicator::TaxPerMu => "tax_per_mu",
            Indicator::RevenuePerMu => "revenue_per_mu",
            Indicator::ValueAddedPerMu => "value_added_per_mu",
            Indicator::ValueAddedPerTce => "value_added_per_tce",
            Indicator::ValueAddedPerTco2 => "value_added_per_tco2",
            Indicator::ValueAddedPerPollutant => "value_added_per_pollutant",
            Indicator::RdIntensity => "rd_intensity",
            Indicator::LabourProductivity => "labour_productivity",
        }
    }

    pub fn parse(id: &str) -> Option<Indicator> {
        Indicator::ALL.into_iter().find(|i| i.id() == id)
    }
}

/// What an indicator's value is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Benchmark {
    /// The park's aggregate ratio over the rated firms: sum of numerators / sum of denominators.
    Park,
    /// The median of the rated firms' values.
    Median,
    /// A fixed value, in the indicator's display unit (万元/亩, 万元/吨标准煤, %, 万元/人 ...).
    Fixed(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndicatorRule {
    pub indicator: Indicator,
    pub weight: f64,
    pub benchmark: Benchmark,
}

/// How classes are given.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassRule {
    /// Shares of the rated firms by rank, best class first (A, B, C, D); they sum to 1.
    Shares(Vec<(String, f64)>),
    /// Minimum total score per class, best class first; a firm below every threshold gets the
    /// last class named.
    Thresholds(Vec<(String, f64)>),
}

impl ClassRule {
    pub fn names(&self) -> Vec<&str> {
        match self {
            ClassRule::Shares(v) | ClassRule::Thresholds(v) => {
                v.iter().map(|(n, _)| n.as_str()).collect()
            }
        }
    }
}

/// A condition a downgrade rule can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    /// The firm's sector is in the high-energy list (两高).
    TwoHigh,
    KeyEnergyUnit,
    OverCarbonIntensity,
    OverCarbonBudget,
    OverProductQuota,
    CommitmentShortfall,
}

impl Condition {
    pub const ALL: [Condition; 6] = [
        Condition::TwoHigh,
        Condition::KeyEnergyUnit,
        Condition::OverCarbonIntensity,
        Condition::OverCarbonBudget,
        Condition::OverProductQuota,
        Condition::CommitmentShortfall,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Condition::TwoHigh => "two_high",
            Condition::KeyEnergyUnit => "key_energy_unit",
            Condition::OverCarbonIntensity => "over_carbon_intensity",
            Condition::OverCarbonBudget => "over_carbon_budget",
            Condition::OverProductQuota => "over_product_quota",
            Condition::CommitmentShortfall => "commitment_shortfall",
        }
    }

    pub fn parse(id: &str) -> Option<Condition> {
        Condition::ALL.into_iter().find(|c| c.id() == id)
    }
}

/// A firm meeting every condition gets no better class than `max_class`.
#[derive(Debug, Clone, PartialEq)]
pub struct Downgrade {
    pub when: Vec<Condition>,
    pub max_class: String,
}

/// Which tce figure is comprehensive energy consumption (综合能耗).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnergyBasis {
    /// 当量值 (electricity at 0.1229 kgce/kWh).
    Equivalent,
    /// 等价值 (electricity at the coal consumption of supply).
    CoalConsumption,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationConfig {
    pub indicators: Vec<IndicatorRule>,
    /// Largest ratio of a firm's value to the benchmark that scores.
    pub cap: f64,
    pub classes: ClassRule,
    pub downgrades: Vec<Downgrade>,
    /// Firms with less land are not rated.
    pub min_land_mu: f64,
    pub energy_basis: EnergyBasis,
    /// GB/T 4754-2017 divisions (two digits) of high-energy sectors.
    pub high_energy_sectors: Vec<String>,
    /// Comprehensive energy consumption a year from which a firm is a key energy-using unit.
    pub key_unit_tce: f64,
    /// Where imported statistics and stored evaluations live; next to the store by default.
    pub statistics_path: std::path::PathBuf,
}

/// The GB/T 4754-2017 divisions of the six energy-intensive industries.
pub const DEFAULT_HIGH_ENERGY_SECTORS: [&str; 6] = ["25", "26", "30", "31", "32", "44"];

impl EvaluationConfig {
    pub fn default_with(statistics_path: std::path::PathBuf) -> EvaluationConfig {
        let rule = |indicator, weight| IndicatorRule {
            indicator,
            weight,
            benchmark: Benchmark::Park,
        };
        EvaluationConfig {
            indicators: vec![
                rule(Indicator::TaxPerMu, 30.0),
                rule(Indicator::ValueAddedPerMu, 20.0),
                rule(Indicator::ValueAddedPerTce, 20.0),
                rule(Indicator::ValueAddedPerPollutant, 10.0),
                rule(Indicator::LabourProductivity, 10.0),
                rule(Indicator::RdIntensity, 10.0),
            ],
            cap: 3.0,
            classes: ClassRule::Shares(vec![
                ("A".into(), 0.25),
                ("B".into(), 0.45),
                ("C".into(), 0.25),
                ("D".into(), 0.05),
            ]),
            downgrades: vec![Downgrade {
                when: vec![Condition::TwoHigh, Condition::OverCarbonIntensity],
                max_class: "B".into(),
            }],
            min_land_mu: 0.0,
            energy_basis: EnergyBasis::Equivalent,
            high_energy_sectors: DEFAULT_HIGH_ENERGY_SECTORS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            key_unit_tce: 10_000.0,
            statistics_path,
        }
    }

    /// The GB/T 4754 division of a sector code ("C2614", "26", "2614" -> "26").
    pub fn division(sector: &str) -> Option<String> {
        let digits: String = sector
            .trim()
            .trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .chars()
            .take(2)
            .collect();
        (digits.len() == 2 && digits.chars().all(|c| c.is_ascii_digit())).then_some(digits)
    }

    pub fn is_high_energy(&self, sector: Option<&str>) -> bool {
        sector
            .and_then(Self::division)
            .is_some_and(|d| self.high_energy_sectors.contains(&d))
    }
}

/// Energy per unit of product checked against the national standard's quota (限额).
#[derive(Debug, Clone, PartialEq)]
pub struct ProductQuota {
    pub name: String,
    /// The production meter counting it (its only production channel).
    pub meter: usize,
    /// kgce per base unit of the counter (per piece or per kg), as configured per `unit`.
    pub quota_kgce_per_unit: f64,
    /// The unit the quota is given per ("t", "piece" ...), and its size in the counter's base unit.
    pub unit: String,
    pub unit_in_base: f64,
    /// Output value per base unit of the counter: quantity = the meter's output value / this.
    pub unit_value_cny_per_base: f64,
    /// The standard the quota comes from (such as "GB 21346-2022, grade 3").
    pub source: String,
}

/// 标准地 commitments, each checked yearly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Commitments {
    pub tax_per_mu_10k_cny: Option<f64>,
    pub value_added_per_tce_10k_cny: Option<f64>,
    /// tce per 10,000 CNY of value added (at most).
    pub energy_per_value_added_tce_per_10k_cny: Option<f64>,
    /// tCO2 a year (at most).
    pub co2_t: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvaluation {
    pub cap: Option<S<f64>>,
    pub min_land_mu: Option<S<f64>>,
    pub energy_basis: Option<S<String>>,
    pub high_energy_sectors: Option<S<Vec<String>>>,
    pub key_unit_tce: Option<S<f64>>,
    pub statistics_path: Option<S<String>>,
    /// Class name -> share of the rated firms (0-1), best first in the order A, B, C, D ... by
    /// name.
    pub class_shares: Option<BTreeMap<String, S<f64>>>,
    /// Class name -> minimum score.
    pub class_thresholds: Option<BTreeMap<String, S<f64>>>,
    pub indicators: Option<Vec<RawIndicator>>,
    pub downgrades: Option<Vec<RawDowngrade>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIndicator {
    pub id: S<String>,
    pub weight: S<f64>,
    /// "park" (default), "median", or a number in the indicator's display unit.
    pub benchmark: Option<S<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDowngrade {
    pub when: S<Vec<String>>,
    pub max_class: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProduct {
    pub name: S<String>,
    pub meter: S<String>,
    pub quota_kgce: S<f64>,
    /// What the quota is per: a unit of the counter's dimension ("t", "kg", "piece").
    pub per: S<String>,
    pub source: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommitments {
    pub tax_per_mu_10k_cny: Option<S<f64>>,
    pub value_added_per_tce_10k_cny: Option<S<f64>>,
    pub energy_per_value_added_tce_per_10k_cny: Option<S<f64>>,
    pub co2_t: Option<S<f64>>,
}

impl Validator<'_> {
    pub(super) fn evaluation(
        &mut self,
        raw: &RawEvaluation,
        store_path: &std::path::Path,
    ) -> EvaluationConfig {
        let default_path = store_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .join("statistics.db");
        let mut e = EvaluationConfig::default_with(default_path);
        if let Some(p) = &raw.statistics_path {
            e.statistics_path = self.relative_to_config(p.get_ref());
        }
        if let Some(c) = &raw.cap {
            if let Some(v) = self.positive(c, "evaluation.cap") {
                e.cap = v;
            }
        }
        if let Some(v) = self.non_negative(&raw.min_land_mu, "evaluation.min_land_mu") {
            e.min_land_mu = v;
        }
        if let Some(v) = &raw.key_unit_tce {
            if let Some(v) = self.positive(v, "evaluation.key_unit_tce") {
                e.key_unit_tce = v;
            }
        }
        if let Some(b) = &raw.energy_basis {
            match b.get_ref().as_str() {
                "equivalent" => e.energy_basis = EnergyBasis::Equivalent,
                "coal_consumption" => e.energy_basis = EnergyBasis::CoalConsumption,
                other => self.err(
                    b,
                    "evaluation.energy_basis",
                    format!("`{other}`: use `equivalent` (当量值) or `coal_consumption` (等价值)"),
                ),
            }
        }
        if let Some(list) = &raw.high_energy_sectors {
            let mut out = Vec::new();
            for s in list.get_ref() {
                match EvaluationConfig::division(s) {
                    Some(d) => out.push(d),
                    None => self.err(
                        list,
                        "evaluation.high_energy_sectors",
                        format!("`{s}` is not a GB/T 4754 division (two digits, such as \"26\")"),
                    ),
                }
            }
            e.high_energy_sectors = out;
        }
        if let Some(list) = &raw.indicators {
            let mut rules: Vec<IndicatorRule> = Vec::new();
            for (i, r) in list.iter().enumerate() {
                let key = format!("evaluation.indicators[{i}]");
                let Some(indicator) = Indicator::parse(r.id.get_ref()) else {
                    self.err(
                        &r.id,
                        format!("{key}.id"),
                        format!(
                            "unknown indicator `{}`; one of: {}",
                            r.id.get_ref(),
                            Indicator::ALL.map(|i| i.id()).join(", ")
                        ),
                    );
                    continue;
                };
                if rules.iter().any(|x| x.indicator == indicator) {
                    self.err(&r.id, format!("{key}.id"), "indicator listed twice");
                    continue;
                }
                let Some(weight) = self.positive(&r.weight, &format!("{key}.weight")) else {
                    continue;
                };
                let benchmark = match &r.benchmark {
                    None => Benchmark::Park,
                    Some(b) => match b.get_ref() {
                        toml::Value::String(s) if s == "park" => Benchmark::Park,
                        toml::Value::String(s) if s == "median" => Benchmark::Median,
                        toml::Value::Float(x) if *x > 0.0 => Benchmark::Fixed(*x),
                        toml::Value::Integer(x) if *x > 0 => Benchmark::Fixed(*x as f64),
                        _ => {
                            self.err(
                                b,
                                format!("{key}.benchmark"),
                                "use \"park\" (aggregate ratio), \"median\", or a positive number in the indicator's unit",
                            );
                            continue;
                        }
                    },
                };
                rules.push(IndicatorRule {
                    indicator,
                    weight,
                    benchmark,
                });
            }
            if rules.is_empty() && self.error_count() == 0 {
                self.err_unlocated("evaluation.indicators", "no indicator: list at least one");
            }
            e.indicators = rules;
        }
        match (&raw.class_shares, &raw.class_thresholds) {
            (Some(_), Some(_)) => self.err_unlocated(
                "evaluation.class_shares",
                "give class_shares or class_thresholds, not both",
            ),
            (Some(shares), None) => {
                let mut v: Vec<(String, f64)> = Vec::new();
                for (name, share) in shares {
                    let s = *share.get_ref();
                    if !(0.0..=1.0).contains(&s) {
                        self.err(
                            share,
                            format!("evaluation.class_shares.{name}"),
                            "a share is between 0 and 1 (0.25 for 25 %)",
                        );
                    }
                    v.push((name.clone(), s));
                }
                let total: f64 = v.iter().map(|(_, s)| s).sum();
                if (total - 1.0).abs() > 1e-9 {
                    self.err_unlocated(
                        "evaluation.class_shares",
                        format!("the shares add up to {total}, not 1"),
                    );
                }
                e.classes = ClassRule::Shares(v);
            }
            (None, Some(th)) => {
                let mut v: Vec<(String, f64)> =
                    th.iter().map(|(n, s)| (n.clone(), *s.get_ref())).collect();
                // Best class first: the highest threshold.
                v.sort_by(|a, b| b.1.total_cmp(&a.1));
                e.classes = ClassRule::Thresholds(v);
            }
            (None, None) => {}
        }
        if let Some(list) = &raw.downgrades {
            let names: Vec<String> = e.classes.names().iter().map(|s| s.to_string()).collect();
            let mut rules = Vec::new();
            for (i, d) in list.iter().enumerate() {
                let key = format!("evaluation.downgrades[{i}]");
                let mut when = Vec::new();
                for c in d.when.get_ref() {
                    match Condition::parse(c) {
                        Some(c) => when.push(c),
                        None => self.err(
                            &d.when,
                            format!("{key}.when"),
                            format!(
                                "unknown condition `{c}`; one of: {}",
                                Condition::ALL.map(|c| c.id()).join(", ")
                            ),
                        ),
                    }
                }
                if !names.contains(d.max_class.get_ref()) {
                    self.err(
                        &d.max_class,
                        format!("{key}.max_class"),
                        format!("unknown class; the classes are {}", names.join(", ")),
                    );
                }
                rules.push(Downgrade {
                    when,
                    max_class: d.max_class.get_ref().clone(),
                });
            }
            e.downgrades = rules;
        }
        e
    }

    pub(super) fn commitments(&mut self, raw: &RawCommitments, key: &str) -> Commitments {
        Commitments {
            tax_per_mu_10k_cny: self.non_negative(
                &raw.tax_per_mu_10k_cny,
                &format!("{key}.tax_per_mu_10k_cny"),
            ),
            value_added_per_tce_10k_cny: self.non_negative(
                &raw.value_added_per_tce_10k_cny,
                &format!("{key}.value_added_per_tce_10k_cny"),
            ),
            energy_per_value_added_tce_per_10k_cny: self.non_negative(
                &raw.energy_per_value_added_tce_per_10k_cny,
                &format!("{key}.energy_per_value_added_tce_per_10k_cny"),
            ),
            co2_t: self.non_negative(&raw.co2_t, &format!("{key}.co2_t")),
        }
    }
}
