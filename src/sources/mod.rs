//! Sources: where readings come from. Each source turns its protocol's values into
//! [`crate::reading::Reading`]s and sends them to the pipeline in
//! [`crate::pipeline::Envelope`]s; nothing of the protocol crosses that line.
//!
//! The Modbus (`modbus`) and MQTT (`mqtt`) sources live in their own folders; `replay` (a file of
//! historical readings) is the batch source in `crate::replay`.

pub mod modbus;
pub mod mqtt;

use crate::pipeline::Envelope;
use tokio::sync::{mpsc, watch};

/// What every running source is given.
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub output: mpsc::Sender<Envelope>,
    /// Turns `true` when the daemon is shutting down.
    pub shutdown: watch::Receiver<bool>,
}

/// Exponential back-off with jitter: `base_ms x 2^(attempt-1)`, at most `cap_ms`, times a
/// factor in [0.8, 1.2) so that many devices or clients that failed together do not retry
/// together. `attempt` counts from 1.
pub(crate) fn backoff_ms(base_ms: f64, attempt: u32, cap_ms: f64) -> u64 {
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

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_caps_and_jitters_within_20_percent() {
        for (attempt, nominal) in [(1, 200.0), (2, 400.0), (5, 3_200.0), (40, 30_000.0)] {
            let ms = super::backoff_ms(200.0, attempt, 30_000.0) as f64;
            assert!(
                ms >= nominal * 0.8 - 1.0 && ms < nominal * 1.2,
                "attempt {attempt}: {ms} ms"
            );
        }
    }
}
