//! Messages lost before they reached ecogate, which nothing downstream could notice: the
//! broker's own drop counter (mosquitto's `$SYS`) and jumps in meters' sequence numbers. Each
//! is counted, logged at most once a minute with the broker settings that prevent it, and shown
//! on the status page ([`super::metrics::notices`]).

use super::metrics::MqttMetrics;
use super::sequence::{Seen, Sequences};
use crate::util::Throttle;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Losses {
    /// Each meter's highest message sequence number (subscriptions with `sequence`).
    sequences: Sequences,
    drop_log: Throttle,
    gap_log: Throttle,
}

impl Losses {
    /// `$SYS/broker/publish/messages/dropped`: a rise means a queue of the broker's overflowed
    /// (all its clients together; ecogate's own session may be among them).
    pub fn on_sys(&mut self, metrics: &MqttMetrics, payload: &[u8]) {
        let Some(dropped) = std::str::from_utf8(payload)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
        else {
            return;
        };
        let before = metrics.broker_dropped.get();
        metrics.broker_dropped.set(dropped);
        if before < 0 || dropped <= before {
            return;
        }
        metrics.broker_drops_seen.inc_by((dropped - before) as u64);
        if let Some(suppressed) = self.drop_log.allow(Duration::from_secs(60)) {
            tracing::warn!(
                dropped_since = dropped - before,
                broker_total = dropped,
                suppressed,
                "the MQTT broker reports dropping messages (all clients): a queue or in-flight \
                 window is too small for the bursts it gets; raise max_queued_messages and \
                 max_inflight_messages in mosquitto.conf (docs/mqtt.md)"
            );
        }
    }

    /// A message's sequence number: a jump means messages lost between the meter and ecogate
    /// (a broker that does not say so in `$SYS`, a bridge, a gateway's buffer).
    pub fn on_sequence(&mut self, metrics: &MqttMetrics, meter: &str, seq: u64) {
        let Seen::Gap {
            missing,
            after,
            got,
        } = self.sequences.observe(meter, seq)
        else {
            return;
        };
        metrics.sequence_gap(meter, missing, after, got);
        if let Some(suppressed) = self.gap_log.allow(Duration::from_secs(60)) {
            tracing::warn!(
                meter,
                after,
                got,
                missing,
                suppressed,
                "messages missing from a meter's sequence: lost between the meter and ecogate \
                 (a broker's full queue: raise max_queued_messages and max_inflight_messages in \
                 mosquitto.conf; docs/mqtt.md)"
            );
        }
    }
}
