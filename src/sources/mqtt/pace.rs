//! Receive pacing: how long the MQTT thread lets the broker's socket fill before reading again.
//!
//! Reading each message as it arrives costs a wake-up, a `recv` and a TCP acknowledgement per
//! message or two, for ecogate and for the broker alike (a third of ecogate's CPU at high rates:
//! docs/benchmarks.md). After a read that emptied the socket, pausing lets one read take what
//! came meanwhile.
//!
//! The pause adapts so that a wake-up finds about [`TARGET`] messages. Longer was not better in
//! the benchmark, and it risks worse: every
//! small message is a socket buffer of its own in the kernel (about 1 KiB of accounting for 50
//! bytes of payload), so a receive queue of a few hundred of them fills the default receive
//! buffer, the kernel advertises a zero window and the broker stalls. A stream that keeps the
//! socket full is never paused (its reads are never short), and a trickle waits at most [`MAX`]
//! per read.

use std::time::Duration;

/// Messages a wake-up should find.
pub const TARGET: usize = 24;
/// The shortest pause.
pub const MIN: Duration = Duration::from_micros(20);
/// The longest pause: the most a reading is delayed by it.
pub const MAX: Duration = Duration::from_micros(500);

#[derive(Debug, Clone)]
pub struct Pace {
    pause: Duration,
    /// Messages read since the last pause.
    since: usize,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            pause: MIN,
            since: 0,
        }
    }
}

impl Pace {
    /// One message was read.
    pub fn read(&mut self) {
        self.since += 1;
    }

    /// The socket is empty: how long to pause before the next read (`None` when nothing was read
    /// since the last pause, so there is no stream to pace and the next read just waits).
    pub fn drained(&mut self) -> Option<Duration> {
        let n = std::mem::take(&mut self.since);
        if n == 0 {
            return None;
        }
        if n < TARGET / 2 {
            self.pause = (self.pause * 2).min(MAX);
        } else if n > TARGET * 2 {
            self.pause = (self.pause / 2).max(MIN);
        }
        Some(self.pause)
    }

    /// The connection was lost: start again from the shortest pause.
    pub fn reset(&mut self) {
        *self = Pace::default();
    }

    pub fn pause(&self) -> Duration {
        self.pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wake_up(p: &mut Pace, messages: usize) -> Option<Duration> {
        for _ in 0..messages {
            p.read();
        }
        p.drained()
    }

    #[test]
    fn nothing_read_means_no_pause() {
        let mut p = Pace::default();
        assert_eq!(p.drained(), None);
        assert_eq!(p.pause(), MIN);
    }

    #[test]
    fn a_trickle_doubles_the_pause_up_to_the_cap() {
        let mut p = Pace::default();
        // 20, 40, 80, 160, 320, then 500 µs (capped), one message a wake-up.
        let pauses: Vec<u128> = (0..7)
            .map(|_| wake_up(&mut p, 1).unwrap().as_micros())
            .collect();
        assert_eq!(pauses, [40, 80, 160, 320, 500, 500, 500]);
    }

    #[test]
    fn a_flood_halves_it_down_to_the_floor() {
        let mut p = Pace::default();
        for _ in 0..5 {
            wake_up(&mut p, 1);
        }
        assert_eq!(p.pause(), MAX);
        // More than 2 x 24 messages a wake-up: 250, 125, 62, 31, then 20 µs (the floor).
        let pauses: Vec<u128> = (0..6)
            .map(|_| wake_up(&mut p, 100).unwrap().as_micros())
            .collect();
        assert_eq!(pauses, [250, 125, 62, 31, 20, 20]);
    }

    #[test]
    fn near_the_target_it_holds() {
        let mut p = Pace::default();
        wake_up(&mut p, 1);
        wake_up(&mut p, 1);
        assert_eq!(p.pause(), Duration::from_micros(80));
        // 12 to 48 messages a wake-up keep the pause where it is.
        for n in [12, 24, 48, 30] {
            assert_eq!(wake_up(&mut p, n), Some(Duration::from_micros(80)));
        }
        p.reset();
        assert_eq!(p.pause(), MIN);
    }
}
