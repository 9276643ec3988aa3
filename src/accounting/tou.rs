//! Time-of-use arithmetic, pure: quarter-hour energies into the tariff's bands, their cost, the
//! saving if peak energy moved to the valley, and the maximum 15-minute demand.
//!
//! Energy per band is exact because band boundaries lie on quarter hours (the tariff's
//! validation holds them there) and the quarter-hour windows already hold each interval's
//! energy split pro rata at their boundaries (docs/accounting.md): every quarter hour lies in one
//! band, and a band's energy is the sum of its quarter hours', in micro-kWh.

use crate::config::tariff::{Band, Tariff};
use chrono::{Datelike, TimeZone, Timelike};
use chrono_tz::Tz;

/// Energy per band, micro-kWh, indexed by [`Band::index`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BandMicro(pub [i64; 4]);

impl BandMicro {
    pub fn kwh(&self, band: Band) -> f64 {
        self.0[band.index()] as f64 / 1e6
    }

    pub fn total_kwh(&self) -> f64 {
        self.0.iter().sum::<i64>() as f64 / 1e6
    }
}

/// The band a quarter hour starting at `start_ms` falls in.
pub fn band_of(tariff: &Tariff, tz: Tz, start_ms: i64) -> Band {
    let local = tz
        .timestamp_millis_opt(start_ms)
        .earliest()
        .unwrap_or_else(|| tz.timestamp_millis_opt(0).unwrap());
    tariff.band(local.month(), local.hour() * 60 + local.minute())
}

/// Sums quarter-hour energies `(window start, micro-kWh)` into bands.
pub fn by_band(tariff: &Tariff, tz: Tz, quarters: &[(i64, i64)]) -> BandMicro {
    let mut out = BandMicro::default();
    for (start, micro) in quarters {
        let b = band_of(tariff, tz, *start);
        out.0[b.index()] = out.0[b.index()].saturating_add(*micro);
    }
    out
}

/// Cost per band, CNY (`None` without prices).
pub fn cost_cny(tariff: &Tariff, energy: &BandMicro) -> Option<[f64; 4]> {
    let p = tariff.prices_cny_per_kwh?;
    Some(Band::ALL.map(|b| energy.kwh(b) * p[b.index()]))
}

/// What the sharp and peak energy would have cost less in the valley, CNY: the ceiling of a
/// load shift (storage, night shifts), not a forecast.
pub fn shift_potential_cny(tariff: &Tariff, energy: &BandMicro) -> Option<f64> {
    let p = tariff.prices_cny_per_kwh?;
    let valley = p[Band::Valley.index()];
    Some(
        [Band::Sharp, Band::Peak]
            .iter()
            .map(|b| energy.kwh(*b) * (p[b.index()] - valley).max(0.0))
            .sum(),
    )
}

/// The highest 15-minute average power, kW, and the start of its quarter hour: a quarter hour's
/// kWh times 4. `None` without energy.
pub fn max_demand(quarters: &[(i64, i64)]) -> Option<(f64, i64)> {
    quarters
        .iter()
        .filter(|(_, micro)| *micro > 0)
        .max_by_key(|(start, micro)| (*micro, std::cmp::Reverse(*start)))
        .map(|(start, micro)| (*micro as f64 / 1e6 * 4.0, *start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tariff::QUARTERS;

    /// Henan's 2024 calendar for January (豫发改价管〔2024〕283号): valley 00:00-07:00, peak
    /// 16:00-24:00 with sharp 17:00-19:00 inside it, the rest flat.
    fn january() -> Tariff {
        let mut day = [Band::Flat; QUARTERS];
        for (q, b) in day.iter_mut().enumerate() {
            *b = match q {
                0..=27 => Band::Valley,
                68..=75 => Band::Sharp,
                64..=95 => Band::Peak,
                _ => Band::Flat,
            };
        }
        Tariff {
            name: "t".into(),
            source: String::new(),
            bands: vec![day; 12],
            prices_cny_per_kwh: Some([1.2, 1.0, 0.6, 0.3]),
            demand: None,
        }
    }

    /// A flat 10 kW for a whole local day: 2.5 kWh a quarter hour. Valley 7 h = 70 kWh, sharp
    /// 2 h = 20, peak 8 - 2 = 6 h = 60, flat 24 - 7 - 8 = 9 h = 90; 240 in all. Cost is
    /// 20 x 1.2 plus 60 x 1.0 plus 90 x 0.6 plus 70 x 0.3 = 24 + 60 + 54 + 21 = 159 CNY; the
    /// shift potential 20 x (1.2 - 0.3) plus 60 x (1.0 - 0.3) = 18 + 42 = 60 CNY.
    #[test]
    fn a_flat_day_in_january_splits_as_the_calendar_says() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let t = january();
        let midnight = tz
            .with_ymd_and_hms(2026, 1, 15, 0, 0, 0)
            .unwrap()
            .timestamp_millis();
        let quarters: Vec<(i64, i64)> = (0..96)
            .map(|q| (midnight + q * 900_000, 2_500_000))
            .collect();
        let e = by_band(&t, tz, &quarters);
        assert_eq!(e.0, [20_000_000, 60_000_000, 90_000_000, 70_000_000]);
        assert_eq!(e.total_kwh(), 240.0);
        let c = cost_cny(&t, &e).unwrap();
        assert!((c.iter().sum::<f64>() - 159.0).abs() < 1e-9, "{c:?}");
        assert!((shift_potential_cny(&t, &e).unwrap() - 60.0).abs() < 1e-9);
        // One heavier quarter hour, 17:30-17:45 at 5 kWh: 20 kW of demand, the month's highest.
        let mut q2 = quarters.clone();
        q2[70].1 = 5_000_000;
        assert_eq!(max_demand(&q2), Some((20.0, midnight + 70 * 900_000)));
        // Ties: the first quarter hour with the highest energy.
        assert_eq!(max_demand(&quarters), Some((10.0, midnight)));
        assert_eq!(max_demand(&[]), None);
    }
}
