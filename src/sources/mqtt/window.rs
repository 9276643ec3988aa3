//! Learning the broker's in-flight window, for group commit.
//!
//! A broker sends a QoS 1 subscriber at most a fixed number of unacknowledged messages
//! (mosquitto's `max_inflight_messages`, 20 by default; MQTT 3.1.1 does not tell the client).
//! Once that many wait for their commit, nothing more arrives until they are acknowledged: any
//! wait for more before committing is dead time, and with a 20-message window it capped
//! ecogate at about 660 msg/s. So the source learns the window and, when every message the
//! broker allows is waiting, asks the pipeline to commit at once.
//!
//! The window is the largest number of messages found in flight when the socket was empty,
//! confirmed by finding exactly that number waiting [`CONFIRM`] times with none beyond it. A
//! stream under a large window seldom lands on its own maximum; when it does, the cost is one
//! commit made early. Windows below [`MIN_WINDOW`] are not trusted: a trickle of single
//! messages would otherwise look like a window of one and commit every message at once.
//!
//! A window is only believed while the flow is bound by it: [`BOUND_CYCLES`] cycles within a
//! second. A publisher that sends the same batch every second (seven meters, one message each)
//! peaks at the same count every cycle too, but a second apart; taking that for a window would
//! warn of a small window that is not there, and commit and stop pacing for nothing.

/// Times the highest recent peak must recur among the last [`CYCLES`] before it is taken for
/// the broker's window.
pub const CONFIRM: usize = 3;
/// Commit cycles remembered.
pub const CYCLES: usize = 8;
/// The smallest window believed.
pub const MIN_WINDOW: u64 = 4;
/// Cycles that must end within a second for the flow to count as bound by the window: the
/// ones that confirm it.
pub const BOUND_CYCLES: usize = CONFIRM;

/// A learned window below this is worth a warning: a burst larger than the broker's queue
/// behind it is dropped by the broker (docs/mqtt.md).
pub const SMALL_WINDOW: u64 = 100;

#[derive(Debug, Default, Clone)]
pub struct Window {
    /// The highest in-flight count of each recent cycle (a cycle ends when acknowledgements
    /// bring the count down), oldest first.
    peaks: std::collections::VecDeque<u64>,
    /// This cycle's highest count so far.
    peak: u64,
    last: u64,
    learned: Option<u64>,
    /// When the last [`BOUND_CYCLES`] cycles ended, oldest first.
    ends: std::collections::VecDeque<std::time::Instant>,
    /// They ended within a second of each other, the last one within the last second.
    bound: bool,
    /// The learned window as last seen binding the flow: kept through quiet spells.
    confirmed: Option<u64>,
}

impl Window {
    /// The socket is empty at `now` and `in_flight` messages are in flight (received, not yet
    /// acknowledged; those just read included): whether to commit at once.
    pub fn drained(&mut self, in_flight: u64, now: std::time::Instant) -> bool {
        if in_flight < self.last {
            if self.ends.len() == BOUND_CYCLES {
                self.ends.pop_front();
            }
            self.ends.push_back(now);
            // Acknowledgements went out: the cycle that peaked at `peak` is over.
            if self.peaks.len() == CYCLES {
                self.peaks.pop_front();
            }
            self.peaks.push_back(self.peak);
            self.peak = 0;
            let top = self.peaks.iter().copied().max().unwrap_or(0);
            let times = self.peaks.iter().filter(|&&p| p == top).count();
            if top >= MIN_WINDOW && times >= CONFIRM {
                self.learned = Some(top);
            }
        }
        let second = std::time::Duration::from_secs(1);
        self.bound = self.ends.len() == BOUND_CYCLES
            && self
                .ends
                .front()
                .is_some_and(|first| now.duration_since(*first) <= second);
        self.last = in_flight;
        self.peak = self.peak.max(in_flight);
        // More in flight than the learned window: it was not the broker's limit.
        if self.learned.is_some_and(|w| in_flight > w) {
            self.learned = None;
            self.confirmed = None;
            self.peaks.clear();
        }
        if let Some(w) = self.learned() {
            self.confirmed = Some(w);
        }
        self.learned().is_some_and(|w| in_flight >= w)
    }

    /// After the last [`Window::drained`]: the cycle under way has fewer messages in flight than
    /// the one before it peaked at, a peak below [`SMALL_WINDOW`], so the broker may hold more
    /// behind the acknowledgements that went out (see `puback::kick`). Needs no learned window:
    /// a broker that holds part of every refill back hides its window from the learning too.
    /// Larger windows are left alone: their refills fill whole segments, which Nagle's algorithm
    /// does not hold, and a ping after every read of a fast stream would cost the broker.
    pub fn refilling(&self) -> bool {
        self.peaks
            .back()
            .is_some_and(|&before| before < SMALL_WINDOW && self.last > 0 && self.last < before)
    }

    /// The broker's window, once learned and while the flow is bound by it.
    pub fn learned(&self) -> Option<u64> {
        self.learned.filter(|_| self.bound)
    }

    /// The broker's window as last seen binding the flow, held while the flow is quiet (or not
    /// bound by it) until more than it are found in flight or the connection goes: what the
    /// gauge and the status page show. A small window matters most in the next burst, so it
    /// must not read 0 between bursts, when an operator is likely to look.
    pub fn confirmed(&self) -> Option<u64> {
        self.confirmed
    }

    /// A new connection may come with other limits.
    pub fn reset(&mut self) {
        *self = Window::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drains at the given in-flight counts, a millisecond apart (a bound flow); what each
    /// asked for.
    fn feed(w: &mut Window, counts: &[u64]) -> Vec<bool> {
        feed_every(w, counts, std::time::Duration::from_millis(1))
    }

    fn feed_every(w: &mut Window, counts: &[u64], step: std::time::Duration) -> Vec<bool> {
        thread_local! {
            static CLOCK: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
        }
        counts
            .iter()
            .map(|&n| {
                let now = CLOCK.with(|c| {
                    let t = c.get().map_or_else(std::time::Instant::now, |t| t + step);
                    c.set(Some(t));
                    t
                });
                w.drained(n, now)
            })
            .collect()
    }

    #[test]
    fn a_window_that_stalls_three_times_is_learned() {
        let mut w = Window::default();
        // Reads of 9, 9 and 2 fill a window of 20; the commit's acknowledgements empty it.
        feed(&mut w, &[9, 18, 20, 0, 9, 18, 20, 0, 9, 18, 20]);
        assert_eq!(w.learned(), None, "two cycles seen end, the third not yet");
        assert_eq!(feed(&mut w, &[0]), [false]);
        assert_eq!(w.learned(), Some(20));
        assert_eq!(feed(&mut w, &[9, 18, 20]), [false, false, true]);
    }

    #[test]
    fn a_confirmed_window_is_shown_through_a_quiet_spell() {
        let mut w = Window::default();
        for _ in 0..4 {
            feed(&mut w, &[20, 0]);
        }
        assert_eq!((w.learned(), w.confirmed()), (Some(20), Some(20)));
        // The stream stops; a keep-alive's answer drains the socket 30 s later.
        feed_every(&mut w, &[0], std::time::Duration::from_secs(30));
        assert_eq!(w.learned(), None, "no longer bound: no group commit on it");
        assert_eq!(w.confirmed(), Some(20), "still the broker's window");
        feed(&mut w, &[35]);
        assert_eq!(w.confirmed(), None, "35 in flight: the broker allows more");
        for _ in 0..4 {
            feed(&mut w, &[20, 0]);
        }
        w.reset();
        assert_eq!(
            w.confirmed(),
            None,
            "a new connection may come with other limits"
        );
    }

    #[test]
    fn stragglers_between_full_windows_do_not_hide_it() {
        // Seen with a strict 20-message window: 19, then a cycle of 2 (an acknowledgement that
        // freed a slot late), then 19 again.
        let mut w = Window::default();
        for _ in 0..3 {
            feed(&mut w, &[9, 18, 19, 0, 2, 0]);
        }
        assert_eq!(w.learned(), Some(19));
        assert_eq!(feed(&mut w, &[9, 18, 19]), [false, false, true]);
    }

    #[test]
    fn a_cycle_below_the_last_peak_is_refilling() {
        let mut w = Window::default();
        feed(&mut w, &[9, 18, 20]);
        assert!(!w.refilling(), "no cycle has ended yet");
        feed(&mut w, &[0, 2]);
        assert!(w.refilling(), "2 in flight after a cycle that peaked at 20");
        feed(&mut w, &[20]);
        assert!(!w.refilling(), "refilled");
        feed(&mut w, &[0]);
        assert!(!w.refilling(), "nothing in flight");
        let mut large = Window::default();
        feed(&mut large, &[400, 0, 9]);
        assert!(!large.refilling(), "a window of 400 is not held back");
    }

    #[test]
    fn more_than_the_window_unlearns_it() {
        let mut w = Window::default();
        for _ in 0..4 {
            feed(&mut w, &[20, 0]);
        }
        assert_eq!(w.learned(), Some(20));
        assert_eq!(
            feed(&mut w, &[35]),
            [false],
            "35 in flight: the broker allows more"
        );
        assert_eq!(w.learned(), None);
    }

    #[test]
    fn a_trickle_of_single_messages_is_no_window() {
        let mut w = Window::default();
        for _ in 0..100 {
            assert_eq!(feed(&mut w, &[1, 0]), [false, false]);
        }
        assert_eq!(w.learned(), None);
    }

    #[test]
    fn the_same_batch_every_second_is_no_window() {
        // Seven meters publishing once a second: every cycle peaks at 7, a second apart.
        let mut w = Window::default();
        for _ in 0..20 {
            let asked = feed_every(&mut w, &[7, 0], std::time::Duration::from_millis(500));
            assert_eq!(asked, [false, false]);
        }
        assert_eq!(w.learned(), None);
    }

    #[test]
    fn a_stream_under_a_large_window_seldom_repeats_its_peak() {
        let mut w = Window::default();
        // Cycle peaks of a stream: all different, so nothing is learned.
        for p in [230, 251, 244, 262, 238, 257, 249, 266, 241, 253] {
            feed(&mut w, &[p / 2, p, 0]);
        }
        assert_eq!(w.learned(), None);
        w.reset();
        assert_eq!(w.learned(), None);
    }
}
