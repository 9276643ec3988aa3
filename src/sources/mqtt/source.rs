//! The MQTT source as the registry sees it: its `[mqtt]` section, start, health and probe.

use super::config::{MqttConfig, RawMqtt};
use crate::config::{Config, Meter, Validator};
use crate::sources::health::Reason;
use crate::sources::{
    BrokerOptions, ProbeFuture, ProbeOutput, SourceConfig, SourceError, SourceKind, Start, Started,
};
use std::sync::Arc;
use std::time::Duration;

/// The registry's handle on the MQTT source.
pub struct Mqtt;

impl SourceKind for Mqtt {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn reasons(&self) -> Vec<&'static Reason> {
        super::health::REASONS.to_vec()
    }

    fn configure(&self, v: &mut Validator<'_>, meters: &[Meter]) -> Box<dyn SourceConfig> {
        let raw = crate::sources::section!(v, mqtt: RawMqtt);
        Box::new(super::config::validate(v, &raw, meters))
    }
}

impl SourceConfig for MqttConfig {
    fn kind(&self) -> &'static str {
        "mqtt"
    }

    fn enabled(&self) -> bool {
        self.broker.is_some()
    }

    fn meters(&self) -> Vec<String> {
        let mut meters: Vec<String> = self
            .subscriptions
            .iter()
            .filter_map(|s| s.meter.clone())
            .collect();
        meters.sort();
        meters.dedup();
        meters
    }

    fn identities(&self) -> Vec<String> {
        self.broker
            .iter()
            .map(|b| format!("MQTT client_id `{}` on {}:{}", b.client_id, b.host, b.port))
            .collect()
    }

    fn retain_meters(&mut self, keep: &dyn Fn(&str) -> bool) {
        // A `{meter}` topic serves any meter; its messages for other shards' meters are
        // passed over as they come (counted as `other_shard`).
        self.subscriptions
            .retain(|s| s.meter.as_deref().is_none_or(keep));
    }

    fn fingerprint(&self, park: &Config, read_elsewhere: &[String]) -> String {
        // Topics bind to any meter of the park (a `{meter}` segment), so the park's meters and
        // time zone are part of what it runs on; the password is not in `Debug`.
        let password = self
            .broker
            .as_ref()
            .and_then(|b| b.password.as_ref())
            .map_or("", |p| p.expose());
        format!(
            "{self:?}|{password}|{:?}|{}|{read_elsewhere:?}",
            park.meters, park.park.timezone,
        )
    }

    fn describe(&self) -> String {
        match &self.broker {
            Some(b) => format!(
                "mqtt ({}:{}, {} subscriptions)",
                b.host,
                b.port,
                self.subscriptions.len()
            ),
            None => "mqtt (no broker)".into(),
        }
    }

    fn summary(&self) -> Vec<String> {
        let Some(b) = &self.broker else {
            return Vec::new();
        };
        let mut lines = vec![format!(
            "mqtt {}:{} as {}{}: {} subscription(s)",
            b.host,
            b.port,
            b.client_id,
            if b.tls.is_some() { " over TLS" } else { "" },
            self.subscriptions.len()
        )];
        for s in &self.subscriptions {
            lines.push(format!("  {} (qos {})", s.topic, s.qos));
        }
        lines
    }

    fn start(&self, start: Start) -> Result<Started, SourceError> {
        let m = super::spawn(
            self,
            start.park,
            start.ctx,
            start.metrics.clone(),
            &start.read_elsewhere,
        )?;
        Ok(Started {
            tasks: vec![m.task],
            refresh: Vec::new(),
            checks: vec![super::metrics::readiness(self, &start.metrics)],
            health: vec![m.health],
            notices: vec![super::metrics::notices(&start.metrics)],
        })
    }

    fn probe<'a>(
        &'a self,
        park: &'a Config,
        meter: &'a str,
        listen: Duration,
        out: ProbeOutput<'a>,
    ) -> Option<ProbeFuture<'a>> {
        self.broker.as_ref()?;
        Some(Box::pin(async move {
            let heard = super::probe::probe(self, park, meter, listen, &mut *out)
                .await
                .map_err(|e| anyhow::Error::new(e).context("mqtt"))?;
            let refused: Vec<String> = heard
                .refused
                .iter()
                .map(|(r, n)| format!("{n} {r}"))
                .collect();
            out(format!(
                "{} message(s) for {meter}: {} decoded, {} refused{}",
                heard.messages,
                heard.decoded,
                heard.refused.values().sum::<u64>(),
                if refused.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", refused.join(", "))
                }
            ));
            Ok(heard.decoded > 0)
        }))
    }

    fn broker_options(&self) -> Option<BrokerOptions> {
        let b = self.broker.clone()?;
        Some(Arc::new(move |suffix: &str| {
            super::connect::base_options(&b, &format!("{}-{suffix}", b.client_id))
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        }))
    }
}
