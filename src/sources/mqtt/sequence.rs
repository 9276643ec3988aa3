//! Gaps in a meter's message sequence: what a broker that does not publish `$SYS` (or a bridge,
//! or a gateway's own buffer) lost on the way shows as a sequence number that jumps. Pure.
//!
//! Per meter the highest number seen is kept. A number one above it is the expected next; more
//! than one above is a gap of the numbers in between. A number at or below it is a redelivery
//! (QoS 1 after a reconnect) or a late message and says nothing; one far below it
//! ([`RESTART_DROP`]) means the publisher started counting again, and becomes the new highest.
//! Nothing is kept across a restart of ecogate: the first number after it is a new baseline.

use std::collections::HashMap;

/// A fall by more than this is a publisher that restarted its count, not a late message.
pub const RESTART_DROP: u64 = 1_000;

/// What one message's number means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first number of a meter, the expected next, a redelivery, or a restarted count.
    InOrder,
    /// This many numbers were skipped: `after` was the highest before, `got` came.
    Gap { missing: u64, after: u64, got: u64 },
}

#[derive(Debug, Default)]
pub struct Sequences {
    highest: HashMap<String, u64>,
}

impl Sequences {
    pub fn observe(&mut self, meter: &str, seq: u64) -> Seen {
        let Some(highest) = self.highest.get_mut(meter) else {
            self.highest.insert(meter.to_string(), seq);
            return Seen::InOrder;
        };
        let before = *highest;
        if seq > before {
            *highest = seq;
            if seq - before > 1 {
                return Seen::Gap {
                    missing: seq - before - 1,
                    after: before,
                    got: seq,
                };
            }
        } else if before - seq > RESTART_DROP {
            *highest = seq;
        }
        Seen::InOrder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_the_numbers_skipped() {
        let mut s = Sequences::default();
        // 7, 8 in order; 12 skips 9, 10, 11 (3).
        assert_eq!(s.observe("m1", 7), Seen::InOrder);
        assert_eq!(s.observe("m1", 8), Seen::InOrder);
        assert_eq!(
            s.observe("m1", 12),
            Seen::Gap {
                missing: 3,
                after: 8,
                got: 12
            }
        );
        // Another meter keeps its own count.
        assert_eq!(s.observe("m2", 100), Seen::InOrder);
        assert_eq!(s.observe("m2", 101), Seen::InOrder);
    }

    #[test]
    fn redeliveries_and_restarted_counts_are_not_gaps() {
        let mut s = Sequences::default();
        for n in 1..=20 {
            assert_eq!(s.observe("m", n), Seen::InOrder);
        }
        // A QoS 1 redelivery of 11..20 after a reconnect, then 21 as expected.
        for n in 11..=20 {
            assert_eq!(s.observe("m", n), Seen::InOrder);
        }
        assert_eq!(s.observe("m", 21), Seen::InOrder);
        // The publisher restarts at 0 after 5,000: a new baseline, then 1 in order.
        assert_eq!(
            s.observe("m", 5_000),
            Seen::Gap {
                missing: 4_978,
                after: 21,
                got: 5_000
            }
        );
        assert_eq!(s.observe("m", 0), Seen::InOrder);
        assert_eq!(s.observe("m", 1), Seen::InOrder);
        assert_eq!(
            s.observe("m", 3),
            Seen::Gap {
                missing: 1,
                after: 1,
                got: 3
            }
        );
    }
}
