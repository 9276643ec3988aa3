//! Splitting one park's firms over several ecogate instances (docs/scale-out.md).
//!
//! A firm's counters must always be accounted by one instance: a counter delta needs the
//! previous reading of the same register, and a window's total needs every delta. So shards
//! own firms, never messages: the firm-to-shard rule is a firm's `shard = k` when pinned, else
//! a stable hash of its id ([`shard_of`]). Every instance reads the same file and so agrees on
//! the rule; `run --shard k` keeps the firms of shard k (their sites and meters) and nothing
//! else, so everything downstream (the ledger, the store, reports, `/metrics`) sees one smaller
//! park and needs no notion of shards.

use super::raw::{RawShard, S};
use super::{Config, Firm, Meter, Validator};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The most shards a park can be split into; more instances than this on one broker would
/// each carry too little to be worth a process.
pub const MAX_SHARDS: u32 = 64;

/// How the park is split, and which part this configuration holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sharding {
    /// Instances the park's firms are split over; 1 when not split.
    pub count: u32,
    /// The shard this configuration was cut to (`run --shard`); `None`: the whole park.
    pub index: Option<u32>,
    /// The meters of the park that other shards own: their readings are expected here when
    /// the topic layout does not separate shards, and are passed over without a warning.
    pub other_shard_meters: Arc<HashSet<String>>,
}

impl Sharding {
    pub fn split(&self) -> bool {
        self.count > 1
    }
}

/// The shard of an unpinned firm: FNV-1a (32 bits) of its id, modulo `count`. Stable across
/// versions and platforms because publishers may lay out topics by it (docs/scale-out.md).
pub fn shard_of(firm_id: &str, count: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in firm_id.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % count.max(1)
}

impl Validator<'_> {
    /// The `[shard]` section and each firm's shard (pinned or hashed).
    pub(super) fn sharding(
        &mut self,
        raw: Option<&RawShard>,
        pins: &[Option<S<u32>>],
        firms: &mut [Firm],
    ) -> Sharding {
        let count = match raw {
            None => 1,
            Some(r) => {
                let n = *r.count.get_ref();
                if n == 0 || n > MAX_SHARDS {
                    self.err(
                        &r.count,
                        "shard.count",
                        format!("must be between 1 and {MAX_SHARDS}, got {n}"),
                    );
                    1
                } else {
                    n
                }
            }
        };
        for (i, (firm, pin)) in firms.iter_mut().zip(pins).enumerate() {
            firm.shard = match pin {
                None => shard_of(&firm.id, count),
                Some(p) if raw.is_none() => {
                    self.err(
                        p,
                        format!("firms[{i}].shard"),
                        "a firm's shard needs a [shard] section with the number of instances (count)",
                    );
                    0
                }
                Some(p) if *p.get_ref() >= count => {
                    self.err(
                        p,
                        format!("firms[{i}].shard"),
                        format!(
                            "shard {} does not exist: shards are numbered 0 to {} ([shard] count = {count})",
                            p.get_ref(),
                            count - 1
                        ),
                    );
                    0
                }
                Some(p) => *p.get_ref(),
            };
        }
        Sharding {
            count,
            index: None,
            other_shard_meters: Arc::default(),
        }
    }
}

impl Config {
    /// The part of the park that shard `index` owns: its firms, their sites and meters, with
    /// every index into them renumbered. Products of a kept firm stay (their meters are the
    /// firm's own, as validation made sure).
    pub fn for_shard(&self, index: u32) -> Config {
        let firm_map: Vec<Option<usize>> = renumber(self.firms.iter().map(|f| f.shard == index));
        let site_map: Vec<Option<usize>> =
            renumber(self.sites.iter().map(|s| firm_map[s.firm].is_some()));
        let meter_map: Vec<Option<usize>> =
            renumber(self.meters.iter().map(|m| site_map[m.site].is_some()));
        let mut out = self.clone();
        out.firms = kept(&self.firms, &firm_map, |f| {
            for p in &mut f.products {
                p.meter = meter_map[p.meter].unwrap_or(p.meter);
            }
        });
        out.sites = kept(&self.sites, &site_map, |s| {
            s.firm = firm_map[s.firm].unwrap_or(0)
        });
        out.meters = kept(&self.meters, &meter_map, |m| {
            m.site = site_map[m.site].unwrap_or(0)
        });
        let others: HashSet<String> = self
            .meters
            .iter()
            .zip(&meter_map)
            .filter(|(_, kept)| kept.is_none())
            .map(|(m, _)| m.id.clone())
            .collect();
        out.sharding = Sharding {
            count: self.sharding.count,
            index: Some(index),
            other_shard_meters: Arc::new(others),
        };
        out
    }

    /// `ecogate check`'s lines on the split: how many firms and meters each shard owns.
    pub fn sharding_summary(&self) -> Vec<String> {
        if !self.sharding.split() {
            return Vec::new();
        }
        let mut lines = vec![format!(
            "shards: {} instances (run each with --shard 0 to {})",
            self.sharding.count,
            self.sharding.count - 1
        )];
        for k in 0..self.sharding.count {
            let firms: Vec<&str> = self
                .firms
                .iter()
                .filter(|f| f.shard == k)
                .map(|f| f.id.as_str())
                .collect();
            let meters = self.meters.iter().filter(|m| m.shard == k).count();
            let shown: Vec<&str> = firms.iter().take(8).copied().collect();
            let more = firms.len().saturating_sub(shown.len());
            lines.push(format!(
                "  shard {k}: {} firms, {meters} meters: {}{}",
                firms.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        lines
    }
}

/// Checks that each line (an RS-485 bus, a serial server) serves one shard: two instances
/// polling one line would collide on the wire, and a line's meters are read by one poller.
#[derive(Debug, Default)]
pub struct LineShards {
    first: HashMap<String, (String, u32)>,
}

impl LineShards {
    /// Notes that `line` reads `meter`; the error text when an earlier meter on the line
    /// belongs to another shard.
    pub fn check(&mut self, line: &str, meter: &Meter) -> Option<String> {
        let (first, shard) = self
            .first
            .entry(line.to_string())
            .or_insert_with(|| (meter.id.clone(), meter.shard));
        (*shard != meter.shard).then(|| {
            format!(
                "line `{line}` would serve two shards: meter `{first}` is shard {shard}'s, meter `{}` shard {}'s. A line is polled by one instance: pin the firms of its meters to one shard ([[firms]] shard = {shard})",
                meter.id, meter.shard
            )
        })
    }
}

/// The items `map` keeps, each renumbered by `fix`.
fn kept<T: Clone>(items: &[T], map: &[Option<usize>], fix: impl Fn(&mut T)) -> Vec<T> {
    items
        .iter()
        .zip(map)
        .filter(|(_, new)| new.is_some())
        .map(|(item, _)| {
            let mut item = item.clone();
            fix(&mut item);
            item
        })
        .collect()
}

/// For each kept item its new position; `None` for those left out.
fn renumber(kept: impl Iterator<Item = bool>) -> Vec<Option<usize>> {
    let mut next = 0;
    kept.map(|k| {
        k.then(|| {
            next += 1;
            next - 1
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_and_stable() {
        // FNV-1a 32 of "a" is 0xe40c292c (the published test vector); of "" the offset basis.
        assert_eq!(shard_of("a", u32::MAX), 0xe40c_292c);
        assert_eq!(shard_of("", u32::MAX), 0x811c_9dc5);
        assert_eq!(shard_of("foobar", u32::MAX), 0xbf9c_f968);
        assert_eq!(shard_of("anything", 1), 0);
        let counts = (0..300).fold([0u32; 3], |mut c, i| {
            c[shard_of(&format!("firm-{i:03}"), 3) as usize] += 1;
            c
        });
        // 300 firms over 3 shards: none gets less than a quarter (an even split is 100 each).
        assert!(counts.iter().all(|&c| c > 75), "{counts:?}");
    }

    #[test]
    fn renumbering_skips_the_left_out() {
        assert_eq!(
            renumber([true, false, true, true].into_iter()),
            vec![Some(0), None, Some(1), Some(2)]
        );
    }
}
