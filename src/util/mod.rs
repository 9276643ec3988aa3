//! Small helpers shared by several components, kept here so that no component reaches into
//! another for them: back-off with jitter, rate-limited logging, the fast hasher, timestamp
//! parsing. Nothing here knows a source, a sink or the park.

pub mod timestamp;

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The maps touched for every reading hash with foldhash: several times faster than the
/// standard SipHash on small keys, and still seeded per process, so keys chosen by a hostile
/// publisher cannot be made to collide.
pub type FastHash = foldhash::fast::RandomState;

/// Exponential back-off with jitter: `base_ms x 2^(attempt-1)`, at most `cap_ms`, times a
/// factor in [0.8, 1.2) so that many devices or clients that failed together do not retry
/// together. `attempt` counts from 1.
pub fn backoff_ms(base_ms: f64, attempt: u32, cap_ms: f64) -> u64 {
    let exp = attempt.clamp(1, 16) as i32 - 1;
    ((base_ms * 2f64.powi(exp)).min(cap_ms) * jitter()) as u64
}

/// A factor in [0.8, 1.2) from the clock's low bits: they differ between devices and attempts,
/// which is all back-off jitter needs (no random-number dependency).
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    0.8 + (nanos % 1000) as f64 / 1000.0 * 0.4
}

/// The clock readings are stamped with where the source gives no time of its own (a Modbus
/// poll). Real time, except in `ecogate demo`, whose simulated park runs faster than real time
/// from a start in the past until it has caught up with the present: it never runs ahead of
/// real time, so no reading is stamped in the future.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    origin_real_ms: i64,
    origin_sim_ms: i64,
    speed: f64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::real()
    }
}

impl Clock {
    pub fn real() -> Clock {
        Clock {
            origin_real_ms: 0,
            origin_sim_ms: 0,
            speed: 1.0,
        }
    }

    /// Simulated time from `start_ms`, `speed` times faster than real time from now on.
    pub fn simulated(start_ms: i64, speed: f64) -> Clock {
        Clock {
            origin_real_ms: chrono::Utc::now().timestamp_millis(),
            origin_sim_ms: start_ms,
            speed: speed.max(1.0),
        }
    }

    pub fn now_ms(&self) -> i64 {
        let real = chrono::Utc::now().timestamp_millis();
        if self.speed == 1.0 && self.origin_real_ms == self.origin_sim_ms {
            return real;
        }
        let sim = self.origin_sim_ms + ((real - self.origin_real_ms) as f64 * self.speed) as i64;
        sim.min(real)
    }

    pub fn is_real(&self) -> bool {
        *self == Clock::real()
    }
}

/// A URL as it may be shown: any `user:password@` replaced by `***@`. Works on text that does
/// not parse as a URL too, so that an error about a malformed URL cannot leak what it holds.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// A secret from the configuration (a token, a password): shown as `***` by `Debug` and
/// `Display`, so that no log line, error or summary can print it by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Tells a step of the wall clock from time passing: the wall clock against the monotonic one
/// since the last look. A loop that schedules in wall-clock time (poll slots aligned to the
/// minute) would otherwise wait an hour after the clock went back an hour, or count an hour of
/// slots as missed after it went forward.
#[derive(Debug, Clone, Copy)]
pub struct ClockWatch {
    wall_ms: i64,
    mono: Instant,
}

impl ClockWatch {
    /// Below this the two clocks are taken to agree (NTP slews by parts per million).
    pub const TOLERANCE_MS: i64 = 1_000;

    pub fn new(wall_ms: i64) -> ClockWatch {
        ClockWatch {
            wall_ms,
            mono: Instant::now(),
        }
    }

    /// How far the wall clock (`wall_ms` now) jumped since the last look: negative back,
    /// positive forward, 0 within [`ClockWatch::TOLERANCE_MS`].
    pub fn step_ms(&mut self, wall_ms: i64) -> i64 {
        let mono = Instant::now();
        let passed_ms = mono.duration_since(self.mono).as_millis() as i64;
        let step = (wall_ms - self.wall_ms) - passed_ms;
        self.wall_ms = wall_ms;
        self.mono = mono;
        if step.abs() < Self::TOLERANCE_MS {
            0
        } else {
            step
        }
    }
}

/// One thing logged at most once per interval, counting what it did not log in between.
#[derive(Debug, Clone, Copy, Default)]
pub struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(suppressed since the last line)` when a line may be written now.
    pub fn allow(&mut self, interval: Duration) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(at) if now.duration_since(at) < interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// A [`Throttle`] per key (a reason, a device), with one interval.
#[derive(Debug)]
pub struct RateLimitedLog<K> {
    interval: Duration,
    keys: HashMap<K, Throttle>,
}

impl<K: Hash + Eq> RateLimitedLog<K> {
    pub fn new(interval: Duration) -> Self {
        RateLimitedLog {
            interval,
            keys: HashMap::new(),
        }
    }

    /// `Some(suppressed since the last line for this key)` when a line may be written now.
    /// Keys must come from a fixed set (reasons, configured devices): the map keeps them.
    pub fn allow(&mut self, key: K) -> Option<u64> {
        self.keys.entry(key).or_default().allow(self.interval)
    }
}

/// An error and its causes in one line, `outer: inner: innermost`, for messages that are not
/// printed through anyhow's `{:#}` (a located configuration error, a log line).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_20_percent() {
        for (attempt, nominal) in [(1, 200.0), (2, 400.0), (5, 3_200.0), (40, 30_000.0)] {
            let ms = backoff_ms(200.0, attempt, 30_000.0) as f64;
            assert!(
                ms >= nominal * 0.8 - 1.0 && ms < nominal * 1.2,
                "attempt {attempt}: {ms} ms"
            );
        }
    }

    #[test]
    fn urls_and_secrets_are_shown_without_credentials() {
        assert_eq!(
            redact_url("http://user:pw@host:8086/x?y=1"),
            "http://***@host:8086/x?y=1"
        );
        assert_eq!(redact_url("http://host/a@b"), "http://host/a@b");
        assert_eq!(redact_url("u:p@host"), "***@host");
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_throttle_counts_what_it_suppressed() {
        let mut log = RateLimitedLog::new(Duration::from_secs(3600));
        assert_eq!(log.allow("a"), Some(0));
        assert_eq!(log.allow("a"), None);
        assert_eq!(log.allow("a"), None);
        assert_eq!(log.allow("b"), Some(0));
        let mut t = Throttle::default();
        assert_eq!(t.allow(Duration::ZERO), Some(0));
        assert_eq!(t.allow(Duration::from_secs(3600)), None);
        assert_eq!(t.allow(Duration::ZERO), Some(1));
    }
}
