//! Payload decoders: bytes of one message -> readings, or the reason it was refused. Pure.

use super::config::{Decoder, Subscription};
use crate::reading::{Quality, Reading};
use crate::units::Unit;
use crate::util::timestamp;
use chrono_tz::Tz;
use serde_json::Value;

/// Why a message gave no readings. Fixed set: these are metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    Oversized,
    UnmatchedTopic,
    UnknownMeter,
    Malformed,
    WrongType,
    MissingField,
    NotFinite,
    BadTimestamp,
    UnknownUnit,
    /// A Sparkplug B DATA metric named only by an alias no BIRTH has defined.
    UnknownAlias,
    /// A QoS 2 delivery, which no subscription asks for.
    WrongQos,
    /// A meter another instance of a split park accounts: not refused, passed over (not in
    /// `ALL`: it is counted as a message result, not a refusal).
    OtherShard,
}

impl Reject {
    pub const ALL: &'static [Reject] = &[
        Reject::Oversized,
        Reject::UnmatchedTopic,
        Reject::UnknownMeter,
        Reject::Malformed,
        Reject::WrongType,
        Reject::MissingField,
        Reject::NotFinite,
        Reject::BadTimestamp,
        Reject::UnknownUnit,
        Reject::UnknownAlias,
        Reject::WrongQos,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reject::Oversized => "oversized",
            Reject::UnmatchedTopic => "unmatched_topic",
            Reject::UnknownMeter => "unknown_meter",
            Reject::Malformed => "malformed",
            Reject::WrongType => "wrong_type",
            Reject::MissingField => "missing_field",
            Reject::NotFinite => "not_finite",
            Reject::BadTimestamp => "bad_timestamp",
            Reject::UnknownUnit => "unknown_unit",
            Reject::UnknownAlias => "unknown_alias",
            Reject::WrongQos => "wrong_qos",
            Reject::OtherShard => "other_shard",
        }
    }
}

/// What the decoder needs to know about the configured meters.
pub trait Meters {
    fn unit(&self, meter: &str, channel: &str) -> Option<Unit>;
    fn exists(&self, meter: &str) -> bool;
}

/// RFC 6901 lookup, as `Value::pointer`, without its two allocations per token (it unescapes
/// `~1` and `~0` even where there are none): this runs for every field of every message.
fn lookup<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(doc);
    }
    let rest = pointer.strip_prefix('/')?;
    let mut target = doc;
    for token in rest.split('/') {
        let unescaped;
        let token = if token.contains('~') {
            unescaped = token.replace("~1", "/").replace("~0", "~");
            unescaped.as_str()
        } else {
            token
        };
        target = match target {
            Value::Object(map) => map.get(token)?,
            Value::Array(list) => {
                if token.starts_with('+') || (token.starts_with('0') && token.len() > 1) {
                    return None;
                }
                list.get(token.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(target)
}

fn number(v: &Value) -> Result<f64, Reject> {
    let x = match v {
        Value::Number(n) => n.as_f64().ok_or(Reject::WrongType)?,
        // Meters and OCPP send numbers as strings ("123.4").
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| Reject::WrongType)?,
        _ => return Err(Reject::WrongType),
    };
    if x.is_finite() {
        Ok(x)
    } else {
        Err(Reject::NotFinite)
    }
}

fn ts(v: Option<&Value>, arrival_ms: i64, tz: Tz) -> Result<i64, Reject> {
    match v {
        None | Some(Value::Null) => Ok(arrival_ms),
        Some(Value::Number(n)) => {
            // serde_json prints a float as its shortest round-trip form: `1796172360.458`.
            let text = match n.as_i64() {
                Some(i) => i.to_string(),
                None => n
                    .as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f.to_string())
                    .ok_or(Reject::BadTimestamp)?,
            };
            timestamp::parse(&text, tz).map_err(|_| Reject::BadTimestamp)
        }
        Some(Value::String(s)) => timestamp::parse(s, tz).map_err(|_| Reject::BadTimestamp),
        Some(_) => Err(Reject::BadTimestamp),
    }
}

fn reading(meter: &str, channel: &str, amount: f64, unit: Unit, ts_ms: i64) -> Reading {
    Reading {
        meter: meter.to_string(),
        channel: channel.to_string(),
        amount,
        unit,
        ts_ms,
        quality: Quality::Good,
        stamped_on_arrival: false,
    }
}

/// Decodes one message for `meter`. A channel the meter does not have is left to the pipeline,
/// which refuses and counts it.
pub fn decode(
    sub: &Subscription,
    meter: &str,
    payload: &[u8],
    arrival_ms: i64,
    tz: Tz,
    meters: &dyn Meters,
) -> Result<Vec<Reading>, Reject> {
    decode_sequenced(sub, meter, payload, arrival_ms, tz, meters).map(|(r, _)| r)
}

/// [`decode`], and the message's sequence number where the subscription has `sequence` and the
/// payload a non-negative integer there (anything else there: no number, the readings stand).
pub fn decode_sequenced(
    sub: &Subscription,
    meter: &str,
    payload: &[u8],
    arrival_ms: i64,
    tz: Tz,
    meters: &dyn Meters,
) -> Result<(Vec<Reading>, Option<u64>), Reject> {
    let mut seq = None;
    let mut out = decode_stamped(sub, meter, payload, arrival_ms, tz, meters, &mut seq)?;
    // A payload time equal to the arrival to the millisecond is as good as one: the two mark
    // the same instant either way.
    for r in &mut out {
        r.stamped_on_arrival = r.ts_ms == arrival_ms;
    }
    Ok((out, seq))
}

fn decode_stamped(
    sub: &Subscription,
    meter: &str,
    payload: &[u8],
    arrival_ms: i64,
    tz: Tz,
    meters: &dyn Meters,
    seq: &mut Option<u64>,
) -> Result<Vec<Reading>, Reject> {
    let unit_for = |channel: &str, given: Option<Unit>| {
        given
            .or_else(|| meters.unit(meter, channel))
            .ok_or(Reject::MissingField)
    };
    if let Decoder::Number { channel, unit } = &sub.decoder {
        let text = std::str::from_utf8(payload).map_err(|_| Reject::Malformed)?;
        let x: f64 = text.trim().parse().map_err(|_| Reject::Malformed)?;
        if !x.is_finite() {
            return Err(Reject::NotFinite);
        }
        return Ok(vec![reading(
            meter,
            channel,
            x,
            unit_for(channel, *unit)?,
            arrival_ms,
        )]);
    }
    let doc: Value = serde_json::from_slice(payload).map_err(|_| Reject::Malformed)?;
    let stamp = |doc: &Value| {
        ts(
            sub.timestamp.as_deref().and_then(|p| lookup(doc, p)),
            arrival_ms,
            tz,
        )
    };
    match &sub.decoder {
        Decoder::Number { .. } => unreachable!("handled above"),
        // Stateful (aliases): the client decodes these with `sparkplug::decode`. A protobuf
        // payload is not JSON, so this arm is not reached either.
        Decoder::SparkplugB { .. } => Err(Reject::Malformed),
        Decoder::Json { fields } => {
            if !doc.is_object() {
                return Err(Reject::WrongType);
            }
            let ts_ms = stamp(&doc)?;
            *seq = sub
                .sequence
                .as_deref()
                .and_then(|p| lookup(&doc, p))
                .and_then(Value::as_u64);
            let mut out = Vec::with_capacity(fields.len());
            for (channel, pointer, unit) in fields {
                let Some(v) = lookup(&doc, pointer) else {
                    continue;
                };
                out.push(reading(
                    meter,
                    channel,
                    number(v)?,
                    unit_for(channel, *unit)?,
                    ts_ms,
                ));
            }
            if out.is_empty() {
                return Err(Reject::MissingField);
            }
            Ok(out)
        }
        Decoder::JsonArray => {
            let items = doc.as_array().ok_or(Reject::WrongType)?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let obj = item.as_object().ok_or(Reject::WrongType)?;
                let m = match obj.get("meter") {
                    None => meter,
                    Some(Value::String(m)) if meters.exists(m) => m.as_str(),
                    Some(Value::String(_)) => return Err(Reject::UnknownMeter),
                    Some(_) => return Err(Reject::WrongType),
                };
                let channel = obj
                    .get("channel")
                    .and_then(Value::as_str)
                    .ok_or(Reject::MissingField)?;
                let amount = number(obj.get("value").ok_or(Reject::MissingField)?)?;
                let unit = match obj.get("unit") {
                    None => meters.unit(m, channel).ok_or(Reject::MissingField)?,
                    Some(Value::String(u)) => Unit::parse(u).ok_or(Reject::UnknownUnit)?,
                    Some(_) => return Err(Reject::WrongType),
                };
                let ts_ms = ts(obj.get("ts").or(obj.get("timestamp")), arrival_ms, tz)?;
                out.push(reading(m, channel, amount, unit, ts_ms));
            }
            if out.is_empty() {
                return Err(Reject::MissingField);
            }
            Ok(out)
        }
        Decoder::Ocpp { channel } => {
            // StartTransaction / StopTransaction: the register at start or stop, in Wh.
            for key in ["meterStop", "meterStart"] {
                if let Some(v) = doc.get(key) {
                    let wh = number(v)?;
                    let ts_ms = ts(doc.get("timestamp"), arrival_ms, tz)?;
                    return Ok(vec![reading(
                        meter,
                        channel,
                        wh,
                        Unit::parse("Wh").expect("known unit"),
                        ts_ms,
                    )]);
                }
            }
            // MeterValues: the Energy.Active.Import.Register samples (the default measurand).
            let values = doc
                .get("meterValue")
                .and_then(Value::as_array)
                .ok_or(Reject::MissingField)?;
            let mut out = Vec::new();
            for mv in values {
                let ts_ms = ts(mv.get("timestamp"), arrival_ms, tz)?;
                let samples = mv
                    .get("sampledValue")
                    .and_then(Value::as_array)
                    .ok_or(Reject::WrongType)?;
                for s in samples {
                    let measurand = s
                        .get("measurand")
                        .and_then(Value::as_str)
                        .unwrap_or("Energy.Active.Import.Register");
                    if measurand != "Energy.Active.Import.Register" {
                        continue;
                    }
                    let unit = match s.get("unit").and_then(Value::as_str) {
                        None | Some("Wh") => Unit::parse("Wh"),
                        Some("kWh") => Unit::parse("kWh"),
                        Some(_) => return Err(Reject::UnknownUnit),
                    }
                    .expect("known unit");
                    out.push(reading(
                        meter,
                        channel,
                        number(s.get("value").ok_or(Reject::MissingField)?)?,
                        unit,
                        ts_ms,
                    ));
                }
            }
            if out.is_empty() {
                return Err(Reject::MissingField);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::topic::Pattern;
    use super::*;

    struct M;
    impl Meters for M {
        fn unit(&self, _: &str, channel: &str) -> Option<Unit> {
            match channel {
                "import" => Unit::parse("kWh"),
                "power" => Unit::parse("kW"),
                _ => None,
            }
        }
        fn exists(&self, meter: &str) -> bool {
            meter.starts_with('m')
        }
    }

    fn sub(decoder: Decoder, timestamp: Option<&str>) -> Subscription {
        Subscription {
            pattern: Pattern::parse("t/{meter}").unwrap(),
            topic: "t/{meter}".into(),
            meter: None,
            qos: 1,
            decoder,
            timestamp: timestamp.map(String::from),
            sequence: None,
            stale_after_ms: 600_000,
        }
    }

    const TZ: Tz = chrono_tz::Asia::Shanghai;

    #[test]
    fn pointers_resolve_as_serde_json_does() {
        let doc: Value = serde_json::from_str(r#"{"a":{"b/c":[10,{"d~e":5}]},"":1}"#).unwrap();
        for p in [
            "",
            "/a",
            "/a/b~1c",
            "/a/b~1c/0",
            "/a/b~1c/1/d~0e",
            "/",
            "/a/b~1c/01",
            "/a/b~1c/+1",
            "/x",
            "a",
            "/a/b~1c/9",
        ] {
            assert_eq!(lookup(&doc, p), doc.pointer(p), "{p}");
        }
    }

    #[test]
    fn json_fields_by_pointer_with_payload_time() {
        let s = sub(
            Decoder::Json {
                fields: vec![
                    ("import".into(), "/e/in".into(), None),
                    ("power".into(), "/p".into(), Unit::parse("W")),
                ],
            },
            Some("/ts"),
        );
        let r = decode(
            &s,
            "m1",
            br#"{"e":{"in":"1234.5"},"p":1500,"ts":1714522500000}"#,
            0,
            TZ,
            &M,
        )
        .unwrap();
        assert_eq!(
            (r[0].amount, r[0].unit.symbol, r[0].ts_ms),
            (1234.5, "kWh", 1_714_522_500_000)
        );
        assert_eq!((r[1].amount, r[1].unit.symbol), (1500.0, "W"));
        // A float epoch in seconds is a timestamp too.
        let f = decode(
            &s,
            "m1",
            br#"{"e":{"in":1.0},"p":1,"ts":1796172360.458}"#,
            0,
            TZ,
            &M,
        )
        .unwrap();
        assert_eq!(f[0].ts_ms, 1_796_172_360_458);
        assert_eq!(
            decode(&s, "m1", b"{not json", 0, TZ, &M),
            Err(Reject::Malformed)
        );
        assert_eq!(
            decode(&s, "m1", br#"{"p":true}"#, 0, TZ, &M),
            Err(Reject::WrongType)
        );
        assert_eq!(
            decode(&s, "m1", br#"{"x":1}"#, 0, TZ, &M),
            Err(Reject::MissingField)
        );
        assert_eq!(
            decode(&s, "m1", br#"{"p":1,"ts":"soon"}"#, 0, TZ, &M),
            Err(Reject::BadTimestamp)
        );
        assert_eq!(
            decode(&s, "m1", br#"[1,2]"#, 0, TZ, &M),
            Err(Reject::WrongType)
        );
    }

    #[test]
    fn arrays_ocpp_and_numbers() {
        let a = sub(Decoder::JsonArray, None);
        let r = decode(&a, "m1", br#"[{"channel":"import","value":5,"unit":"MWh","ts":"2024-05-01T00:15:00Z"},{"meter":"m2","channel":"power","value":"7"}]"#, 42, TZ, &M).unwrap();
        assert_eq!((r[0].unit.symbol, r[0].ts_ms), ("MWh", 1_714_522_500_000));
        assert_eq!(
            (r[1].meter.as_str(), r[1].amount, r[1].ts_ms),
            ("m2", 7.0, 42)
        );
        assert_eq!(
            decode(
                &a,
                "m1",
                br#"[{"meter":"zz","channel":"x","value":1}]"#,
                0,
                TZ,
                &M
            ),
            Err(Reject::UnknownMeter)
        );

        let o = sub(
            Decoder::Ocpp {
                channel: "import".into(),
            },
            None,
        );
        let mv = br#"{"connectorId":1,"meterValue":[{"timestamp":"2024-05-01T00:15:00Z","sampledValue":[{"value":"12345","measurand":"Energy.Active.Import.Register","unit":"Wh"},{"value":"7","measurand":"Power.Active.Import","unit":"W"}]}]}"#;
        let r = decode(&o, "m1", mv, 0, TZ, &M).unwrap();
        assert_eq!((r.len(), r[0].amount, r[0].unit.symbol), (1, 12345.0, "Wh"));
        let stop = br#"{"transactionId":9,"meterStop":20500,"timestamp":"2024-05-01T01:00:00Z"}"#;
        assert_eq!(
            decode(&o, "m1", stop, 0, TZ, &M).unwrap()[0].amount,
            20500.0
        );

        let n = sub(
            Decoder::Number {
                channel: "import".into(),
                unit: None,
            },
            None,
        );
        assert_eq!(
            decode(&n, "m1", b" 99.5 ", 7, TZ, &M).unwrap()[0].amount,
            99.5
        );
        assert_eq!(decode(&n, "m1", b"NaN", 7, TZ, &M), Err(Reject::NotFinite));
        assert_eq!(decode(&n, "m1", b"\xff", 7, TZ, &M), Err(Reject::Malformed));
    }
}
