//! The park model's sections validated: park, firms, sites, meters, products, the store and the
//! accounting windows.

use super::*;

impl Validator<'_> {
    /// Validates the park model's sections.
    pub fn core(&mut self, raw: &RawCore) -> Config {
        let park = self.park(raw);
        let mut firms = self.firms(raw);
        let pins: Vec<_> = raw.firms.iter().map(|f| f.shard.clone()).collect();
        let sharding = self.sharding(raw.shard.as_ref(), &pins, &mut firms);
        let sites = self.sites(raw, &firms);
        let meters = self.meters(raw, &sites, &firms);
        for m in &meters {
            let counts_production = m
                .channels
                .iter()
                .any(|c| c.carrier == Some(Carrier::Production));
            if let Some(f) = sites.get(m.site).and_then(|s| firms.get_mut(s.firm)) {
                f.has_production_counters |= counts_production;
            }
        }
        self.products(raw, &mut firms, &sites, &meters);
        let factors = self.factors(raw, &park, &meters);
        let store = self.store(raw);
        let accounting = self.accounting(raw);
        let evaluation = self.evaluation(&raw.evaluation, &store.path);
        let tariff = self.tariff(raw.tariff.as_ref());
        Config {
            sharding,
            tariff,
            warnings: Vec::new(),
            file: self.file.clone(),
            park,
            firms,
            sites,
            meters,
            factors,
            store,
            accounting,
            evaluation,
        }
    }

    /// Each firm's product quotas, once the meters are known: the meter must be the firm's and
    /// count one product.
    pub(super) fn products(
        &mut self,
        raw: &RawCore,
        firms: &mut [Firm],
        sites: &[Site],
        meters: &[Meter],
    ) {
        for (fi, f) in raw.firms.iter().enumerate() {
            for (pi, p) in f.products.iter().enumerate() {
                let key = format!("firms[{fi}].products[{pi}]");
                let Some(mi) = meters.iter().position(|m| &m.id == p.meter.get_ref()) else {
                    self.err(
                        &p.meter,
                        format!("{key}.meter"),
                        format!("unknown meter `{}`", p.meter.get_ref()),
                    );
                    continue;
                };
                let meter = &meters[mi];
                if sites.get(meter.site).map(|s| s.firm) != Some(fi) {
                    self.err(
                        &p.meter,
                        format!("{key}.meter"),
                        "the meter is not on one of this firm's sites",
                    );
                    continue;
                }
                let production: Vec<&Channel> = meter
                    .channels
                    .iter()
                    .filter(|c| c.carrier == Some(Carrier::Production))
                    .collect();
                let [channel] = production.as_slice() else {
                    self.err(&p.meter, format!("{key}.meter"), "the meter must have exactly one production channel: its output value, divided by the unit value, is the quantity produced");
                    continue;
                };
                let Some(per) = crate::units::Unit::parse(p.per.get_ref()) else {
                    self.err(
                        &p.per,
                        format!("{key}.per"),
                        format!("unknown unit `{}`", p.per.get_ref()),
                    );
                    continue;
                };
                if per.dimension != channel.unit.dimension {
                    self.err(
                        &p.per,
                        format!("{key}.per"),
                        format!(
                            "the quota is per {}, but the counter counts in {}",
                            per.symbol, channel.unit.symbol
                        ),
                    );
                    continue;
                }
                let Some(quota) = self.positive(&p.quota_kgce, &format!("{key}.quota_kgce")) else {
                    continue;
                };
                firms[fi].products.push(evaluation::ProductQuota {
                    name: p.name.get_ref().clone(),
                    meter: mi,
                    quota_kgce_per_unit: quota,
                    unit: per.symbol.to_string(),
                    unit_in_base: per.to_base,
                    unit_value_cny_per_base: channel.unit_value_cny_per_base.unwrap_or(f64::NAN),
                    source: p.source.get_ref().clone(),
                });
            }
        }
    }

    pub(super) fn park(&mut self, raw: &RawCore) -> Park {
        let p = &raw.park;
        if p.name.get_ref().trim().is_empty() {
            self.err(&p.name, "park.name", "must not be empty");
        }
        let timezone = match &p.timezone {
            None => chrono_tz::Asia::Shanghai,
            Some(tz) => tz.get_ref().parse::<Tz>().unwrap_or_else(|_| {
                self.err(
                    tz,
                    "park.timezone",
                    format!(
                        "unknown time zone `{}`: use an IANA name such as Asia/Shanghai",
                        tz.get_ref()
                    ),
                );
                chrono_tz::Asia::Shanghai
            }),
        };
        let grid_region = match &p.grid_region {
            None => "national".to_string(),
            Some(r) => {
                if !factors::GRID_REGIONS.contains(&r.get_ref().as_str()) {
                    self.err(
                        r,
                        "park.grid_region",
                        format!(
                            "unknown grid region `{}`: built-in factors exist for {}; for another region keep `national` and give [factors.co2.grid_location]",
                            r.get_ref(),
                            factors::GRID_REGIONS.join(", ")
                        ),
                    );
                }
                r.get_ref().clone()
            }
        };
        let grid_factor_year = p
            .grid_factor_year
            .as_ref()
            .map_or(factors::DEFAULT_GRID_YEAR, |y| *y.get_ref());
        Park {
            name: p.name.get_ref().clone(),
            timezone,
            grid_region,
            grid_factor_year,
        }
    }

    pub(super) fn firms(&mut self, raw: &RawCore) -> Vec<Firm> {
        let mut seen = HashMap::new();
        let mut firms = Vec::new();
        for (i, f) in raw.firms.iter().enumerate() {
            let key = format!("firms[{i}]");
            self.check_id(&f.id, &format!("{key}.id"), &mut seen);
            let land_mu = match (&f.land_mu, &f.land_m2) {
                (Some(mu), None) => self.positive(mu, &format!("{key}.land_mu")),
                (None, Some(m2)) => self
                    .positive(m2, &format!("{key}.land_m2"))
                    .map(|m2| m2 / M2_PER_MU),
                (Some(mu), Some(_)) => {
                    self.err(
                        mu,
                        format!("{key}.land_mu"),
                        "give land_mu or land_m2, not both",
                    );
                    None
                }
                (None, None) => {
                    self.err(
                        &f.id,
                        format!("{key}.land_mu"),
                        "missing land area: give land_mu (mu, 亩) or land_m2",
                    );
                    None
                }
            };
            let st = &f.stats;
            let sk = format!("{key}.stats");
            let stats = FirmStats {
                tax_cny: self.non_negative(&st.tax_cny, &format!("{sk}.tax_cny")),
                revenue_cny: self.non_negative(&st.revenue_cny, &format!("{sk}.revenue_cny")),
                value_added_cny: self
                    .non_negative(&st.value_added_cny, &format!("{sk}.value_added_cny")),
                output_value_cny: self
                    .non_negative(&st.output_value_cny, &format!("{sk}.output_value_cny")),
                employees: self.non_negative(&st.employees, &format!("{sk}.employees")),
                rd_spend_cny: self.non_negative(&st.rd_spend_cny, &format!("{sk}.rd_spend_cny")),
                carbon_budget_tco2: self
                    .non_negative(&st.carbon_budget_tco2, &format!("{sk}.carbon_budget_tco2")),
                intensity_threshold_tco2_per_10k_cny: self.non_negative(
                    &st.intensity_threshold_tco2_per_10k_cny,
                    &format!("{sk}.intensity_threshold_tco2_per_10k_cny"),
                ),
                energy_intensity_threshold_tce_per_10k_cny: self.non_negative(
                    &st.energy_intensity_threshold_tce_per_10k_cny,
                    &format!("{sk}.energy_intensity_threshold_tce_per_10k_cny"),
                ),
                green_certificates: self
                    .non_negative(&st.green_certificates, &format!("{sk}.green_certificates")),
                pollutant_t: self.non_negative(&st.pollutant_t, &format!("{sk}.pollutant_t")),
                off_meter_tce: self.non_negative(&st.off_meter_tce, &format!("{sk}.off_meter_tce")),
            };
            let commitments = self.commitments(&f.commitments, &format!("{key}.commitments"));
            firms.push(Firm {
                id: f.id.get_ref().clone(),
                name: f.name.get_ref().clone(),
                land_mu: land_mu.unwrap_or(f64::NAN),
                sector: f.sector.as_ref().map(|s| s.get_ref().clone()),
                stats,
                // Set once the meters are known (`core`).
                has_production_counters: false,
                commitments,
                products: Vec::new(),
                // Set with the [shard] section (`sharding`).
                shard: 0,
            });
        }
        firms
    }

    pub(super) fn sites(&mut self, raw: &RawCore, firms: &[Firm]) -> Vec<Site> {
        let mut seen = HashMap::new();
        let mut sites = Vec::new();
        for (i, s) in raw.sites.iter().enumerate() {
            let key = format!("sites[{i}]");
            self.check_id(&s.id, &format!("{key}.id"), &mut seen);
            let firm = firms.iter().position(|f| &f.id == s.firm.get_ref());
            if firm.is_none() {
                self.err(
                    &s.firm,
                    format!("{key}.firm"),
                    format!(
                        "unknown firm `{}`: no [[firms]] has this id",
                        s.firm.get_ref()
                    ),
                );
            }
            let kind = SiteKind::ALL
                .iter()
                .find(|(n, _)| n == s.kind.get_ref())
                .map(|(_, k)| *k);
            if kind.is_none() {
                let names: Vec<_> = SiteKind::ALL.iter().map(|(n, _)| *n).collect();
                self.err(
                    &s.kind,
                    format!("{key}.kind"),
                    format!(
                        "unknown site kind `{}`: expected one of {}",
                        s.kind.get_ref(),
                        names.join(", ")
                    ),
                );
            }
            sites.push(Site {
                id: s.id.get_ref().clone(),
                name: s.name.as_ref().map(|n| n.get_ref().clone()),
                firm: firm.unwrap_or(0),
                kind: kind.unwrap_or(SiteKind::Factory),
            });
        }
        sites
    }

    pub(super) fn meters(&mut self, raw: &RawCore, sites: &[Site], firms: &[Firm]) -> Vec<Meter> {
        let mut seen = HashMap::new();
        let mut meters = Vec::new();
        for (i, m) in raw.meters.iter().enumerate() {
            let key = format!("meters[{i}]");
            self.check_id(&m.id, &format!("{key}.id"), &mut seen);
            let site = sites.iter().position(|s| &s.id == m.site.get_ref());
            if site.is_none() {
                self.err(
                    &m.site,
                    format!("{key}.site"),
                    format!(
                        "unknown site `{}`: no [[sites]] has this id",
                        m.site.get_ref()
                    ),
                );
            }
            if m.channels.is_empty() {
                self.err(
                    &m.id,
                    format!("{key}.channels"),
                    "a meter needs at least one channel",
                );
            }
            let mut seen_channels = HashMap::new();
            let channels = m
                .channels
                .iter()
                .enumerate()
                .filter_map(|(j, c)| {
                    let ck = format!("{key}.channels[{j}]");
                    self.check_id(&c.id, &format!("{ck}.id"), &mut seen_channels);
                    self.channel(c, &ck)
                })
                .collect();
            meters.push(Meter {
                id: m.id.get_ref().clone(),
                site: site.unwrap_or(0),
                description: m.description.as_ref().map(|d| d.get_ref().clone()),
                channels,
                shard: site
                    .and_then(|s| sites.get(s))
                    .and_then(|s| firms.get(s.firm))
                    .map_or(0, |f| f.shard),
            });
        }
        meters
    }

    pub(super) fn store(&mut self, raw: &RawCore) -> StoreConfig {
        let s = &raw.store;
        let r = &s.retention;
        let days = |v: &Option<S<u32>>, default: u32| v.as_ref().map_or(default, |d| *d.get_ref());
        let commit_interval_ms = s.commit_interval_ms.as_ref().map_or(1000, |v| *v.get_ref());
        if let Some(v) = &s.commit_interval_ms {
            if *v.get_ref() == 0 || *v.get_ref() > 60_000 {
                self.err(v, "store.commit_interval_ms", "must be between 1 and 60000");
            }
        }
        let max_batch = s
            .max_batch_readings
            .as_ref()
            .map_or(10_000, |v| *v.get_ref());
        if let Some(v) = &s.max_batch_readings {
            if *v.get_ref() == 0 || *v.get_ref() > 1_000_000 {
                self.err(
                    v,
                    "store.max_batch_readings",
                    "must be between 1 and 1000000",
                );
            }
        }
        let path = PathBuf::from(
            s.path
                .as_ref()
                .map_or("data/ecogate.db".to_string(), |p| p.get_ref().clone()),
        );
        // What `run` would fail on at once, said by `check` with what to do.
        if let Some(problem) = store_path_problem(&path) {
            match &s.path {
                Some(at) => self.err(at, "store.path", problem),
                None => self.err_unlocated("store.path", problem),
            }
        }
        StoreConfig {
            path,
            commit_interval_ms,
            max_batch_readings: max_batch as usize,
            inbox: s.inbox.as_ref().is_none_or(|v| *v.get_ref()),
            retention: Retention {
                readings_days: days(&r.readings_days, 400),
                minute_days: days(&r.minute_days, 14),
                quarter_hour_days: days(&r.quarter_hour_days, 800),
                hour_days: days(&r.hour_days, 800),
                events_days: days(&r.events_days, 0),
            },
        }
    }

    pub(super) fn accounting(&mut self, raw: &RawCore) -> AccountingConfig {
        let a = &raw.accounting;
        let windows = match &a.windows {
            None => WindowKind::ALL.to_vec(),
            Some(list) => {
                let mut out = Vec::new();
                for (i, w) in list.iter().enumerate() {
                    let key = format!("accounting.windows[{i}]");
                    match WindowKind::parse(w.get_ref()) {
                        Some(k) if out.contains(&k) => {
                            self.err(w, key, format!("window `{}` listed twice", w.get_ref()))
                        }
                        Some(k) => out.push(k),
                        None => {
                            let names: Vec<_> = WindowKind::ALL.iter().map(|w| w.name()).collect();
                            self.err(
                                w,
                                key,
                                format!(
                                    "unknown window `{}`: expected one of {}",
                                    w.get_ref(),
                                    names.join(", ")
                                ),
                            )
                        }
                    }
                }
                out.sort();
                if out.is_empty() && list.is_empty() {
                    self.errors.push(ConfigError {
                        line_col: None,
                        key: "accounting.windows".into(),
                        message: "at least one window is needed".into(),
                    });
                }
                out
            }
        };
        let gauge_max_gap_s = a
            .gauge_max_gap_s
            .as_ref()
            .and_then(|g| self.positive(g, "accounting.gauge_max_gap_s"))
            .unwrap_or(300.0);
        let max_future_s = a
            .max_future_s
            .as_ref()
            .and_then(|g| self.positive(g, "accounting.max_future_s"))
            .unwrap_or(300.0);
        AccountingConfig {
            windows,
            gauge_max_gap_s,
            max_future_s,
        }
    }
}
