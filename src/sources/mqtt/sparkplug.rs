//! Sparkplug B (Eclipse Sparkplug 3.0) payloads: the protobuf `Payload` of NBIRTH/DBIRTH and
//! NDATA/DDATA messages, and the metric aliases a BIRTH defines for the DATA messages after it.
//!
//! Only what readings need is decoded: the payload timestamp and, per metric, name, alias,
//! timestamp, datatype, is_null and the scalar value. Everything else (metadata, properties,
//! datasets, templates) is skipped by wire type, so a payload carrying them still decodes. A
//! hand-written decoder instead of generated code: the message is small and stable, and every
//! length is checked against what is left of the payload, so a hostile payload costs at most
//! one pass over its bytes and never allocates more than it holds.
//!
//! Alias state is kept only for configured meters and only for the metric names the
//! subscription maps to channels, so it is bounded by the configuration, not by the traffic.

use super::decode::Reject;
use crate::reading::{Quality, Reading};
use crate::units::Unit;
use std::collections::HashMap;

/// One metric of a payload, as far as readings need it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metric {
    pub name: Option<String>,
    pub alias: Option<u64>,
    pub timestamp_ms: Option<u64>,
    pub datatype: u32,
    pub is_null: bool,
    pub value: Option<Scalar>,
}

/// The scalar members of the `value` oneof.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    Int(u32),
    Long(u64),
    Float(f32),
    Double(f64),
    Bool(bool),
    /// A string, bytes, dataset, template or extension value: not a number.
    Other,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Payload {
    pub timestamp_ms: Option<u64>,
    pub metrics: Vec<Metric>,
}

struct Wire<'a> {
    bytes: &'a [u8],
}

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Result<u64, Reject> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.bytes.split_first().ok_or(Reject::Malformed)?;
            self.bytes = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Reject::Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Reject> {
        if n > self.bytes.len() {
            return Err(Reject::Malformed);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn len_delimited(&mut self) -> Result<&'a [u8], Reject> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| Reject::Malformed)?)
    }

    fn fixed32(&mut self) -> Result<[u8; 4], Reject> {
        Ok(self.take(4)?.try_into().expect("4 bytes"))
    }

    fn fixed64(&mut self) -> Result<[u8; 8], Reject> {
        Ok(self.take(8)?.try_into().expect("8 bytes"))
    }

    /// The next field's number and wire type, or `None` at the end.
    fn key(&mut self) -> Result<Option<(u64, u8)>, Reject> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let k = self.varint()?;
        Ok(Some((k >> 3, (k & 7) as u8)))
    }

    fn skip(&mut self, wire_type: u8) -> Result<(), Reject> {
        match wire_type {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.len_delimited().map(drop),
            5 => self.take(4).map(drop),
            // Groups (3, 4) are not used by Sparkplug; anything else is not protobuf.
            _ => Err(Reject::Malformed),
        }
    }
}

fn metric(bytes: &[u8]) -> Result<Metric, Reject> {
    let mut w = Wire { bytes };
    let mut m = Metric::default();
    while let Some((field, wt)) = w.key()? {
        match (field, wt) {
            (1, 2) => {
                let text =
                    std::str::from_utf8(w.len_delimited()?).map_err(|_| Reject::Malformed)?;
                m.name = Some(text.to_string());
            }
            (2, 0) => m.alias = Some(w.varint()?),
            (3, 0) => m.timestamp_ms = Some(w.varint()?),
            (4, 0) => m.datatype = w.varint()? as u32,
            (7, 0) => m.is_null = w.varint()? != 0,
            (10, 0) => m.value = Some(Scalar::Int(w.varint()? as u32)),
            (11, 0) => m.value = Some(Scalar::Long(w.varint()?)),
            (12, 5) => m.value = Some(Scalar::Float(f32::from_le_bytes(w.fixed32()?))),
            (13, 1) => m.value = Some(Scalar::Double(f64::from_le_bytes(w.fixed64()?))),
            (14, 0) => m.value = Some(Scalar::Bool(w.varint()? != 0)),
            (15..=19, 2) => {
                w.len_delimited()?;
                m.value = Some(Scalar::Other);
            }
            (_, wt) => w.skip(wt)?,
        }
    }
    Ok(m)
}

/// Decodes a Sparkplug B payload.
pub fn parse(bytes: &[u8]) -> Result<Payload, Reject> {
    let mut w = Wire { bytes };
    let mut p = Payload::default();
    while let Some((field, wt)) = w.key()? {
        match (field, wt) {
            (1, 0) => p.timestamp_ms = Some(w.varint()?),
            (2, 2) => p.metrics.push(metric(w.len_delimited()?)?),
            (_, wt) => w.skip(wt)?,
        }
    }
    Ok(p)
}

/// A metric's value as a number, by its Sparkplug datatype. Signed integers travel as their
/// two's complement in the unsigned fields (Sparkplug 3.0, 6.4.16).
pub fn number(m: &Metric) -> Result<f64, Reject> {
    let value = m.value.ok_or(Reject::MissingField)?;
    let x = match (m.datatype, value) {
        (1, Scalar::Int(v)) => f64::from(v as u8 as i8),
        (2, Scalar::Int(v)) => f64::from(v as u16 as i16),
        (3, Scalar::Int(v)) => f64::from(v as i32),
        (5..=7, Scalar::Int(v)) => f64::from(v),
        (4, Scalar::Long(v)) => v as i64 as f64,
        (8, Scalar::Long(v)) => v as f64,
        (9, Scalar::Float(v)) => f64::from(v),
        (10, Scalar::Double(v)) => v,
        (11, Scalar::Bool(v)) => f64::from(u8::from(v)),
        _ => return Err(Reject::WrongType),
    };
    if x.is_finite() {
        Ok(x)
    } else {
        Err(Reject::NotFinite)
    }
}

/// The message types that carry metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Birth,
    Data,
    /// DEATH, CMD and STATE messages: nothing to read.
    Other,
}

/// The message type of a Sparkplug topic (`spBv1.0/group/TYPE/node[/device]`); `None` for a
/// topic that is not Sparkplug B.
pub fn kind(topic: &str) -> Option<Kind> {
    let mut parts = topic.split('/');
    if parts.next() != Some("spBv1.0") {
        return None;
    }
    parts.next()?;
    Some(match parts.next()? {
        "NBIRTH" | "DBIRTH" => Kind::Birth,
        "NDATA" | "DDATA" => Kind::Data,
        _ => Kind::Other,
    })
}

/// Aliases of the mapped metrics, by meter: a BIRTH replaces the meter's set.
#[derive(Debug, Default)]
pub struct Aliases {
    by_meter: HashMap<String, HashMap<u64, usize>>,
}

impl Aliases {
    pub fn meters(&self) -> usize {
        self.by_meter.len()
    }
}

/// Readings of one BIRTH or DATA payload for `meter`. `fields` maps channels to metric names
/// (with an optional unit); `unit_of` gives a channel's configured unit. Metrics the mapping
/// does not name are ignored. A DATA message for a meter no BIRTH has been seen for, with
/// metrics known only by alias, is refused (`unknown_alias`) when nothing in it could be read.
pub fn decode(
    fields: &[(String, String, Option<Unit>)],
    meter: &str,
    kind: Kind,
    payload: &[u8],
    arrival_ms: i64,
    aliases: &mut Aliases,
    unit_of: impl Fn(&str) -> Option<Unit>,
) -> Result<Vec<Reading>, Reject> {
    let p = parse(payload)?;
    if kind == Kind::Other {
        return Ok(Vec::new());
    }
    let by_name = |name: &str| fields.iter().position(|(_, n, _)| n == name);
    if kind == Kind::Birth {
        let set: HashMap<u64, usize> = p
            .metrics
            .iter()
            .filter_map(|m| Some((m.alias?, by_name(m.name.as_deref()?)?)))
            .collect();
        aliases.by_meter.insert(meter.to_string(), set);
    }
    let known = aliases.by_meter.get(meter);
    let mut out = Vec::new();
    let mut unknown_alias = false;
    for m in &p.metrics {
        let field = match (&m.name, m.alias) {
            (Some(name), _) => by_name(name),
            (None, Some(alias)) => {
                // After a BIRTH, an alias it did not map is a metric nobody asked for, not an
                // error; before any BIRTH, no alias can be read.
                unknown_alias |= known.is_none();
                known.and_then(|k| k.get(&alias)).copied()
            }
            (None, None) => None,
        };
        let Some(i) = field else { continue };
        if m.is_null {
            continue;
        }
        let (channel, _, unit) = &fields[i];
        let unit = unit
            .or_else(|| unit_of(channel))
            .ok_or(Reject::MissingField)?;
        let ts = m.timestamp_ms.or(p.timestamp_ms);
        let ts_ms = match ts {
            None => arrival_ms,
            Some(t) => i64::try_from(t).map_err(|_| Reject::BadTimestamp)?,
        };
        out.push(Reading {
            meter: meter.to_string(),
            channel: channel.clone(),
            amount: number(m)?,
            unit,
            ts_ms,
            quality: Quality::Good,
            stamped_on_arrival: ts.is_none(),
        });
    }
    if out.is_empty() {
        return Err(if unknown_alias {
            Reject::UnknownAlias
        } else {
            Reject::MissingField
        });
    }
    Ok(out)
}

/// The Sparkplug B datatype of a Boolean metric.
const BOOLEAN: u32 = 11;

/// Asks the edge node that sent a message on `topic` to publish its BIRTH again: an NCMD with
/// `Node Control/Rebirth = true` (Sparkplug 3.0, section 6.4.5), to
/// `spBv1.0/GROUP/NCMD/NODE`. `None` for a topic that is not a node's or device's message.
pub fn rebirth_request(topic: &str, now_ms: u64) -> Option<(String, Vec<u8>)> {
    let mut parts = topic.split('/');
    if parts.next() != Some("spBv1.0") {
        return None;
    }
    let group = parts.next().filter(|g| !g.is_empty())?;
    parts.next()?;
    let node = parts.next().filter(|n| !n.is_empty())?;
    let metric = Metric {
        name: Some("Node Control/Rebirth".into()),
        alias: None,
        timestamp_ms: Some(now_ms),
        datatype: BOOLEAN,
        is_null: false,
        value: Some(Scalar::Bool(true)),
    };
    Some((
        format!("spBv1.0/{group}/NCMD/{node}"),
        encode::payload(now_ms, 0, &[metric]),
    ))
}

/// Protobuf encoding of the same subset: the rebirth request, and tests and benches that
/// publish Sparkplug.
pub mod encode {
    use super::{Metric, Scalar};

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn key(out: &mut Vec<u8>, field: u64, wire_type: u64) {
        varint(out, (field << 3) | wire_type);
    }

    fn metric(m: &Metric) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(n) = &m.name {
            key(&mut out, 1, 2);
            varint(&mut out, n.len() as u64);
            out.extend_from_slice(n.as_bytes());
        }
        if let Some(a) = m.alias {
            key(&mut out, 2, 0);
            varint(&mut out, a);
        }
        if let Some(t) = m.timestamp_ms {
            key(&mut out, 3, 0);
            varint(&mut out, t);
        }
        key(&mut out, 4, 0);
        varint(&mut out, u64::from(m.datatype));
        if m.is_null {
            key(&mut out, 7, 0);
            varint(&mut out, 1);
        }
        match m.value {
            Some(Scalar::Int(v)) => {
                key(&mut out, 10, 0);
                varint(&mut out, u64::from(v));
            }
            Some(Scalar::Long(v)) => {
                key(&mut out, 11, 0);
                varint(&mut out, v);
            }
            Some(Scalar::Float(v)) => {
                key(&mut out, 12, 5);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Some(Scalar::Double(v)) => {
                key(&mut out, 13, 1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Some(Scalar::Bool(v)) => {
                key(&mut out, 14, 0);
                varint(&mut out, u64::from(v));
            }
            Some(Scalar::Other) => {
                key(&mut out, 15, 2);
                varint(&mut out, 1);
                out.push(b'x');
            }
            None => {}
        }
        out
    }

    /// A payload with a timestamp, a sequence number and the metrics.
    pub fn payload(timestamp_ms: u64, seq: u64, metrics: &[Metric]) -> Vec<u8> {
        let mut out = Vec::new();
        key(&mut out, 1, 0);
        varint(&mut out, timestamp_ms);
        for m in metrics {
            let body = metric(m);
            key(&mut out, 2, 2);
            varint(&mut out, body.len() as u64);
            out.extend_from_slice(&body);
        }
        key(&mut out, 3, 0);
        varint(&mut out, seq);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: Option<&str>, alias: Option<u64>, datatype: u32, value: Scalar) -> Metric {
        Metric {
            name: name.map(String::from),
            alias,
            timestamp_ms: None,
            datatype,
            is_null: false,
            value: Some(value),
        }
    }

    fn kwh() -> Option<Unit> {
        Unit::parse("kWh")
    }

    #[test]
    fn every_numeric_datatype_decodes() {
        let cases = [
            (1, Scalar::Int(0xFF), -1.0),                    // Int8 -1
            (2, Scalar::Int(0xFFFE), -2.0),                  // Int16 -2
            (3, Scalar::Int(0xFFFF_FFFD), -3.0),             // Int32 -3
            (4, Scalar::Long(u64::MAX - 3), -4.0),           // Int64 -4
            (5, Scalar::Int(250), 250.0),                    // UInt8
            (6, Scalar::Int(65_000), 65_000.0),              // UInt16
            (7, Scalar::Int(4_000_000_000), 4.0e9),          // UInt32
            (8, Scalar::Long(1 << 40), 1_099_511_627_776.0), // UInt64
            (9, Scalar::Float(1.5), 1.5),
            (10, Scalar::Double(123_456.789), 123_456.789),
            (11, Scalar::Bool(true), 1.0),
        ];
        for (dt, v, want) in cases {
            let bytes = encode::payload(1, 0, &[m(Some("x"), None, dt, v)]);
            let p = parse(&bytes).unwrap();
            assert_eq!(number(&p.metrics[0]).unwrap(), want, "datatype {dt}");
        }
        // A string metric is not a number; NaN is refused.
        let p = parse(&encode::payload(
            1,
            0,
            &[m(Some("s"), None, 12, Scalar::Other)],
        ))
        .unwrap();
        assert_eq!(number(&p.metrics[0]), Err(Reject::WrongType));
        let p = parse(&encode::payload(
            1,
            0,
            &[m(Some("n"), None, 10, Scalar::Double(f64::NAN))],
        ))
        .unwrap();
        assert_eq!(number(&p.metrics[0]), Err(Reject::NotFinite));
    }

    #[test]
    fn truncated_or_garbage_payloads_are_malformed() {
        let good = encode::payload(
            1_700_000_000_000,
            7,
            &[m(Some("Energy"), Some(3), 10, Scalar::Double(5.0))],
        );
        assert!(parse(&good).is_ok());
        // Every strict prefix that cuts a field short fails cleanly (no panic).
        for n in 1..good.len() {
            let _ = parse(&good[..n]);
        }
        assert_eq!(parse(&good[..good.len() - 3]), Err(Reject::Malformed));
        // A length far beyond the payload; an 11-byte varint; wire type 7.
        assert_eq!(parse(&[0x12, 0xFF, 0xFF, 0x03]), Err(Reject::Malformed));
        assert_eq!(
            parse(&[0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(Reject::Malformed)
        );
        assert_eq!(parse(&[0x0F]), Err(Reject::Malformed));
    }

    #[test]
    fn birth_defines_aliases_that_data_uses() {
        let fields = vec![
            ("import".to_string(), "Energy/Import".to_string(), None),
            ("export".to_string(), "Energy/Export".to_string(), None),
        ];
        let mut aliases = Aliases::default();
        let unit = |_: &str| kwh();
        // DATA by alias before any BIRTH: refused, nothing kept.
        let data = encode::payload(2_000, 1, &[m(None, Some(11), 10, Scalar::Double(101.0))]);
        assert_eq!(
            decode(&fields, "m1", Kind::Data, &data, 5, &mut aliases, unit),
            Err(Reject::UnknownAlias)
        );
        assert_eq!(aliases.meters(), 0);
        let birth = encode::payload(
            1_000,
            0,
            &[
                m(Some("Energy/Import"), Some(11), 10, Scalar::Double(100.0)),
                m(Some("Energy/Export"), Some(12), 10, Scalar::Double(7.0)),
                m(Some("Voltage"), Some(13), 9, Scalar::Float(230.0)),
            ],
        );
        let r = decode(&fields, "m1", Kind::Birth, &birth, 5, &mut aliases, unit).unwrap();
        let got: Vec<(&str, f64, i64)> = r
            .iter()
            .map(|r| (r.channel.as_str(), r.amount, r.ts_ms))
            .collect();
        assert_eq!(got, vec![("import", 100.0, 1_000), ("export", 7.0, 1_000)]);
        // Now the same DATA decodes; a metric timestamp wins over the payload's.
        let mut late = m(None, Some(12), 10, Scalar::Double(7.5));
        late.timestamp_ms = Some(1_999);
        let data = encode::payload(
            2_000,
            1,
            &[m(None, Some(11), 10, Scalar::Double(101.0)), late],
        );
        let r = decode(&fields, "m1", Kind::Data, &data, 5, &mut aliases, unit).unwrap();
        let got: Vec<(&str, f64, i64)> = r
            .iter()
            .map(|r| (r.channel.as_str(), r.amount, r.ts_ms))
            .collect();
        assert_eq!(got, vec![("import", 101.0, 2_000), ("export", 7.5, 1_999)]);
        // The unmapped Voltage alias was not kept: one meter, two aliases. DATA with only that
        // alias reads nothing, and is no alias error now that a BIRTH was seen.
        assert_eq!(aliases.by_meter["m1"].len(), 2);
        let voltage = encode::payload(2_500, 2, &[m(None, Some(13), 9, Scalar::Float(231.0))]);
        assert_eq!(
            decode(&fields, "m1", Kind::Data, &voltage, 5, &mut aliases, unit),
            Err(Reject::MissingField)
        );
        // DEATH and the like read nothing and are not an error.
        assert_eq!(
            decode(
                &fields,
                "m1",
                Kind::Other,
                &encode::payload(3_000, 2, &[]),
                5,
                &mut aliases,
                unit
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn a_rebirth_request_goes_to_the_node_of_the_topic() {
        let (topic, payload) =
            rebirth_request("spBv1.0/park/DDATA/edge-7/meter-3", 1_700_000_000_000).unwrap();
        assert_eq!(topic, "spBv1.0/park/NCMD/edge-7");
        let p = parse(&payload).unwrap();
        assert_eq!(p.metrics.len(), 1);
        assert_eq!(p.metrics[0].name.as_deref(), Some("Node Control/Rebirth"));
        assert_eq!(p.metrics[0].datatype, 11);
        assert_eq!(p.metrics[0].value, Some(Scalar::Bool(true)));
        assert_eq!(
            rebirth_request("spBv1.0/park/NDATA/edge-7", 0).unwrap().0,
            "spBv1.0/park/NCMD/edge-7"
        );
        assert_eq!(rebirth_request("spBv1.0/park/NDATA", 0), None);
        assert_eq!(rebirth_request("other/park/NDATA/x", 0), None);
    }

    #[test]
    fn topic_kinds() {
        assert_eq!(kind("spBv1.0/park/DDATA/edge1/m1"), Some(Kind::Data));
        assert_eq!(kind("spBv1.0/park/NBIRTH/edge1"), Some(Kind::Birth));
        assert_eq!(kind("spBv1.0/park/DDEATH/edge1/m1"), Some(Kind::Other));
        assert_eq!(kind("park/f/s/m/telemetry"), None);
    }
}
