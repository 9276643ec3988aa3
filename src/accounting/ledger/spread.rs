//! How a reading's delta becomes parts: a gauge's trapezoids, the contributions per carrier,
//! and their attribution to the windows and entities they fall in (staged per slot).
use super::*;

impl Accountant {
    /// The trapezoid between two samples of an integrated gauge, as parts per carrier: a
    /// segment that crosses zero is cut where it does, its positive part to the channel's
    /// carrier and its negative part to the negative carrier.
    pub(super) fn gauge_parts(
        &self,
        info: &ChannelInfo,
        carrier: Carrier,
        from: Point,
        to: Point,
        parts: &mut Parts,
    ) {
        let (p0, p1) = (from.micro as f64, to.micro as f64);
        let energy =
            |a: f64, b: f64, ms: i64| ((a + b) / 2.0 * ms as f64 / 3_600_000.0).round() as i64;
        let mut push = |a: f64, b: f64, t0: i64, t1: i64| {
            if t1 <= t0 {
                return;
            }
            let (k, co2, tce, sign) = if a + b >= 0.0 {
                (carrier, info.co2_per_base, info.tce_per_base, 1.0)
            } else {
                match info.negative {
                    Some((k, co2, tce)) => (k, co2, tce, -1.0),
                    None => return,
                }
            };
            let (a, b) = (a * sign, b * sign);
            let d = energy(a, b, t1 - t0);
            if d != 0 {
                parts.push((d, t0, Profile::Trapezoid { p0: a, p1: b }, k, co2, tce));
            }
        };
        if (p0 < 0.0) != (p1 < 0.0) && p0 != 0.0 && p1 != 0.0 {
            let span = (to.ts_ms - from.ts_ms) as f64;
            let cross = from.ts_ms + (span * p0.abs() / (p0.abs() + p1.abs())).round() as i64;
            push(p0, 0.0, from.ts_ms, cross);
            push(0.0, p1, cross, to.ts_ms);
        } else {
            push(p0, p1, from.ts_ms, to.ts_ms);
        }
    }

    /// What one delta of a carrier adds to each metric.
    pub(super) fn contributions(
        &self,
        carrier: Carrier,
        co2_per_base: f64,
        tce_per_base: f64,
        unit_value_cny_per_base: f64,
        d: i64,
    ) -> Sums {
        let f = &self.factors;
        let mut s = Sums::default();
        let scaled = |factor: f64| (d as f64 * factor).round() as i64;
        if let Some(m) = Metric::for_carrier(carrier) {
            s.add(m, d);
        }
        s.add(Metric::Deltas, units::MICRO as i64);
        match carrier {
            Carrier::GridImport => {
                s.add(Metric::ElectricityConsumedKwh, d);
                s.add(Metric::Co2Scope2LocationKg, scaled(f.grid_location));
                s.add(Metric::Co2Scope2MarketGrossKg, scaled(f.grid_residual));
                s.add(Metric::EnergyEquivalentKgce, scaled(f.elec_equivalent));
                s.add(Metric::EnergyCoalConsumptionKgce, scaled(f.elec_coal));
            }
            Carrier::PvGeneration | Carrier::GridExport => {
                let sign = if carrier == Carrier::GridExport {
                    -1
                } else {
                    1
                };
                s.add(Metric::ElectricityConsumedKwh, sign * d);
                s.add(Metric::PvSelfConsumedKwh, sign * d);
                s.add(
                    Metric::EnergyEquivalentKgce,
                    sign * scaled(f.elec_equivalent),
                );
                s.add(
                    Metric::EnergyCoalConsumptionKgce,
                    sign * scaled(f.elec_coal),
                );
            }
            Carrier::Heat | Carrier::Steam => {
                s.add(Metric::Co2Scope2LocationKg, scaled(co2_per_base));
                s.add(Metric::Co2Scope2MarketGrossKg, scaled(co2_per_base));
                s.add(Metric::EnergyEquivalentKgce, scaled(tce_per_base));
                s.add(Metric::EnergyCoalConsumptionKgce, scaled(tce_per_base));
            }
            c if c.is_fuel() => {
                s.add(Metric::Co2Scope1Kg, scaled(co2_per_base));
                s.add(Metric::EnergyEquivalentKgce, scaled(tce_per_base));
                s.add(Metric::EnergyCoalConsumptionKgce, scaled(tce_per_base));
            }
            Carrier::Production => s.add(Metric::OutputCny, scaled(unit_value_cny_per_base)),
            _ => {}
        }
        s
    }

    /// Stages a delta's sums for the windows its interval `(t0, t1]` covers. A reading on a
    /// window boundary closes the window before it. An interval within one local minute (the
    /// usual case for live polling) goes whole to that minute; a longer one (up to a day: a
    /// longer one is a [`Span`]) is split across the windows of every kind by
    /// [`Interval::part`], so that parts add up exactly.
    pub(super) fn attribute(
        &self,
        staged: &mut Staged,
        r: ChannelRef,
        info: &ChannelInfo,
        local: &LocalTime,
        mut interval: Interval,
        sums: &Sums,
    ) {
        let tz = self.config.park.timezone;
        let t1 = interval.t1_ms;
        // Readings stamped at one instant (a burst stamped on arrival) close an instant.
        if interval.t0_ms >= t1 {
            interval.t0_ms = t1 - 1;
            interval.profile = Profile::Linear;
        }
        // The local minute the reading closes: its own, or the one before when it sits on a
        // minute boundary. No time-zone lookup beyond the reading's own (this is the hot path).
        let own_minute = local.window_start_ms(WindowKind::Minute, tz);
        let last_minute = if own_minute == t1 {
            t1 - 60_000
        } else {
            own_minute
        };
        if interval.t0_ms >= last_minute {
            Self::stage(staged, r, info, Slot::Minute(last_minute), sums);
            return;
        }
        for &window in &self.config.accounting.windows {
            // Windows older than the store keeps when the reading arrives take no part: they
            // would be deleted at once. The windows kept still add up.
            let keep_from = keep_from_ms(&self.config.store.retention, window, t1);
            let Some(first) = LocalTime::new(interval.t0_ms.max(keep_from), tz) else {
                continue;
            };
            let mut start = first.window_start_ms(window, tz);
            while start < t1 {
                let end = next_window_start_ms(window, start, tz);
                let mut part = Sums::default();
                let mut any = false;
                for (i, total) in sums.0.iter().enumerate() {
                    if *total != 0 {
                        part.0[i] = interval.part(*total, start, end);
                        any |= part.0[i] != 0;
                    }
                }
                if any {
                    Self::stage(staged, r, info, Slot::Window(window, start), &part);
                }
                if end <= start {
                    break;
                }
                start = end;
            }
        }
    }

    pub(super) fn stage(
        staged: &mut Staged,
        r: ChannelRef,
        info: &ChannelInfo,
        slot: Slot,
        sums: &Sums,
    ) {
        let entry = staged
            .entry((r.meter, info.site, info.firm, slot))
            .or_default();
        // A delta touches a handful of the figures: add only those.
        for (i, v) in sums.0.iter().enumerate() {
            if *v != 0 {
                entry.0[i] = entry.0[i].saturating_add(*v);
            }
        }
    }
}
