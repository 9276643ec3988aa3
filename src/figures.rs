//! The one reader of stored figures: period totals of a firm, site or park over local windows,
//! and the indicators derived from them. `/metrics`, in-daemon alerting and the reports all
//! read through here, so they cannot disagree on what "the last 24 hours", "this year" or a
//! firm's carbon intensity is.

use crate::accounting::indicators::{self, Indicators, Owner, Period};
use crate::accounting::ledger::Entity;
use crate::accounting::metric::Sums;
use crate::accounting::window::{year_progress, LocalTime, WindowKind};
use crate::config::Config;
use crate::sinks::store::{Store, StoreError};

const HOUR_MS: i64 = 3_600_000;

/// The indicators of an entity's sums over `period`: a firm's land and statistics are used
/// (its annual output stands in only when it has no production counter), a site or the park
/// has none. The one place where sums become ratios.
pub fn derive(config: &Config, entity: Entity, sums: &Sums, period: Period) -> Indicators {
    let owner = match entity {
        Entity::Firm(i) => config.firms.get(i as usize).map(|f| Owner {
            land_mu: f.land_mu,
            stats: &f.stats,
            has_production_counters: config.firm_has_production_counters(i as usize),
        }),
        _ => None,
    };
    let residual = config
        .factors
        .co2_per_base("grid_market_residual")
        .unwrap_or(0.0);
    indicators::derive(sums, period, owner, residual)
}

/// As [`derive`] for a firm, with a year's statistics in place of the configured ones (an
/// import of the tax bureau's figures).
pub fn derive_firm_with(
    config: &Config,
    firm: usize,
    stats: &crate::config::FirmStats,
    sums: &Sums,
    period: Period,
) -> Indicators {
    let residual = config
        .factors
        .co2_per_base("grid_market_residual")
        .unwrap_or(0.0);
    let owner = config.firms.get(firm).map(|f| Owner {
        land_mu: f.land_mu,
        stats,
        has_production_counters: config.firm_has_production_counters(firm),
    });
    indicators::derive(sums, period, owner, residual)
}

/// Sums and the period they cover.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub sums: Sums,
    pub period: Period,
}

/// Grid import by time-of-use band over a period, and its demand (see [`Figures::tou`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Tou {
    pub energy: crate::accounting::tou::BandMicro,
    /// CNY per band, indexed by `Band::index`; `None` without prices.
    pub cost_cny: Option<[f64; 4]>,
    pub shift_potential_cny: Option<f64>,
    /// The highest 15-minute average, kW, and the start of its 15 minutes.
    pub max_demand: Option<(f64, i64)>,
    /// The step the 15-minute window slid by to find it: 15 for fixed quarter hours.
    pub demand_slide_min: u32,
    pub contract_kw: Option<f64>,
    pub demand_charge_cny_per_kw_month: Option<f64>,
}

/// A meter's tariff register beside the band energy ecogate computed (see
/// [`Figures::tariff_registers`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub meter: String,
    pub channel: String,
    pub band: crate::config::tariff::Band,
    pub register_kwh: Option<f64>,
    pub computed_kwh: Option<f64>,
    /// The two disagree by more than the tolerance (`accounting::tou::registers_differ`).
    pub differs: bool,
}

impl Tou {
    /// The energy cost of all bands, CNY.
    pub fn energy_cost_cny(&self) -> Option<f64> {
        self.cost_cny
            .as_ref()
            .map(crate::accounting::tou::total_cny)
    }
}

/// Reads an entity's figures from a store.
pub struct Figures<'a> {
    pub store: &'a Store,
    pub config: &'a Config,
}

impl Figures<'_> {
    /// The last 24 hours: the 24 local hour windows ending with the one holding `now_ms`.
    pub fn last_24h(&self, entity: Entity, now_ms: i64) -> Result<Span, StoreError> {
        let tz = self.config.park.timezone;
        let hour_start =
            LocalTime::new(now_ms, tz).map_or(now_ms, |l| l.window_start_ms(WindowKind::Hour, tz));
        let sums = self.store.sums(
            self.config,
            WindowKind::Hour,
            entity,
            hour_start - 23 * HOUR_MS,
            hour_start + 1,
        )?;
        let year_days = year_progress(now_ms, tz).map_or(365.0, |(len, _)| len);
        Ok(Span {
            sums,
            period: Period {
                days: 1.0,
                year_days,
                whole_year_holdings: false,
            },
        })
    }

    /// Since 1 January (local) up to `now_ms`; year-level holdings (certificates) count.
    pub fn year_to_date(&self, entity: Entity, now_ms: i64) -> Result<Span, StoreError> {
        let tz = self.config.park.timezone;
        let year_start =
            LocalTime::new(now_ms, tz).map_or(now_ms, |l| l.window_start_ms(WindowKind::Year, tz));
        let sums = self.store.sums(
            self.config,
            WindowKind::Year,
            entity,
            year_start,
            year_start + 1,
        )?;
        let (year_days, elapsed_days) = year_progress(now_ms, tz).unwrap_or((365.0, 1.0));
        Ok(Span {
            sums,
            period: Period {
                days: elapsed_days.max(1.0 / 24.0),
                year_days,
                whole_year_holdings: true,
            },
        })
    }

    /// Local days `[from_ms, to_ms)` (both local midnights), from the day windows.
    pub fn days(&self, entity: Entity, from_ms: i64, to_ms: i64) -> Result<Sums, StoreError> {
        self.store
            .sums(self.config, WindowKind::Day, entity, from_ms, to_ms)
    }

    /// Grid import per time-of-use band over `[from_ms, to_ms)` (quarter-hour aligned), with
    /// its cost, the peak-to-valley shift potential and the highest 15-minute demand; `None`
    /// without a `[tariff]`. Read from the quarter-hour windows: they are kept 800 days by
    /// default (`[store.retention] quarter_hour_days`), and a period older than that reads empty.
    pub fn tou(&self, entity: Entity, from_ms: i64, to_ms: i64) -> Result<Option<Tou>, StoreError> {
        use crate::accounting::metric::Metric;
        use crate::accounting::tou;
        let Some(tariff) = &self.config.tariff else {
            return Ok(None);
        };
        let rows =
            self.store
                .window_rows(self.config, WindowKind::QuarterHour, entity, from_ms, to_ms)?;
        let quarters: Vec<(i64, i64)> = rows
            .iter()
            .map(|(start, sums)| (*start, sums.micro(Metric::GridImportKwh)))
            .collect();
        let energy = tou::by_band(tariff, self.config.park.timezone, &quarters);
        let demand = tariff.demand;
        // A sliding window needs the minute windows, kept `minute_days`: older periods fall
        // back to fixed quarter hours, and say so.
        let slide = demand.map_or(15, |d| d.slide_min);
        let minutes_kept_from = chrono::Utc::now().timestamp_millis()
            - i64::from(self.config.store.retention.minute_days) * 86_400_000;
        let (max_demand, demand_slide_min) = if slide < 15 && from_ms >= minutes_kept_from {
            let minutes: Vec<(i64, i64)> = self
                .store
                .window_rows(self.config, WindowKind::Minute, entity, from_ms, to_ms)?
                .iter()
                .map(|(start, sums)| (*start, sums.micro(Metric::GridImportKwh)))
                .collect();
            (tou::max_sliding_demand(&minutes, slide), slide)
        } else {
            (tou::max_demand(&quarters), 15)
        };
        Ok(Some(Tou {
            cost_cny: tou::cost_cny(tariff, &energy),
            shift_potential_cny: tou::shift_potential_cny(tariff, &energy),
            energy,
            max_demand,
            demand_slide_min,
            contract_kw: demand.and_then(|d| d.contract_kw),
            demand_charge_cny_per_kw_month: demand.and_then(|d| d.charge_cny_per_kw_month),
        }))
    }

    /// A meter's own tariff registers against the band energy computed for it, over
    /// `[from_ms, to_ms)`: one entry per channel with a `tariff_band`. A register's energy is its
    /// last reading at or before `to_ms` less its last at or before `from_ms` (`None` without
    /// both).
    pub fn tariff_registers(
        &self,
        meter: usize,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Register>, StoreError> {
        let m = &self.config.meters[meter];
        let bands: Vec<_> = m
            .channels
            .iter()
            .filter_map(|c| c.tariff_band.map(|b| (c, b)))
            .collect();
        if bands.is_empty() {
            return Ok(Vec::new());
        }
        let computed = self.tou(Entity::Meter(meter as u32), from_ms, to_ms)?;
        let mut out = Vec::new();
        for (c, band) in bands {
            let start = self.store.reading_at_or_before(&m.id, &c.id, from_ms)?;
            let end = self.store.reading_at_or_before(&m.id, &c.id, to_ms)?;
            let register_kwh = match (start, end) {
                (Some((_, a)), Some((_, b))) => Some(b - a),
                _ => None,
            };
            let computed_kwh = computed.as_ref().map(|t| t.energy.kwh(band));
            out.push(Register {
                meter: m.id.clone(),
                channel: c.id.clone(),
                band,
                register_kwh,
                computed_kwh,
                differs: crate::accounting::tou::registers_differ(register_kwh, computed_kwh),
            });
        }
        Ok(out)
    }

    /// A local calendar month, from its month window (`month_start_ms`: its local midnight).
    pub fn month(&self, entity: Entity, month_start_ms: i64) -> Result<Sums, StoreError> {
        self.store.sums(
            self.config,
            WindowKind::Month,
            entity,
            month_start_ms,
            month_start_ms + 1,
        )
    }

    /// The indicators of a span of an entity.
    pub fn indicators(&self, entity: Entity, span: &Span) -> Indicators {
        derive(self.config, entity, &span.sums, span.period)
    }
}
