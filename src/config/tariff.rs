//! The time-of-use tariff (分时电价): which band (尖峰/高峰/平段/低谷) each quarter hour of each
//! month falls in, the price of each band, and the demand charge of a two-part tariff (两部制).
//! Configuration vocabulary, validated here; the arithmetic is `accounting/tou.rs`.
//!
//! ```toml
//! [tariff]
//! name = "河南工商业分时电价"
//! source = "豫发改价管〔2024〕283号"
//! prices_cny_per_kwh = { sharp = 1.02, peak = 0.85, flat = 0.55, valley = 0.25 }
//! [[tariff.seasons]]
//! months = [1, 12]
//! sharp = ["17:00-19:00"]          # inside the peak: the sharp band wins where they overlap
//! peak = ["16:00-24:00"]
//! valley = ["00:00-07:00"]         # every other quarter hour is flat
//! [tariff.demand]
//! contract_kw = 800                # the contracted maximum demand (or transformer kVA x PF)
//! charge_cny_per_kw_month = 36.1
//! ```

/// A value with where it stands in the file (as in `raw.rs`).
type S<T> = toml::Spanned<T>;
use super::Validator;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A time-of-use band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Band {
    Sharp,
    Peak,
    Flat,
    Valley,
}

impl Band {
    pub const ALL: [Band; 4] = [Band::Sharp, Band::Peak, Band::Flat, Band::Valley];

    pub fn name(self) -> &'static str {
        match self {
            Band::Sharp => "sharp",
            Band::Peak => "peak",
            Band::Flat => "flat",
            Band::Valley => "valley",
        }
    }

    pub fn zh(self) -> &'static str {
        match self {
            Band::Sharp => "尖峰",
            Band::Peak => "高峰",
            Band::Flat => "平段",
            Band::Valley => "低谷",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTariff {
    pub name: Option<S<String>>,
    pub source: Option<S<String>>,
    pub prices_cny_per_kwh: Option<BTreeMap<String, S<f64>>>,
    #[serde(default)]
    pub seasons: Vec<RawSeason>,
    pub demand: Option<RawDemand>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSeason {
    pub months: S<Vec<u32>>,
    #[serde(default)]
    pub sharp: Vec<S<String>>,
    #[serde(default)]
    pub peak: Vec<S<String>>,
    #[serde(default)]
    pub valley: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDemand {
    pub contract_kw: Option<S<f64>>,
    pub charge_cny_per_kw_month: Option<S<f64>>,
    /// The demand period's step in minutes (滑差时间): 15 for fixed quarter hours (the default),
    /// 1, 3 or 5 for a sliding 15-minute window as meters measure it.
    pub slide_min: Option<S<u32>>,
}

/// Quarter hours in a day.
pub const QUARTERS: usize = 96;

/// The validated tariff.
#[derive(Debug, Clone, PartialEq)]
pub struct Tariff {
    pub name: String,
    pub source: String,
    /// `bands[month - 1][quarter of the day]`.
    pub bands: Vec<[Band; QUARTERS]>,
    /// CNY per kWh by band (index: [`Band::index`]); `None` when prices are not given.
    pub prices_cny_per_kwh: Option<[f64; 4]>,
    pub demand: Option<Demand>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    pub contract_kw: Option<f64>,
    pub charge_cny_per_kw_month: Option<f64>,
    pub slide_min: u32,
}

impl Tariff {
    /// The band of local month `month` (1-12) at `minute` of the day.
    pub fn band(&self, month: u32, minute: u32) -> Band {
        self.bands[(month.clamp(1, 12) - 1) as usize][(minute / 15).min(95) as usize]
    }
}

/// "HH:MM-HH:MM" on quarter hours, end after start (24:00 allowed) -> quarter indices.
fn range(text: &str) -> Result<std::ops::Range<usize>, String> {
    let bad = || format!("`{text}`: give HH:MM-HH:MM on quarter hours, e.g. 16:00-24:00");
    let (a, b) = text.trim().split_once('-').ok_or_else(bad)?;
    let q = |t: &str| -> Result<usize, String> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let h: usize = h.parse().map_err(|_| bad())?;
        let m: usize = m.parse().map_err(|_| bad())?;
        if h > 24 || m >= 60 || (h == 24 && m != 0) || !m.is_multiple_of(15) {
            return Err(bad());
        }
        Ok(h * 4 + m / 15)
    };
    let (from, to) = (q(a)?, q(b)?);
    if from >= to {
        return Err(format!("`{text}`: the end must come after the start (a range over midnight is two: 22:00-24:00 and 00:00-06:00)"));
    }
    Ok(from..to)
}

impl Validator<'_> {
    pub(super) fn tariff(&mut self, raw: Option<&RawTariff>) -> Option<Tariff> {
        let raw = raw?;
        let mut bands: Vec<Option<[Band; QUARTERS]>> = vec![None; 12];
        for (i, s) in raw.seasons.iter().enumerate() {
            let key = format!("tariff.seasons[{i}]");
            let mut day = [Band::Flat; QUARTERS];
            let mut taken = [None::<Band>; QUARTERS];
            // Sharp first: it lies inside a peak range, and wins there.
            for (band, ranges) in [
                (Band::Sharp, &s.sharp),
                (Band::Peak, &s.peak),
                (Band::Valley, &s.valley),
            ] {
                for r in ranges {
                    match range(r.get_ref()) {
                        Err(e) => self.err(r, format!("{key}.{}", band.name()), e),
                        Ok(q) => {
                            for x in q {
                                match taken[x] {
                                    None => {
                                        taken[x] = Some(band);
                                        day[x] = band;
                                    }
                                    Some(Band::Sharp) if band == Band::Peak => {}
                                    Some(other) => {
                                        self.err(
                                            r,
                                            format!("{key}.{}", band.name()),
                                            format!(
                                                "{} overlaps the {} band at {:02}:{:02}",
                                                r.get_ref(),
                                                other.name(),
                                                x / 4,
                                                x % 4 * 15
                                            ),
                                        );
                                        break;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            for m in s.months.get_ref() {
                if !(1..=12).contains(m) {
                    self.err(
                        &s.months,
                        format!("{key}.months"),
                        format!("{m} is not a month (1-12)"),
                    );
                    continue;
                }
                if bands[*m as usize - 1].is_some() {
                    self.err(
                        &s.months,
                        format!("{key}.months"),
                        format!("month {m} is in two seasons"),
                    );
                }
                bands[*m as usize - 1] = Some(day);
            }
        }
        let missing: Vec<String> = (1..=12)
            .filter(|m| bands[*m - 1].is_none())
            .map(|m| m.to_string())
            .collect();
        if !missing.is_empty() {
            self.err_unlocated(
                "tariff.seasons",
                format!("months {} are in no season: every month needs its bands (a month without sharp, peak or valley ranges is all flat)", missing.join(", ")),
            );
        }
        let prices = raw.prices_cny_per_kwh.as_ref().map(|p| {
            let mut out = [0.0; 4];
            for b in Band::ALL {
                match p.get(b.name()) {
                    Some(v) if *v.get_ref() >= 0.0 && v.get_ref().is_finite() => {
                        out[b.index()] = *v.get_ref()
                    }
                    Some(v) => self.err(
                        v,
                        format!("tariff.prices_cny_per_kwh.{}", b.name()),
                        "a price is a number >= 0",
                    ),
                    None => self.err_unlocated(
                        "tariff.prices_cny_per_kwh",
                        format!(
                            "give the {} price too (sharp, peak, flat, valley)",
                            b.name()
                        ),
                    ),
                }
            }
            for k in p.keys() {
                if !Band::ALL.iter().any(|b| b.name() == k) {
                    self.err(
                        &p[k],
                        format!("tariff.prices_cny_per_kwh.{k}"),
                        format!("unknown band `{k}`: sharp, peak, flat or valley"),
                    );
                }
            }
            out
        });
        let demand = raw.demand.as_ref().map(|d| {
            let slide_min = d.slide_min.as_ref().map_or(15, |s| *s.get_ref());
            if let Some(s) = &d.slide_min {
                if ![1, 3, 5, 15].contains(s.get_ref()) {
                    self.err(
                        s,
                        "tariff.demand.slide_min",
                        "1, 3, 5 (a sliding 15-minute window) or 15 (fixed quarter hours)",
                    );
                }
            }
            Demand {
                contract_kw: self.non_negative(&d.contract_kw, "tariff.demand.contract_kw"),
                charge_cny_per_kw_month: self.non_negative(
                    &d.charge_cny_per_kw_month,
                    "tariff.demand.charge_cny_per_kw_month",
                ),
                slide_min,
            }
        });
        Some(Tariff {
            name: raw
                .name
                .as_ref()
                .map_or("time-of-use tariff".into(), |n| n.get_ref().clone()),
            source: raw
                .source
                .as_ref()
                .map_or(String::new(), |n| n.get_ref().clone()),
            bands: bands
                .into_iter()
                .map(|b| b.unwrap_or([Band::Flat; QUARTERS]))
                .collect(),
            prices_cny_per_kwh: prices,
            demand,
        })
    }
}
