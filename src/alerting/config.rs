//! `[alerting]`: where alert events go and how often the conditions are evaluated.

use crate::accounting::window::WindowKind;
use crate::config::raw::S;
use crate::config::Validator;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerting {
    pub webhook_url: Option<S<String>>,
    pub mqtt_topic: Option<S<String>>,
    pub interval_s: Option<S<u64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertingConfig {
    /// `http(s)://host[:port]/path` of an Alertmanager-compatible receiver (or a chat bot's
    /// webhook that takes the same JSON).
    pub webhook_url: Option<String>,
    /// A topic on the `[mqtt]` broker to publish each event to (QoS 1, one message per alert).
    pub mqtt_topic: Option<String>,
    pub interval_s: u64,
}

/// Checks `[alerting]`. `has_broker`: whether `[mqtt]` names a broker to publish to.
pub fn validate(
    v: &mut Validator<'_>,
    raw: Option<&RawAlerting>,
    has_broker: bool,
    windows: &[WindowKind],
) -> Option<AlertingConfig> {
    let a = raw?;
    let webhook_url = match &a.webhook_url {
        None => None,
        Some(u) => {
            let url = u.get_ref();
            let ok = ["http://", "https://"].iter().any(|scheme| {
                url.strip_prefix(scheme)
                    .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
            }) && reqwest::Url::parse(url).is_ok();
            if !ok {
                v.err(
                    u,
                    "alerting.webhook_url",
                    format!("`{url}`: give an http(s)://host[:port]/path URL"),
                );
                return None;
            }
            Some(url.clone())
        }
    };
    let mqtt_topic = match &a.mqtt_topic {
        None => None,
        Some(t) => {
            let topic = t.get_ref();
            if topic.is_empty() || topic.contains('+') || topic.contains('#') {
                v.err(
                    t,
                    "alerting.mqtt_topic",
                    "a topic to publish to: not empty, no wildcards",
                );
                return None;
            }
            if !has_broker {
                v.err(
                    t,
                    "alerting.mqtt_topic",
                    "alert events over MQTT need the [mqtt] broker settings",
                );
                return None;
            }
            Some(topic.clone())
        }
    };
    if webhook_url.is_none() && mqtt_topic.is_none() {
        v.err_unlocated(
            "alerting",
            "give webhook_url, mqtt_topic or both: where alert events go",
        );
        return None;
    }
    let interval_s = a.interval_s.as_ref().map_or(60, |i| *i.get_ref());
    if let (0, Some(at)) = (interval_s, a.interval_s.as_ref()) {
        v.err(at, "alerting.interval_s", "must be at least 1");
    }
    if !windows.contains(&WindowKind::Hour) || !windows.contains(&WindowKind::Year) {
        v.err_unlocated(
            "alerting",
            "alerting reads the 1h and year windows: keep both in accounting.windows",
        );
        return None;
    }
    Some(AlertingConfig {
        webhook_url,
        mqtt_topic,
        interval_s: interval_s.max(1),
    })
}
