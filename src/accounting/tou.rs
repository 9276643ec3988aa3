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

/// Money to a millionth of a yuan: the products of kWh and prices are not exact in binary
/// (12 kWh x 0.3 CNY is 3.5999999999999996), and a bill is in fen.
fn cny(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Whether a meter's tariff register and the band energy computed from its total disagree:
/// by more than 1 % of the larger, and more than 0.1 kWh (a register holds hundredths, and a
/// period's edges fall between readings). A meter whose own time-period table differs from the
/// configured calendar (an old calendar never reprogrammed) shows here.
pub fn registers_differ(register_kwh: Option<f64>, computed_kwh: Option<f64>) -> bool {
    match (register_kwh, computed_kwh) {
        (Some(r), Some(c)) => {
            let d = (r - c).abs();
            d > 0.1 && d > 0.01 * r.abs().max(c.abs())
        }
        _ => false,
    }
}

/// The bands' costs added up, CNY.
pub fn total_cny(parts: &[f64; 4]) -> f64 {
    cny(parts.iter().sum())
}

/// Cost per band, CNY (`None` without prices).
pub fn cost_cny(tariff: &Tariff, energy: &BandMicro) -> Option<[f64; 4]> {
    let p = tariff.prices_cny_per_kwh?;
    Some(Band::ALL.map(|b| cny(energy.kwh(b) * p[b.index()])))
}

/// What the sharp and peak energy would have cost less in the valley, CNY: the ceiling of a
/// load shift (storage, night shifts), not a forecast.
pub fn shift_potential_cny(tariff: &Tariff, energy: &BandMicro) -> Option<f64> {
    let p = tariff.prices_cny_per_kwh?;
    let valley = p[Band::Valley.index()];
    Some(cny([Band::Sharp, Band::Peak]
        .iter()
        .map(|b| energy.kwh(*b) * (p[b.index()] - valley).max(0.0))
        .sum()))
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

/// The highest 15-minute average power over a window sliding in steps of `slide_min` minutes,
/// from minute energies `(minute start, micro-kWh)` in time order (missing minutes hold
/// nothing): kW, and the start of the 15 minutes. The windows start on multiples of
/// `slide_min` minutes.
pub fn max_sliding_demand(minutes: &[(i64, i64)], slide_min: u32) -> Option<(f64, i64)> {
    let step = i64::from(slide_min.max(1)) * 60_000;
    let (first, last) = (minutes.first()?.0, minutes.last()?.0);
    let mut best: Option<(i64, i64)> = None;
    // Every window that holds a minute starts within the 14 minutes before it.
    let mut start = (first - 14 * 60_000).div_euclid(step) * step;
    let mut lo = 0;
    while start <= last {
        while lo < minutes.len() && minutes[lo].0 < start {
            lo += 1;
        }
        let micro: i64 = minutes[lo..]
            .iter()
            .take_while(|(t, _)| *t < start + 15 * 60_000)
            .map(|(_, m)| *m)
            .sum();
        if micro > 0 && best.is_none_or(|(b, _)| micro > b) {
            best = Some((micro, start));
        }
        start += step;
    }
    best.map(|(micro, at)| (micro as f64 / 1e6 * 4.0, at))
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

    /// Fifteen minutes of 0.8 kWh each (12 kWh) from 17:07 to 17:22 straddle two quarter hours:
    /// fixed blocks see 8 and 7 of its minutes (6.4 and 5.6 kWh: 25.6 kW at most); a window
    /// sliding by a minute finds all 15 (12 kWh x 4 = 48 kW, starting 17:07).
    #[test]
    fn a_sliding_window_finds_the_peak_fixed_quarters_split() {
        let base = 1_767_000_000_000 / 900_000 * 900_000;
        let minutes: Vec<(i64, i64)> = (7..22).map(|m| (base + m * 60_000, 800_000)).collect();
        let (kw, at) = max_sliding_demand(&minutes, 1).unwrap();
        assert!((kw - 48.0).abs() < 1e-9, "{kw}");
        assert_eq!(at, base + 7 * 60_000);
        let quarters = [(base, 8 * 800_000), (base + 900_000, 7 * 800_000)];
        assert_eq!(max_demand(&quarters), Some((25.6, base)));
        // Sliding by 5 minutes: windows start at :05 (13 of the minutes, 10.4 kWh, 41.6 kW)
        // or :10 (12 minutes, 9.6 kWh).
        let (kw5, at5) = max_sliding_demand(&minutes, 5).unwrap();
        assert!((kw5 - 41.6).abs() < 1e-9, "{kw5}");
        assert_eq!(at5, base + 5 * 60_000);
        assert_eq!(max_sliding_demand(&[], 1), None);
    }
}
