//! MQTT configuration: the broker connection and the subscriptions that bind topics to meters.
//!
//! ```toml
//! [mqtt]
//! host = "127.0.0.1"
//! port = 1883
//! client_id = "ecogate-park-1"       # required and stable: the broker keeps our session by it
//!
//! [[mqtt.subscriptions]]
//! topic = "park/{firm}/{site}/{meter}/telemetry"   # {meter} names the meter
//! decoder = "json"                    # json | json_array | ocpp | number
//! fields = { import = "/energy/import", power = "/p" }   # channel = JSON pointer
//! timestamp = "/ts"                   # JSON pointer; absent: time of arrival
//! sequence = "/seq"                   # JSON pointer to a per-meter message counter: gaps warn
//! ```

pub use super::connect::{Broker, Tls};
use super::topic::Pattern;
use crate::config::raw::S;
use crate::config::{Meter, Validator};
use crate::units::Unit;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    pub host: Option<S<String>>,
    pub port: Option<S<u16>>,
    pub client_id: Option<S<String>>,
    pub username: Option<S<String>>,
    pub password: Option<S<String>>,
    pub keep_alive_s: Option<S<u64>>,
    pub max_packet_kib: Option<S<u32>>,
    pub max_payload_bytes: Option<S<u32>>,
    /// Subscribe to the broker's `$SYS` drop counter (mosquitto), to see the broker drop
    /// messages meant for ecogate. Off for brokers that refuse `$SYS` subscriptions harshly.
    pub broker_sys_topics: Option<S<bool>>,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub subscriptions: Vec<RawSubscription>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: S<String>,
    pub client_cert: Option<S<String>>,
    pub client_key: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubscription {
    pub topic: S<String>,
    pub meter: Option<S<String>>,
    pub qos: Option<S<u8>>,
    pub decoder: S<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, S<String>>,
    #[serde(default)]
    pub units: BTreeMap<String, S<String>>,
    pub channel: Option<S<String>>,
    pub timestamp: Option<S<String>>,
    /// A JSON pointer to a number the meter raises by one with each message: a gap means
    /// messages lost on the way (a broker's drops).
    pub sequence: Option<S<String>>,
    /// A meter of this subscription is down after this long without a reading.
    pub stale_after_s: Option<S<u64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decoder {
    /// One JSON object; each channel read at a JSON pointer, with an optional unit override.
    Json {
        fields: Vec<(String, String, Option<Unit>)>,
    },
    /// A JSON array of `{"channel", "value", "unit"?, "ts"?, "meter"?}` objects.
    JsonArray,
    /// OCPP 1.6 MeterValues (Energy.Active.Import.Register) or Start/StopTransaction
    /// (meterStart/meterStop, Wh) into one energy channel.
    Ocpp { channel: String },
    /// The payload is one number.
    Number { channel: String, unit: Option<Unit> },
    /// Sparkplug B BIRTH and DATA payloads; each channel read from the metric of that name
    /// (or its alias, once a BIRTH has defined it), with an optional unit override.
    SparkplugB {
        fields: Vec<(String, String, Option<Unit>)>,
    },
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub pattern: Pattern,
    pub topic: String,
    /// The meter, when the topic has no `{meter}` segment.
    pub meter: Option<String>,
    pub qos: u8,
    pub decoder: Decoder,
    pub timestamp: Option<String>,
    /// JSON pointer to the meter's message sequence number (`json` only).
    pub sequence: Option<String>,
    /// `stale_after_s` (default 600 s) in milliseconds.
    pub stale_after_ms: i64,
}

#[derive(Debug, Clone, Default)]
pub struct MqttConfig {
    pub broker: Option<Broker>,
    pub subscriptions: Vec<Subscription>,
}

/// A publishing meter is down after 10 minutes without a reading: most publish every 1 to 5.
pub const DEFAULT_STALE_AFTER_S: u64 = 600;

fn pointer_ok(p: &str) -> bool {
    p.is_empty() || p.starts_with('/')
}

pub fn validate(v: &mut Validator<'_>, raw: &RawMqtt, meters: &[Meter]) -> MqttConfig {
    if raw.subscriptions.is_empty() && raw.host.is_none() {
        return MqttConfig::default();
    }
    let host = raw
        .host
        .as_ref()
        .map_or("127.0.0.1".to_string(), |h| h.get_ref().clone());
    let client_id = match &raw.client_id {
        Some(c) if !c.get_ref().trim().is_empty() && c.get_ref().len() <= 64 => c.get_ref().clone(),
        Some(c) => {
            v.err(c, "mqtt.client_id", "must be 1-64 characters");
            String::new()
        }
        None => {
            let at = raw.host.as_ref().map(|h| S::new(h.span(), ()));
            let msg = "a stable client_id is required: the broker keeps ecogate's session (and its unacknowledged messages) by it";
            match at {
                Some(at) => v.err(&at, "mqtt.client_id", msg),
                None => v.err(&raw.subscriptions[0].topic, "mqtt.client_id", msg),
            }
            String::new()
        }
    };
    let max_packet_kib = raw.max_packet_kib.as_ref().map_or(1024, |m| *m.get_ref());
    if !(1..=256 * 1024).contains(&max_packet_kib) {
        v.err(
            raw.max_packet_kib.as_ref().unwrap(),
            "mqtt.max_packet_kib",
            "must be 1 to 262144",
        );
    }
    let max_payload_bytes = raw
        .max_payload_bytes
        .as_ref()
        .map_or(64 * 1024, |m| *m.get_ref()) as usize;
    let tls = raw.tls.as_ref().map(|t| Tls {
        ca_file: v.relative_to_config(t.ca_file.get_ref()),
        client_cert: t
            .client_cert
            .as_ref()
            .map(|c| v.relative_to_config(c.get_ref())),
        client_key: t
            .client_key
            .as_ref()
            .map(|c| v.relative_to_config(c.get_ref())),
    });
    if let (Some(t), Some(files)) = (&raw.tls, &tls) {
        if t.client_cert.is_some() != t.client_key.is_some() {
            v.err(
                &t.ca_file,
                "mqtt.tls",
                "give client_cert and client_key together",
            );
        } else if let Err(e) = super::connect::tls_config(files) {
            // What `run` would fail on at its first connection, said by `check`.
            v.err(
                &t.ca_file,
                "mqtt.tls",
                format!(
                    "{}: give PEM files that exist (paths are relative to the configuration file's folder)",
                    crate::util::error_chain(&e)
                ),
            );
        }
    }
    let broker = Broker {
        host,
        port: raw
            .port
            .as_ref()
            .map_or(if tls.is_some() { 8883 } else { 1883 }, |p| *p.get_ref()),
        client_id,
        username: raw.username.as_ref().map(|u| u.get_ref().clone()),
        password: raw
            .password
            .as_ref()
            .map(|p| crate::util::Secret::new(p.get_ref().clone())),
        keep_alive_s: raw
            .keep_alive_s
            .as_ref()
            .map_or(30, |k| *k.get_ref())
            .clamp(5, 3600),
        max_packet_bytes: max_packet_kib as usize * 1024,
        max_payload_bytes,
        sys_topics: raw.broker_sys_topics.as_ref().is_none_or(|b| *b.get_ref()),
        tls,
    };
    let mut subscriptions = Vec::new();
    for (i, s) in raw.subscriptions.iter().enumerate() {
        let key = format!("mqtt.subscriptions[{i}]");
        let pattern = match Pattern::parse(s.topic.get_ref()) {
            Ok(p) => p,
            Err(e) => {
                v.err(&s.topic, format!("{key}.topic"), e);
                continue;
            }
        };
        let fixed_meter = match (&s.meter, pattern.has("meter")) {
            (Some(m), false) => match meters.iter().find(|x| &x.id == m.get_ref()) {
                Some(x) => Some(x),
                None => {
                    v.err(
                        m,
                        format!("{key}.meter"),
                        format!("unknown meter `{}`", m.get_ref()),
                    );
                    continue;
                }
            },
            (None, true) => None,
            (Some(m), true) => {
                v.err(
                    m,
                    format!("{key}.meter"),
                    "the topic names the meter with {meter}; drop `meter`",
                );
                continue;
            }
            (None, false) => {
                v.err(
                    &s.topic,
                    format!("{key}.topic"),
                    "name the meter: a {meter} segment in the topic, or `meter`",
                );
                continue;
            }
        };
        let qos = s.qos.as_ref().map_or(1, |q| *q.get_ref());
        if qos > 1 {
            v.err(
                s.qos.as_ref().unwrap(),
                format!("{key}.qos"),
                "0 or 1 (QoS 1 with acknowledgement after the store has the data)",
            );
        }
        let unit_of = |v: &mut Validator<'_>, ch: &str, at: &S<String>| -> Option<Option<Unit>> {
            let given = match s.units.get(ch) {
                None => None,
                Some(u) => match Unit::parse(u.get_ref()) {
                    Some(u) => Some(u),
                    None => {
                        v.err(
                            u,
                            format!("{key}.units.{ch}"),
                            format!("unknown unit `{}`", u.get_ref()),
                        );
                        return None;
                    }
                },
            };
            if let Some(m) = fixed_meter {
                match m.channels.iter().find(|c| c.id == ch) {
                    None => {
                        v.err(
                            at,
                            key.to_string(),
                            format!("meter `{}` has no channel `{ch}`", m.id),
                        );
                        return None;
                    }
                    Some(c) if given.is_some_and(|g| g.dimension != c.unit.dimension) => {
                        v.err(
                            at,
                            format!("{key}.units.{ch}"),
                            format!("does not fit channel `{ch}` in {}", c.unit),
                        );
                        return None;
                    }
                    Some(_) => {}
                }
            }
            Some(given)
        };
        // `fields = { channel = "where" }` of the json and sparkplug_b decoders: every entry
        // checked by `bad` and against the meter's channels; `None` after reporting errors.
        let fields_of = |v: &mut Validator<'_>,
                         example: &str,
                         bad: &dyn Fn(&str) -> Option<&'static str>|
         -> Option<Vec<(String, String, Option<Unit>)>> {
            if s.fields.is_empty() {
                v.err(
                    &s.decoder,
                    format!("{key}.fields"),
                    format!(
                        "the {} decoder needs fields = {{ channel = {example} }}",
                        s.decoder.get_ref()
                    ),
                );
                return None;
            }
            let mut fields = Vec::new();
            for (ch, at) in &s.fields {
                if let Some(problem) = bad(at.get_ref()) {
                    v.err(at, format!("{key}.fields.{ch}"), problem);
                    continue;
                }
                if let Some(u) = unit_of(v, ch, at) {
                    fields.push((ch.clone(), at.get_ref().clone(), u));
                }
            }
            Some(fields)
        };
        let decoder = match s.decoder.get_ref().as_str() {
            "json" => {
                let Some(fields) = fields_of(v, "\"/json/pointer\"", &|ptr| {
                    (!pointer_ok(ptr)).then_some(
                        "a JSON pointer starts with / (RFC 6901), e.g. \"/energy/import\"",
                    )
                }) else {
                    continue;
                };
                Decoder::Json { fields }
            }
            "json_array" => Decoder::JsonArray,
            "sparkplug_b" => {
                if !s.topic.get_ref().starts_with("spBv1.0/") {
                    v.err(
                        &s.topic,
                        format!("{key}.topic"),
                        "a Sparkplug B topic starts with spBv1.0/, e.g. \"spBv1.0/{group}/{type}/{node}/{meter}\"",
                    );
                    continue;
                }
                if let Some(t) = &s.timestamp {
                    v.err(
                        t,
                        format!("{key}.timestamp"),
                        "Sparkplug B payloads carry their own timestamps; drop `timestamp`",
                    );
                    continue;
                }
                let Some(fields) = fields_of(v, "\"metric name\"", &|name| {
                    name.is_empty()
                        .then_some("the Sparkplug metric name is empty")
                }) else {
                    continue;
                };
                Decoder::SparkplugB { fields }
            }
            "ocpp" | "number" => {
                let Some(ch) = &s.channel else {
                    v.err(
                        &s.decoder,
                        format!("{key}.channel"),
                        format!("the {} decoder needs `channel`", s.decoder.get_ref()),
                    );
                    continue;
                };
                let Some(unit) = unit_of(v, ch.get_ref(), ch) else {
                    continue;
                };
                if s.decoder.get_ref() == "ocpp" {
                    Decoder::Ocpp {
                        channel: ch.get_ref().clone(),
                    }
                } else {
                    Decoder::Number {
                        channel: ch.get_ref().clone(),
                        unit,
                    }
                }
            }
            other => {
                v.err(
                    &s.decoder,
                    format!("{key}.decoder"),
                    format!(
                        "decoder `{other}`: expected json, json_array, ocpp, number or sparkplug_b"
                    ),
                );
                continue;
            }
        };
        if let Some(t) = &s.timestamp {
            if !pointer_ok(t.get_ref()) {
                v.err(
                    t,
                    format!("{key}.timestamp"),
                    "a JSON pointer starts with /",
                );
            }
        }
        if let Some(q) = &s.sequence {
            if !matches!(decoder, Decoder::Json { .. }) {
                v.err(
                    q,
                    format!("{key}.sequence"),
                    "a message sequence number is read from the json decoder's payloads only",
                );
                continue;
            }
            if !pointer_ok(q.get_ref()) {
                v.err(q, format!("{key}.sequence"), "a JSON pointer starts with /");
            }
        }
        let stale_after_ms = match &s.stale_after_s {
            None => DEFAULT_STALE_AFTER_S as i64 * 1000,
            Some(st) if *st.get_ref() == 0 || *st.get_ref() > 31 * 86_400 => {
                v.err(
                    st,
                    format!("{key}.stale_after_s"),
                    "between 1 s and 31 days: how long the meter may publish nothing before it counts as down",
                );
                continue;
            }
            Some(st) => *st.get_ref() as i64 * 1000,
        };
        subscriptions.push(Subscription {
            stale_after_ms,
            topic: s.topic.get_ref().clone(),
            pattern,
            meter: fixed_meter.map(|m| m.id.clone()),
            qos,
            decoder,
            timestamp: s.timestamp.as_ref().map(|t| t.get_ref().clone()),
            sequence: s.sequence.as_ref().map(|q| q.get_ref().clone()),
        });
    }
    MqttConfig {
        broker: Some(broker),
        subscriptions,
    }
}
