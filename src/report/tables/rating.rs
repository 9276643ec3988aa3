//! The evaluation's tables and charts (亩均效益评价): ranking, classes, flags and indicators per
//! firm, in both languages.

use super::*;

/// The evaluation: ranking, benchmarks, flags with their figures, commitment shortfalls.
pub fn evaluation_tables(cfg: &Config, ev: &Evaluation, lang: Lang) -> Vec<Table> {
    let indicators: Vec<Indicator> = cfg
        .evaluation
        .indicators
        .iter()
        .map(|r| r.indicator)
        .collect();
    let mut cols = vec![
        col("rank", "Rank", "排名", 0),
        col("firm_id", "Firm id", "企业编号", 0),
        col("firm_name", "Firm", "企业名称", 0),
        col("land_mu", "Land (mu)", "用地面积(亩)", 2),
        col(
            "energy_tce",
            "Comprehensive energy (tce/year)",
            "综合能耗(吨标准煤/年)",
            2,
        ),
        col(
            "co2_t",
            "CO2 emissions (t/year)",
            "二氧化碳排放量(吨/年)",
            2,
        ),
    ];
    cols.extend(indicators.iter().map(|i| indicator_col(*i)));
    cols.extend([
        col("score", "Score", "综合得分", 2),
        col("class", "Class", "评价等级", 0),
        col(
            "class_before_downgrade",
            "Class before downgrade",
            "降档前等级",
            0,
        ),
        col("flag_ids", "Flag ids", "标记编号", 0),
        col("flags", "Flags", "标记", 0),
        col("unrated_ids", "Unrated (reason ids)", "未参评原因编号", 0),
        col("unrated", "Unrated (reason)", "未参评(原因)", 0),
        col("statistics_source", "Statistics from", "统计数据来源", 0),
    ]);
    let mut order: Vec<usize> = (0..ev.firms.len()).collect();
    order.sort_by_key(|&i| (ev.firms[i].rank.unwrap_or(usize::MAX), i));
    let name = |id: &str| {
        cfg.firms
            .iter()
            .find(|f| f.id == id)
            .map_or("", |f| f.name.as_str())
    };
    let rows = order
        .iter()
        .map(|&i| {
            let f = &ev.firms[i];
            let mut r: Vec<Cell> = vec![
                f.rank.map(|r| r as f64).into(),
                f.firm.as_str().into(),
                name(&f.firm).into(),
                f.input.land_mu.into(),
                f.energy_tce.into(),
                f.co2_t.into(),
            ];
            r.extend(indicators.iter().map(|ind| {
                Cell::from(
                    f.indicators
                        .iter()
                        .find(|x| x.indicator == ind.id())
                        .and_then(|x| x.value),
                )
            }));
            let mut flags: Vec<String> = f.flags.iter().map(|x| x.condition.to_string()).collect();
            if !f.shortfalls.is_empty() {
                flags.push("commitment_shortfall".into());
            }
            r.extend([
                f.score.into(),
                f.class.clone().map_or(Cell::Empty, Cell::Text),
                f.class_before_downgrade
                    .clone()
                    .map_or(Cell::Empty, Cell::Text),
                ids(flags.iter().map(String::as_str)),
                flags_text(lang, &flags),
                ids(f.unrated.iter().map(|u| unrated_id(u))),
                if f.unrated.is_empty() {
                    Cell::Empty
                } else {
                    Cell::Text(
                        f.unrated
                            .iter()
                            .map(|u| unrated_reason(lang, u, cfg.evaluation.min_land_mu))
                            .collect::<Vec<_>>()
                            .join(lang.pick("; ", "；")),
                    )
                },
                f.input.stats_source.as_str().into(),
            ]);
            r
        })
        .collect();
    let title = |en: &str, zh: &str| {
        let (p_en, p_zh) = if ev.provisional {
            (" (provisional, year to date)", "(预评,年初至今)")
        } else {
            ("", "")
        };
        (
            format!("{en} {}{p_en}", ev.year),
            format!("{}年{zh}{p_zh}", ev.year),
        )
    };
    let (en, zh) = title("Per-mu evaluation", "亩均效益综合评价");
    let mut tables = vec![Table {
        id: "evaluation",
        en,
        zh,
        cols,
        rows,
    }];
    // Every indicator of every firm: value, benchmark, weight and score, by stable id.
    let score_rows = order
        .iter()
        .flat_map(|&i| {
            let f = &ev.firms[i];
            indicators.iter().filter_map(move |ind| {
                let r = f.indicators.iter().find(|x| x.indicator == ind.id())?;
                let c = indicator_col(*ind);
                Some(vec![
                    f.rank.map(|r| r as f64).into(),
                    f.firm.as_str().into(),
                    c.key.into(),
                    lang.pick(c.en, c.zh).into(),
                    r.value.into(),
                    r.benchmark.into(),
                    r.weight.into(),
                    r.score.into(),
                ])
            })
        })
        .collect();
    tables.push(Table {
        id: "indicator_scores",
        en: "Indicator scores".into(),
        zh: "分项指标得分".into(),
        cols: vec![
            col("rank", "Rank", "排名", 0),
            col("firm_id", "Firm id", "企业编号", 0),
            col("indicator", "Indicator id", "指标编号", 0),
            col("indicator_name", "Indicator", "指标", 0),
            col("value", "Value", "指标值", 3),
            col("benchmark", "Benchmark", "基准值", 3),
            col("weight", "Weight", "权重", 2),
            col("score", "Score", "得分", 2),
        ],
        rows: score_rows,
    });
    tables.push(Table {
        id: "benchmarks",
        en: "Indicators, weights and benchmarks".into(),
        zh: "评价指标、权重与基准值".into(),
        cols: vec![
            col("indicator", "Indicator id", "指标编号", 0),
            col("indicator_name", "Indicator", "指标", 0),
            col("weight", "Weight", "权重", 2),
            col("benchmark", "Benchmark", "基准值", 4),
        ],
        rows: cfg
            .evaluation
            .indicators
            .iter()
            .zip(&ev.benchmarks)
            .map(|(r, (_, b))| {
                let c = indicator_col(r.indicator);
                vec![
                    c.key.into(),
                    lang.pick(c.en, c.zh).into(),
                    r.weight.into(),
                    (*b).into(),
                ]
            })
            .collect(),
    });
    let flag_rows: Vec<Vec<Cell>> = ev
        .firms
        .iter()
        .flat_map(|f| {
            f.flags.iter().map(move |fl| {
                vec![
                    f.firm.as_str().into(),
                    fl.condition.into(),
                    flag_name(lang, fl.condition).into(),
                    lang.pick(&fl.detail, &fl.detail_zh).into(),
                ]
            })
        })
        .collect();
    tables.push(Table {
        id: "flags",
        en: "Flags and their figures".into(),
        zh: "标记及依据".into(),
        cols: vec![
            col("firm_id", "Firm id", "企业编号", 0),
            col("flag", "Flag id", "标记编号", 0),
            col("flag_name", "Flag", "标记", 0),
            col("detail", "Figures", "依据", 0),
        ],
        rows: flag_rows,
    });
    let item = |i: &str| match i {
        "tax_per_mu_10k_cny" => lang.pick(
            "tax per mu (10,000 CNY/mu, at least)",
            "亩均税收(万元/亩,不低于)",
        ),
        "value_added_per_tce_10k_cny" => lang.pick(
            "value added per tce (10,000 CNY/tce, at least)",
            "单位能耗增加值(万元/吨标准煤,不低于)",
        ),
        "energy_per_value_added_tce_per_10k_cny" => lang.pick(
            "energy per value added (tce/10,000 CNY, at most)",
            "单位增加值能耗(吨标准煤/万元,不高于)",
        ),
        "co2_t" => lang.pick("CO2 emissions (t, at most)", "二氧化碳排放量(吨,不高于)"),
        _ => "?",
    };
    tables.push(Table {
        id: "commitments",
        en: "Standard-land commitments not met".into(),
        zh: "标准地承诺指标未达标情况".into(),
        cols: vec![
            col("firm_id", "Firm id", "企业编号", 0),
            col("item", "Commitment id", "承诺指标编号", 0),
            col("item_name", "Commitment", "承诺指标", 0),
            col("committed", "Committed", "承诺值", 3),
            col("actual", "Actual", "实际值", 3),
        ],
        rows: ev
            .firms
            .iter()
            .flat_map(|f| {
                f.shortfalls.iter().map(move |s| {
                    vec![
                        f.firm.as_str().into(),
                        s.item.into(),
                        item(s.item).into(),
                        s.committed.into(),
                        s.actual.into(),
                    ]
                })
            })
            .collect(),
    });
    tables
}

pub fn evaluation_charts(cfg: &Config, ev: &Evaluation) -> Vec<Chart> {
    let mut rated: Vec<&crate::evaluation::FirmEvaluation> =
        ev.firms.iter().filter(|f| f.score.is_some()).collect();
    rated.sort_by_key(|f| f.rank);
    let classes = cfg.evaluation.classes.names();
    vec![
        Chart {
            id: "ranking",
            en: format!("Ranking by score, {}", ev.year),
            zh: format!("{}年综合得分排名", ev.year),
            labels: rated
                .iter()
                .map(|f| format!("{} ({})", f.firm, f.class.as_deref().unwrap_or("")))
                .collect(),
            series: vec![(
                "Score".into(),
                "综合得分".into(),
                rated.iter().filter_map(|f| f.score).collect(),
            )],
        },
        Chart {
            id: "classes",
            en: "Firms by class".into(),
            zh: "评价等级分布".into(),
            labels: classes.iter().map(|c| c.to_string()).collect(),
            series: vec![(
                "Firms".into(),
                "企业数".into(),
                classes
                    .iter()
                    .map(|c| {
                        ev.firms
                            .iter()
                            .filter(|f| f.class.as_deref() == Some(*c))
                            .count() as f64
                    })
                    .collect(),
            )],
        },
    ]
}

/// The evaluation report of `ecogate evaluate`.
pub fn evaluation_report(cfg: &Config, ev: &Evaluation, lang: Lang) -> Document {
    Document {
        en: format!("{}: per-mu evaluation {}", cfg.park.name, ev.year),
        zh: format!("{} {}年亩均效益综合评价", cfg.park.name, ev.year),
        notes: vec![evaluation_note(ev)],
        tables: evaluation_tables(cfg, ev, lang),
        charts: evaluation_charts(cfg, ev),
    }
}

/// Stable ids, `;`-separated, for programs (their words are in the column beside).
fn ids<'a>(ids: impl Iterator<Item = &'a str>) -> Cell {
    let joined = ids.collect::<Vec<_>>().join(";");
    if joined.is_empty() {
        Cell::Empty
    } else {
        Cell::Text(joined)
    }
}

/// An unrated reason's id: `land_below_minimum`, or `missing_<field>` for a statistic not given.
fn unrated_id(code: &str) -> &str {
    match code {
        crate::evaluation::LAND_BELOW_MINIMUM => code,
        "tax_cny" => "missing_tax_cny",
        "revenue_cny" => "missing_revenue_cny",
        "value_added_cny" => "missing_value_added_cny",
        "employees" => "missing_employees",
        "rd_spend_cny" => "missing_rd_spend_cny",
        "pollutant_t" => "missing_pollutant_t",
        other => other,
    }
}
