//! A meter's channels (carrier, kind, unit, counter limits, replacements) and the factors in
//! force for each carrier, validated.

use super::*;

impl Validator<'_> {
    pub(super) fn channel(&mut self, c: &raw::RawChannel, key: &str) -> Option<Channel> {
        let errors_before = self.errors.len();
        let carrier = match &c.carrier {
            None => None,
            Some(name) => {
                let parsed = Carrier::parse(name.get_ref());
                if parsed.is_none() {
                    let names: Vec<_> = Carrier::ALL.iter().map(|c| c.name()).collect();
                    self.err(
                        name,
                        format!("{key}.carrier"),
                        format!(
                            "unknown carrier `{}`: expected one of {}",
                            name.get_ref(),
                            names.join(", ")
                        ),
                    );
                }
                parsed
            }
        };
        let unit = Unit::parse(c.unit.get_ref());
        if unit.is_none() {
            self.err(
                &c.unit,
                format!("{key}.unit"),
                format!("unknown unit `{}`", c.unit.get_ref()),
            );
        }
        let is_counter = match c.kind.get_ref().as_str() {
            "counter" => true,
            "gauge" => false,
            other => {
                self.err(
                    &c.kind,
                    format!("{key}.kind"),
                    format!("unknown channel kind `{other}`: expected `counter` (cumulative register) or `gauge` (instantaneous value)"),
                );
                return None;
            }
        };
        let integrate = c.integrate.as_ref().map(|s| *s.get_ref()).unwrap_or(false);
        if let (Some(unit), Some(carrier)) = (unit, carrier) {
            let wanted = carrier.dimensions();
            let fits = if is_counter || !integrate {
                wanted.contains(&unit.dimension)
            } else {
                unit.dimension
                    .integrates_to()
                    .is_some_and(|d| wanted.contains(&d))
            };
            if !fits {
                let mut accepted: Vec<&str> = Vec::new();
                for d in wanted {
                    if is_counter || !integrate {
                        accepted.extend(Unit::symbols_for(*d));
                    } else {
                        for rate in [Dimension::Power, Dimension::VolumeFlow, Dimension::MassFlow] {
                            if rate.integrates_to() == Some(*d) {
                                accepted.extend(Unit::symbols_for(rate));
                            }
                        }
                    }
                }
                let what = if is_counter {
                    "a counter"
                } else {
                    "an integrated gauge"
                };
                self.err(
                    &c.unit,
                    format!("{key}.unit"),
                    format!(
                        "unit `{}` ({}) does not fit carrier `{carrier}` as {what}: use one of {}",
                        unit.symbol,
                        unit.dimension,
                        accepted.join(", ")
                    ),
                );
            }
        }
        let kind = if is_counter {
            if c.carrier.is_none() {
                self.err(
                    &c.id,
                    format!("{key}.carrier"),
                    "a counter needs a carrier: what does it count?",
                );
            }
            if let Some(i) = &c.integrate {
                self.err(
                    i,
                    format!("{key}.integrate"),
                    "only gauges are integrated; a counter already accumulates",
                );
            }
            let to_base = unit.map_or(1.0, |u| u.to_base);
            let rollover_base = c
                .rollover
                .as_ref()
                .and_then(|r| self.positive(r, &format!("{key}.rollover")))
                .map(|r| r * to_base);
            let max_rate = match &c.max_rate_per_hour {
                Some(r) => self.positive(r, &format!("{key}.max_rate_per_hour")),
                None => {
                    self.err(
                        &c.id,
                        format!("{key}.max_rate_per_hour"),
                        "a counter needs max_rate_per_hour (highest plausible increase per hour, in the channel's unit): it is how ecogate tells a meter reset or a glitch from real consumption",
                    );
                    None
                }
            };
            if let (Some(r), Some(base)) = (&c.rollover, rollover_base) {
                // The modulus is a power of ten (or of two); "largest value shown" ends in 9s.
                let shown = format!("{}", r.get_ref());
                if shown.contains('.') && shown.ends_with('9') {
                    self.warn(
                        r,
                        format!("{key}.rollover"),
                        {
                            let decimals = shown.split('.').nth(1).map_or(0, str::len) as i32;
                            let step = 10f64.powi(-decimals);
                            let _ = base;
                            format!(
                                "rollover {shown} looks like the largest value the register shows, but rollover is the modulus (the register wraps to zero at this value): {shown} loses {step} per wrap; write {}",
                                (r.get_ref() + step).round()
                            )
                        },
                    );
                }
            }
            let mut replacements = Vec::new();
            for (ri, rep) in c.replacements.iter().enumerate() {
                let rkey = format!("{key}.replacements[{ri}]");
                let at = chrono::DateTime::parse_from_rfc3339(rep.at.get_ref().trim());
                let at_ms = match at {
                    Ok(t) => Some(t.timestamp_millis()),
                    Err(e) => {
                        self.err(
                            &rep.at,
                            format!("{rkey}.at"),
                            format!(
                                "not an RFC 3339 time with offset (2026-10-01T10:00:00+08:00): {e}"
                            ),
                        );
                        None
                    }
                };
                let old_final = self.non_negative(&rep.old_final, &format!("{rkey}.old_final"));
                let new_start =
                    self.non_negative(&Some(rep.new_start.clone()), &format!("{rkey}.new_start"));
                if let (Some(at_ms), Some(new_start)) = (at_ms, new_start) {
                    let micro = |v: f64| crate::units::to_micro(v * to_base);
                    match (micro(new_start), old_final.map(micro)) {
                        (Some(new_start_micro), None) => replacements.push(Replacement {
                            at_ms,
                            old_final_micro: None,
                            new_start_micro,
                        }),
                        (Some(new_start_micro), Some(Some(f))) => replacements.push(Replacement {
                            at_ms,
                            old_final_micro: Some(f),
                            new_start_micro,
                        }),
                        _ => self.err(&rep.new_start, rkey, "value out of range"),
                    }
                }
            }
            replacements.sort_by_key(|r| r.at_ms);
            ChannelKind::Counter {
                rollover_base,
                max_rate_base_per_h: max_rate.unwrap_or(1.0) * to_base,
                replacements,
            }
        } else {
            if let Some(r) = &c.rollover {
                self.err(r, format!("{key}.rollover"), "only counters roll over");
            }
            if let Some(r) = &c.max_rate_per_hour {
                self.err(
                    r,
                    format!("{key}.max_rate_per_hour"),
                    "only counters have a maximum rate",
                );
            }
            if integrate && c.carrier.is_none() {
                self.err(
                    &c.id,
                    format!("{key}.carrier"),
                    "an integrated gauge needs a carrier to add its energy to",
                );
            }
            if let Some(r) = c.replacements.first() {
                self.err(
                    &r.at,
                    format!("{key}.replacements"),
                    "only counters are replaced",
                );
            }
            let negative_carrier = match &c.negative_carrier {
                None => None,
                Some(n) if !integrate => {
                    self.err(
                        n,
                        format!("{key}.negative_carrier"),
                        "only an integrated gauge has a negative carrier",
                    );
                    None
                }
                Some(n) => {
                    match Carrier::parse(n.get_ref()) {
                        Some(k) if carrier.is_some_and(|c| c.dimensions() == k.dimensions()) => {
                            Some(k)
                        }
                        Some(k) => {
                            self.err(n, format!("{key}.negative_carrier"), format!("carrier `{k}` does not measure what the channel's carrier does"));
                            None
                        }
                        None => {
                            self.err(
                                n,
                                format!("{key}.negative_carrier"),
                                format!("unknown carrier `{}`", n.get_ref()),
                            );
                            None
                        }
                    }
                }
            };
            ChannelKind::Gauge {
                integrate,
                negative_carrier,
            }
        };
        let unit_value_cny_per_base = match (&c.unit_value_cny, carrier) {
            (Some(v), Some(Carrier::Production)) => self
                .non_negative(&Some(v.clone()), &format!("{key}.unit_value_cny"))
                .map(|cny| cny / unit.map_or(1.0, |u| u.to_base)),
            (None, Some(Carrier::Production)) => {
                self.err(
                    &c.id,
                    format!("{key}.unit_value_cny"),
                    "a production channel needs unit_value_cny (output value per unit counted)",
                );
                None
            }
            (Some(v), _) => {
                self.err(
                    v,
                    format!("{key}.unit_value_cny"),
                    "only production channels have a unit value",
                );
                None
            }
            (None, _) => None,
        };
        if self.errors.len() > errors_before {
            return None;
        }
        let tariff_band = c.tariff_band.as_ref().and_then(|b| {
            let band = tariff::Band::ALL
                .iter()
                .copied()
                .find(|x| x.name() == b.get_ref());
            if band.is_none() {
                self.err(
                    b,
                    format!("{key}.tariff_band"),
                    format!("unknown band `{}`: sharp, peak, flat or valley", b.get_ref()),
                );
            } else if carrier.is_some() {
                self.err(
                    b,
                    format!("{key}.tariff_band"),
                    "a tariff register is compared, not accounted: give it no carrier (the meter's total channel carries the energy)",
                );
            } else if unit.is_some_and(|u| u.dimension != Dimension::Energy) {
                self.err(b, format!("{key}.tariff_band"), "a tariff register counts energy: give it a unit such as kWh");
            }
            band
        });
        Some(Channel {
            id: c.id.get_ref().clone(),
            carrier,
            unit: unit?,
            kind,
            unit_value_cny_per_base,
            tariff_band,
        })
    }

    pub(super) fn factors(&mut self, raw: &RawCore, park: &Park, meters: &[Meter]) -> Factors {
        let mut overrides: HashMap<(FactorKind, &'static str), Factor> = HashMap::new();
        for (kind, table) in [
            (FactorKind::Co2, &raw.factors.co2),
            (FactorKind::Tce, &raw.factors.tce),
        ] {
            for (name, f) in table {
                let key = format!("factors.{}.{name}", kind.section());
                match factors::find_slot(kind, name) {
                    None => {
                        let names: Vec<_> = factors::SLOTS
                            .iter()
                            .filter(|s| s.kind == kind)
                            .map(|s| s.name)
                            .collect();
                        self.err(
                            f,
                            key,
                            format!(
                                "unknown factor `{name}`: expected one of {}",
                                names.join(", ")
                            ),
                        );
                    }
                    Some(slot) => {
                        if let Some(factor) = self.factor(f.get_ref(), slot, &key) {
                            overrides.insert((kind, slot.name), factor);
                        }
                    }
                }
            }
        }
        // Which factors the configured channels need, and the first channel that needs each.
        let mut needed: Vec<(FactorKind, &'static str, String, Carrier)> = Vec::new();
        let mut seen = HashSet::new();
        for (i, m) in meters.iter().enumerate() {
            for (j, c) in m.channels.iter().enumerate() {
                let Some(carrier) = c.carrier else { continue };
                for (kind, name) in carrier.required_factors() {
                    if seen.insert((*kind, *name)) {
                        needed.push((
                            *kind,
                            name,
                            format!("meters[{i}].channels[{j}].carrier"),
                            carrier,
                        ));
                    }
                }
            }
        }
        let mut out = Factors::default();
        for slot in factors::SLOTS {
            let chosen = overrides.remove(&(slot.kind, slot.name)).or_else(|| {
                factors::builtin(
                    slot.kind,
                    slot.name,
                    &park.grid_region,
                    park.grid_factor_year,
                )
            });
            if let Some(f) = chosen {
                match slot.kind {
                    FactorKind::Co2 => out.co2.insert(slot.name, f),
                    FactorKind::Tce => out.tce.insert(slot.name, f),
                };
            }
        }
        for (kind, name, key, carrier) in needed {
            let present = match kind {
                FactorKind::Co2 => out.co2.contains_key(name),
                FactorKind::Tce => out.tce.contains_key(name),
            };
            if !present {
                let section = kind.section();
                let why = if name.starts_with("grid_") {
                    format!(
                        " for grid region `{}` and year {}",
                        park.grid_region, park.grid_factor_year
                    )
                } else {
                    String::new()
                };
                self.errors.push(ConfigError {
                    line_col: raw_line_col(raw, &key, self.locator),
                    key,
                    message: format!(
                        "carrier `{carrier}` needs the factor {section}.{name}, and ecogate ships none{why}: add [factors.{section}.{name}] with value, unit, year and source"
                    ),
                });
            }
        }
        out
    }

    pub(super) fn factor(
        &mut self,
        f: &RawFactor,
        slot: &factors::FactorSlot,
        key: &str,
    ) -> Option<Factor> {
        let value = self.positive(&f.value, &format!("{key}.value"))?;
        if f.source.get_ref().trim().is_empty() {
            self.err(
                &f.source,
                format!("{key}.source"),
                "must name where the figure comes from (an auditor will ask)",
            );
            return None;
        }
        let year = *f.year.get_ref();
        if !(1990..=2100).contains(&year) {
            self.err(
                &f.year,
                format!("{key}.year"),
                format!("year {year} is not a plausible data year"),
            );
            return None;
        }
        match factors::per_base(slot.kind, slot.per, value, f.unit.get_ref()) {
            Ok(per_base) => Some(Factor {
                value,
                unit: f.unit.get_ref().clone(),
                year: Some(year),
                source: f.source.get_ref().clone(),
                per_base,
            }),
            Err(msg) => {
                self.err(
                    &f.unit,
                    format!("{key}.unit"),
                    format!("`{}`: {msg}", f.unit.get_ref()),
                );
                None
            }
        }
    }
}

/// Finds the line of a `meters[i].channels[j].carrier` key in the raw config.
pub(super) fn raw_line_col(
    raw: &RawCore,
    key: &str,
    locator: &Locator<'_>,
) -> Option<(usize, usize)> {
    let rest = key.strip_prefix("meters[")?;
    let (i, rest) = rest.split_once("].channels[")?;
    let (j, _) = rest.split_once(']')?;
    let channel = raw
        .meters
        .get(i.parse::<usize>().ok()?)?
        .channels
        .get(j.parse::<usize>().ok()?)?;
    channel
        .carrier
        .as_ref()
        .map(|c| locator.line_col(&c.span()))
}
