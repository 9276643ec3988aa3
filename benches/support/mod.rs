//! What the MQTT benches share: CPU and memory of a process from /proc, medians, and a fast
//! publisher.

#![allow(dead_code)]

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::time::Duration;

pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// This process's CPU ticks: the publisher and the bare subscriber run in it.
pub fn self_ticks() -> u64 {
    cpu_ticks(std::process::id())
}

/// CPU ticks (1/100 s) over `secs` as a percentage of one core.
pub fn pct(ticks: u64, secs: f64) -> f64 {
    ticks as f64 / 100.0 / secs.max(1e-9) * 100.0
}

pub fn hwm_kb(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:")
}

pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

pub fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// ECOGATE_BENCH_RATE: the publisher's pace in messages a second (as fast as it can without).
pub fn publish_rate() -> Option<f64> {
    std::env::var("ECOGATE_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|r: &f64| *r > 0.0)
}

pub async fn publish(port: u16, id: &str, msgs: Vec<(String, Vec<u8>)>, qos: QoS) {
    let rate = publish_rate();
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_inflight(1000).set_request_channel_capacity(10_000);
    let (client, mut ev) = AsyncClient::new(o, 10_000);
    let n = msgs.len();
    let sender = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for (i, (t, p)) in msgs.into_iter().enumerate() {
            if let Some(rate) = rate {
                // In steps of 10 ms: a timer per message would be coarser than the pace.
                if i % ((rate / 100.0).ceil() as usize).max(1) == 0 {
                    tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate))
                        .await;
                }
            }
            client.publish(t, qos, false, p).await.unwrap();
        }
        client
    });
    let mut acked = 0;
    if qos == QoS::AtLeastOnce {
        while acked < n {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = ev.poll().await {
                acked += 1;
            }
        }
    } else {
        // Drive the event loop until the sender is done and its requests have gone out.
        let client = loop {
            tokio::select! {
                r = ev.poll() => { r.unwrap(); }
            }
            if sender.is_finished() {
                break sender.await.unwrap();
            }
        };
        client.disconnect().await.unwrap();
        while let Ok(e) = ev.poll().await {
            if matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    }
}
