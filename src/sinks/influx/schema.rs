//! What ecogate writes to InfluxDB: two measurements, documented in docs/schema.md.
//!
//! - `ecogate_reading`: one point per accepted reading, tags `channel, firm, meter, park, site`,
//!   one field named for the quantity and its unit (`energy_kwh`, `power_kw`, …), at the reading's
//!   time.
//! - `ecogate_window`: one point per window and entity, tags `firm, level, meter, park, site,
//!   window` (those that apply to the level), at the window's start; fields are the window's
//!   running totals (every figure of `Metric`, by its unit-bearing name) and, for sites, firms and
//!   the park, the ratios derived from them. A window is written again whenever a commit changes
//!   it, with the same series and timestamp, so the last write is the window's total.
//!
//! Tags come only from the configuration (ids, the park's name, fixed window and level names), so
//! no input can add a series. Prefixes are escaped once, at start, which keeps the encoder to a
//! copy and a number format per line.

use super::line_protocol::{
    push_f64, push_field_key, push_i64, push_micro, push_string_value, push_tag,
};
use crate::accounting::indicators::{self, Owner, Period};
use crate::accounting::ledger::{Accepted, AggKey, Entity};
use crate::accounting::metric::{Metric, Sums};
use crate::accounting::window::{next_window_start_ms, WindowKind};
use crate::config::Config;
use crate::reading::Quality;
use crate::units::Dimension;
use chrono_tz::Tz;
use std::collections::HashMap;

pub const READING_MEASUREMENT: &str = "ecogate_reading";
pub const WINDOW_MEASUREMENT: &str = "ecogate_window";

/// The field name of a reading of `dimension`, in its base unit.
pub fn reading_field(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::Energy => "energy_kwh",
        Dimension::Power => "power_kw",
        Dimension::Volume => "volume_nm3",
        Dimension::VolumeFlow => "flow_nm3_per_h",
        Dimension::Mass => "mass_kg",
        Dimension::MassFlow => "flow_kg_per_h",
        Dimension::Heat => "heat_gj",
        Dimension::Count => "count",
        Dimension::Voltage => "voltage_v",
        Dimension::Current => "current_a",
        Dimension::Frequency => "frequency_hz",
        Dimension::Ratio => "ratio",
        Dimension::ReactiveEnergy => "reactive_energy_kvarh",
        Dimension::ReactivePower => "reactive_power_kvar",
        Dimension::ApparentPower => "apparent_power_kva",
    }
}

#[derive(Debug)]
pub struct Encoder {
    config: std::sync::Arc<Config>,
    tz: Tz,
    residual_kg_per_kwh: f64,
    /// `[meter][channel]` -> `ecogate_reading,tags field=`.
    readings: Vec<Vec<Box<[u8]>>>,
    /// `(entity, window)` -> `ecogate_window,tags ` (with the trailing space).
    windows: HashMap<(Entity, WindowKind), Box<[u8]>>,
    write_readings: bool,
}

fn tags(out: &mut Vec<u8>, pairs: &mut [(&str, &str)]) {
    // Sorted by key, as InfluxDB recommends for ingest speed.
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (k, v) in pairs.iter() {
        push_tag(out, k, v);
    }
}

impl Encoder {
    pub fn new(
        config: std::sync::Arc<Config>,
        windows: &[WindowKind],
        write_readings: bool,
    ) -> Encoder {
        let park = config.park.name.as_str();
        let mut readings = Vec::with_capacity(config.meters.len());
        for m in &config.meters {
            let site = &config.sites[m.site];
            let firm = &config.firms[site.firm];
            let mut per_channel = Vec::with_capacity(m.channels.len());
            for c in &m.channels {
                let mut out = READING_MEASUREMENT.as_bytes().to_vec();
                tags(
                    &mut out,
                    &mut [
                        ("channel", c.id.as_str()),
                        ("firm", firm.id.as_str()),
                        ("meter", m.id.as_str()),
                        ("park", park),
                        ("site", site.id.as_str()),
                    ],
                );
                out.push(b' ');
                push_field_key(&mut out, reading_field(c.unit.dimension));
                out.push(b'=');
                per_channel.push(out.into_boxed_slice());
            }
            readings.push(per_channel);
        }
        let mut entities: Vec<Entity> = vec![Entity::Park];
        entities.extend((0..config.firms.len() as u32).map(Entity::Firm));
        entities.extend((0..config.sites.len() as u32).map(Entity::Site));
        entities.extend((0..config.meters.len() as u32).map(Entity::Meter));
        let mut prefixes = HashMap::new();
        // Every shard of a split park has a park total of its own firms; the tag keeps the
        // shards' park series apart (the city sums them, docs/scale-out.md).
        let shard = config.sharding.index.map(|k| k.to_string());
        for &e in &entities {
            for &w in windows {
                let mut out = WINDOW_MEASUREMENT.as_bytes().to_vec();
                let mut pairs: Vec<(&str, &str)> =
                    vec![("park", park), ("level", e.level()), ("window", w.name())];
                match e {
                    Entity::Park => {
                        if let Some(k) = &shard {
                            pairs.push(("shard", k));
                        }
                    }
                    Entity::Firm(i) => pairs.push(("firm", &config.firms[i as usize].id)),
                    Entity::Site(i) => {
                        let s = &config.sites[i as usize];
                        pairs.push(("site", &s.id));
                        pairs.push(("firm", &config.firms[s.firm].id));
                    }
                    Entity::Meter(i) => {
                        let m = &config.meters[i as usize];
                        let s = &config.sites[m.site];
                        pairs.push(("meter", &m.id));
                        pairs.push(("site", &s.id));
                        pairs.push(("firm", &config.firms[s.firm].id));
                    }
                }
                tags(&mut out, &mut pairs);
                out.push(b' ');
                prefixes.insert((e, w), out.into_boxed_slice());
            }
        }
        let residual_kg_per_kwh = config
            .factors
            .co2_per_base("grid_market_residual")
            .unwrap_or(0.0);
        Encoder {
            tz: config.park.timezone,
            residual_kg_per_kwh,
            readings,
            windows: prefixes,
            write_readings,
            config,
        }
    }

    pub fn writes_readings(&self) -> bool {
        self.write_readings
    }

    pub fn writes_window(&self, key: &AggKey) -> bool {
        self.windows.contains_key(&(key.entity, key.window))
    }

    /// The oldest window start of `window` written for `entity` at `now_ms` (`None`: not
    /// written). An older window's earlier parts are gone from the store (or about to go): its
    /// total would be partial, and would overwrite the full figure already written.
    pub fn window_floor_ms(&self, entity: Entity, window: WindowKind, now_ms: i64) -> Option<i64> {
        self.windows
            .contains_key(&(entity, window))
            .then(|| self.config.store.retention.cutoff_ms(window, now_ms))
    }

    /// One `ecogate_reading` line (with its newline), timestamp in milliseconds.
    pub fn reading(&self, out: &mut Vec<u8>, a: &Accepted) {
        out.extend_from_slice(&self.readings[a.channel.meter as usize][a.channel.channel as usize]);
        push_f64(out, a.base_amount);
        if a.quality != Quality::Good {
            out.extend_from_slice(b",quality=");
            push_string_value(out, a.quality.as_str());
        }
        out.push(b' ');
        push_i64(out, a.ts_ms);
        out.push(b'\n');
    }

    /// One `ecogate_window` line for `key` with its running `total`; fields are the figures that
    /// are non-zero or that this batch's `delta` touched (so a figure back at zero is written as
    /// zero). Returns false, writing nothing, when the window is not written or has no fields.
    pub fn window(
        &self,
        out: &mut Vec<u8>,
        key: &AggKey,
        total: &Sums,
        delta: &Sums,
        now_ms: i64,
    ) -> bool {
        let Some(prefix) = self.windows.get(&(key.entity, key.window)) else {
            return false;
        };
        if self
            .window_floor_ms(key.entity, key.window, now_ms)
            .is_none_or(|floor| key.start_ms < floor)
        {
            return false;
        }
        let start = out.len();
        out.extend_from_slice(prefix);
        let fields_start = out.len();
        let field = |out: &mut Vec<u8>, name: &str| {
            if out.len() > fields_start {
                out.push(b',');
            }
            push_field_key(out, name);
            out.push(b'=');
        };
        for &m in Metric::ALL {
            let (t, d) = (total.micro(m), delta.micro(m));
            if t != 0 || d != 0 {
                field(out, m.name());
                push_micro(out, t);
            }
        }
        if out.len() == fields_start {
            out.truncate(start);
            return false;
        }
        if !matches!(key.entity, Entity::Meter(_)) {
            let owner = match key.entity {
                Entity::Firm(i) => {
                    let f = &self.config.firms[i as usize];
                    Some(Owner {
                        land_mu: f.land_mu,
                        stats: &f.stats,
                        has_production_counters: self
                            .config
                            .firm_has_production_counters(i as usize),
                    })
                }
                _ => None,
            };
            let period = self.period(key, now_ms);
            let d = indicators::derive(total, period, owner, self.residual_kg_per_kwh);
            let h = d.hydrogen.as_ref();
            let c = d.charging.as_ref();
            let derived = [
                ("co2_total_t", Some(d.co2_total_t)),
                ("co2_scope2_market_t", Some(d.co2_scope2_market_t)),
                ("output_per_mu_cny", d.output_per_mu_cny),
                (
                    "carbon_intensity_tco2_per_10k_cny",
                    d.carbon_intensity_tco2_per_10k_cny,
                ),
                (
                    "energy_intensity_tce_per_10k_cny",
                    d.energy_intensity_tce_per_10k_cny,
                ),
                ("green_share", d.green_share),
                ("hydrogen_kwh_per_kg", h.and_then(|h| h.kwh_per_kg)),
                ("hydrogen_kgco2e_per_kg", h.and_then(|h| h.kgco2_per_kg)),
                ("charging_green_share", c.and_then(|c| c.green_share)),
            ];
            for (name, v) in derived {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    field(out, name);
                    push_f64(out, v);
                }
            }
        }
        out.push(b' ');
        push_i64(out, key.start_ms);
        out.push(b'\n');
        true
    }

    /// The stretch a window's sums cover so far: from its start to now or its end.
    fn period(&self, key: &AggKey, now_ms: i64) -> Period {
        let end = next_window_start_ms(key.window, key.start_ms, self.tz);
        let day_ms = 86_400_000.0;
        let covered = (now_ms.min(end) - key.start_ms).max(60_000) as f64 / day_ms;
        let year_days = crate::accounting::window::year_progress(key.start_ms, self.tz)
            .map_or(365.0, |(len, _)| len);
        Period {
            days: covered,
            year_days,
            whole_year_holdings: key.window == WindowKind::Year,
        }
    }
}
