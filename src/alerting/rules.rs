//! Alert conditions and their firing/resolved state machine. Pure.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Condition {
    /// A firm's tCO2 per 10,000 CNY over the last day above its configured threshold.
    CarbonIntensity,
    /// A firm's year-to-date CO2 above its annual budget prorated to today.
    BudgetAtRisk,
    /// A hydrogen site's kgCO2e per kg H2 over the last day above 14.51 (T/CAB 0078-2020).
    HydrogenAboveLowCarbon,
}

impl Condition {
    pub fn alertname(self) -> &'static str {
        match self {
            Condition::CarbonIntensity => "EcogateFirmCarbonIntensityHigh",
            Condition::BudgetAtRisk => "EcogateFirmCarbonBudgetAtRisk",
            Condition::HydrogenAboveLowCarbon => "EcogateHydrogenAboveLowCarbon",
        }
    }

    /// The label naming the entity.
    pub fn entity_label(self) -> &'static str {
        match self {
            Condition::HydrogenAboveLowCarbon => "site",
            _ => "firm",
        }
    }
}

/// One figure against its threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub condition: Condition,
    pub entity: String,
    pub value: f64,
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub condition: Condition,
    pub entity: String,
    pub firing: bool,
    pub value: f64,
    pub threshold: f64,
    pub starts_at_ms: i64,
    pub ends_at_ms: Option<i64>,
}

/// Which alerts are firing, since when.
#[derive(Debug, Default)]
pub struct State {
    firing: BTreeMap<(Condition, String), i64>,
}

impl State {
    /// Compares each observation with its threshold. A condition that starts is notified once as
    /// firing; one that stops (figure back under its threshold, or no longer observed) once as
    /// resolved. Nothing is repeated while the state holds.
    pub fn update(&mut self, observations: &[Observation], now_ms: i64) -> Vec<Notification> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for o in observations {
            let key = (o.condition, o.entity.clone());
            seen.insert(key.clone());
            let above = o.value.is_finite() && o.value > o.threshold;
            match (above, self.firing.get(&key).copied()) {
                (true, None) => {
                    self.firing.insert(key, now_ms);
                    out.push(Notification {
                        condition: o.condition,
                        entity: o.entity.clone(),
                        firing: true,
                        value: o.value,
                        threshold: o.threshold,
                        starts_at_ms: now_ms,
                        ends_at_ms: None,
                    });
                }
                (false, Some(since)) => {
                    self.firing.remove(&key);
                    out.push(Notification {
                        condition: o.condition,
                        entity: o.entity.clone(),
                        firing: false,
                        value: o.value,
                        threshold: o.threshold,
                        starts_at_ms: since,
                        ends_at_ms: Some(now_ms),
                    });
                }
                _ => {}
            }
        }
        let gone: Vec<_> = self
            .firing
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            let since = self.firing.remove(&key).unwrap_or(now_ms);
            out.push(Notification {
                condition: key.0,
                entity: key.1,
                firing: false,
                value: f64::NAN,
                threshold: f64::NAN,
                starts_at_ms: since,
                ends_at_ms: Some(now_ms),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(value: f64) -> Observation {
        Observation {
            condition: Condition::CarbonIntensity,
            entity: "f1".into(),
            value,
            threshold: 1.0,
        }
    }

    #[test]
    fn fires_once_resolves_once_and_never_repeats() {
        let mut s = State::default();
        assert!(s.update(&[obs(0.5)], 1).is_empty());
        let n = s.update(&[obs(2.0)], 2);
        assert_eq!((n.len(), n[0].firing, n[0].starts_at_ms), (1, true, 2));
        // Still above: no repeat.
        assert!(s.update(&[obs(3.0)], 3).is_empty());
        // Exactly at the threshold is not above it.
        let n = s.update(&[obs(1.0)], 4);
        assert_eq!(
            (n.len(), n[0].firing, n[0].starts_at_ms, n[0].ends_at_ms),
            (1, false, 2, Some(4))
        );
        assert!(s.update(&[obs(0.9)], 5).is_empty());
        // Fires again after resolving; resolves when the figure is no longer observed.
        assert!(s.update(&[obs(5.0)], 6)[0].firing);
        let n = s.update(&[], 7);
        assert_eq!((n.len(), n[0].firing), (1, false));
        // NaN never fires.
        assert!(s.update(&[obs(f64::NAN)], 8).is_empty());
    }
}
