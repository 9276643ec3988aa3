//! `ecogate_meter_power_kw{meter, channel}`: the latest reading of every configured power channel.
//!
//! A park of 1,000 meters with a dozen power points each has tens of thousands of these. As
//! `GaugeVec` children each costs a few hundred bytes and a label hash per update; here a value is
//! one atomic in a flat table indexed by channel, and the labels are rendered only at scrape time.

use crate::config::Config;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Marks a channel never read (no value is exported for it).
const UNSET: u64 = u64::MAX;

#[derive(Debug, Clone)]
pub struct PowerGauges {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    desc: Desc,
    /// `(meter, channel)` configuration indices -> slot.
    slots: HashMap<(u32, u32), usize, crate::util::FastHash>,
    labels: Vec<(u32, u32)>,
    values: Vec<AtomicU64>,
    config: Arc<Config>,
}

impl PowerGauges {
    pub fn new(config: Arc<Config>) -> PowerGauges {
        let mut slots = HashMap::default();
        let mut labels = Vec::new();
        for (mi, meter) in config.meters.iter().enumerate() {
            for (ci, ch) in meter.channels.iter().enumerate() {
                if ch.unit.dimension == crate::units::Dimension::Power {
                    slots.insert((mi as u32, ci as u32), labels.len());
                    labels.push((mi as u32, ci as u32));
                }
            }
        }
        let desc = Desc::new(
            "ecogate_meter_power_kw".into(),
            "Latest instantaneous power of each configured power channel, kW.".into(),
            vec!["meter".into(), "channel".into()],
            HashMap::new(),
        )
        .expect("valid metric");
        let values = (0..labels.len()).map(|_| AtomicU64::new(UNSET)).collect();
        PowerGauges {
            inner: Arc::new(Inner {
                desc,
                slots,
                labels,
                values,
                config,
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.inner.labels.is_empty()
    }

    /// Records the latest kW of a channel; channels that do not measure power are ignored.
    pub fn set(&self, meter: u32, channel: u32, kw: f64) {
        if let Some(&slot) = self.inner.slots.get(&(meter, channel)) {
            self.inner.values[slot].store(kw.to_bits(), Ordering::Relaxed);
        }
    }

    pub fn get(&self, meter: u32, channel: u32) -> Option<f64> {
        let slot = *self.inner.slots.get(&(meter, channel))?;
        let bits = self.inner.values[slot].load(Ordering::Relaxed);
        (bits != UNSET).then(|| f64::from_bits(bits))
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

impl Collector for PowerGauges {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.inner.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let inner = &self.inner;
        let mut metrics = Vec::new();
        for (slot, &(mi, ci)) in inner.labels.iter().enumerate() {
            let bits = inner.values[slot].load(Ordering::Relaxed);
            if bits == UNSET {
                continue;
            }
            let meter = &inner.config.meters[mi as usize];
            let mut g = Gauge::default();
            g.set_value(f64::from_bits(bits));
            let mut m = Metric::from_label(vec![
                label("channel", &meter.channels[ci as usize].id),
                label("meter", &meter.id),
            ]);
            m.set_gauge(g);
            metrics.push(m);
        }
        if metrics.is_empty() {
            return Vec::new();
        }
        let mut family = MetricFamily::default();
        family.set_name(inner.desc.fq_name.clone());
        family.set_help(inner.desc.help.clone());
        family.set_field_type(MetricType::GAUGE);
        family.set_metric(metrics);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_power_channels_that_were_read_are_exported() {
        let text = "[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = 1\n[[sites]]\nid = \"s\"\nfirm = \"f\"\nkind = \"factory\"\n\
                    [[meters]]\nid = \"m\"\nsite = \"s\"\nchannels = [{ id = \"e\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 10 }, { id = \"p\", kind = \"gauge\", unit = \"kW\" }, { id = \"q\", kind = \"gauge\", unit = \"W\" }]\n";
        let cfg = crate::app::AppConfig::parse(std::path::Path::new("t.toml"), text)
            .unwrap()
            .core;
        let g = PowerGauges::new(cfg);
        assert!(g.collect().is_empty(), "nothing read yet");
        g.set(0, 0, 5.0); // energy channel: ignored
        g.set(0, 1, 12.5);
        assert_eq!(g.get(0, 0), None);
        assert_eq!(g.get(0, 1), Some(12.5));
        assert_eq!(g.get(0, 2), None, "power channel never read");
        let families = g.collect();
        let metrics = families[0].get_metric();
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].get_gauge().get_value(), 12.5);
        let labels: Vec<(&str, &str)> = metrics[0]
            .get_label()
            .iter()
            .map(|l| (l.name(), l.value()))
            .collect();
        assert_eq!(labels, vec![("channel", "p"), ("meter", "m")]);
    }
}
