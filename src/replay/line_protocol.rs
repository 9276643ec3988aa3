//! InfluxDB line protocol input, as InfluxDB exports it: one point per line,
//! `measurement,meter=M[,unit=U][,other=tags] CHANNEL=VALUE[,CHANNEL=VALUE] [TIMESTAMP]`.
//!
//! The `meter` tag names the meter; each numeric field is a channel of it. The unit is the `unit`
//! tag if present, else the channel's configured unit. String and boolean fields are rejected.

use super::{InputRow, ReplayError, RowError};
use crate::reading::{Quality, Reading};
use crate::units::Unit;
use std::io::BufRead;

/// The unit of timestamps in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    Ns,
    Us,
    Ms,
    S,
}

impl Precision {
    fn to_ms(self, ts: i64) -> i64 {
        match self {
            Precision::Ns => ts.div_euclid(1_000_000),
            Precision::Us => ts.div_euclid(1_000),
            Precision::Ms => ts,
            Precision::S => ts.saturating_mul(1000),
        }
    }
}

/// Parses every line. `unit_of(meter, channel)` gives a channel's configured unit.
pub fn parse(
    text: &str,
    precision: Precision,
    now_ms: i64,
    unit_of: impl Fn(&str, &str) -> Option<Unit>,
) -> (Vec<InputRow>, Vec<RowError>) {
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    let read = parse_each(text.as_bytes(), precision, now_ms, unit_of, |row| {
        match row {
            Ok(r) => rows.push(r),
            Err(e) => errors.push(e),
        }
        Ok(())
    });
    debug_assert!(read.is_ok(), "reading from memory does not fail");
    (rows, errors)
}

/// Reads line after line, handing each row (or why it was refused) to `emit` as it is read:
/// memory does not grow with the input.
pub fn parse_each(
    mut input: impl BufRead,
    precision: Precision,
    now_ms: i64,
    unit_of: impl Fn(&str, &str) -> Option<Unit>,
    mut emit: impl FnMut(Result<InputRow, RowError>) -> Result<(), ReplayError>,
) -> Result<(), ReplayError> {
    let mut bytes = Vec::new();
    let mut line_no = 0usize;
    loop {
        bytes.clear();
        let read = input
            .read_until(b'\n', &mut bytes)
            .map_err(|e| ReplayError::Input(format!("cannot read line {}: {e}", line_no + 1)))?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let line = match std::str::from_utf8(&bytes) {
            Ok(l) => l,
            Err(e) => {
                emit(Err(RowError::new(
                    line_no,
                    "malformed_row",
                    format!("not UTF-8 text: {e}"),
                )))?;
                continue;
            }
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match parse_line(trimmed) {
            Err(msg) => emit(Err(RowError::new(line_no, "malformed_row", msg)))?,
            Ok(point) => {
                let Some(meter) = point
                    .tags
                    .iter()
                    .find(|(k, _)| k == "meter")
                    .map(|(_, v)| v.clone())
                else {
                    emit(Err(RowError::new(
                        line_no,
                        "malformed_row",
                        "no `meter` tag".into(),
                    )))?;
                    continue;
                };
                let unit_tag = point
                    .tags
                    .iter()
                    .find(|(k, _)| k == "unit")
                    .map(|(_, v)| v.as_str());
                let ts_ms = match point.timestamp {
                    None => now_ms,
                    Some(ts) => precision.to_ms(ts),
                };
                for (channel, value) in point.fields {
                    let amount = match value {
                        FieldValue::Number(n) => n,
                        FieldValue::Other(kind) => {
                            emit(Err(RowError::new(
                                line_no,
                                "bad_number",
                                format!("field `{}` is a {kind}, not a number", short(&channel)),
                            )))?;
                            continue;
                        }
                    };
                    let unit = match unit_tag {
                        Some(u) => match Unit::parse(u) {
                            Some(u) => u,
                            None => {
                                emit(Err(RowError::new(
                                    line_no,
                                    "unknown_unit",
                                    format!("unit `{}` is not known", short(u)),
                                )))?;
                                continue;
                            }
                        },
                        None => match unit_of(&meter, &channel) {
                            Some(u) => u,
                            None => {
                                emit(Err(RowError::new(
                                    line_no,
                                    "unknown_channel",
                                    format!("meter `{}` has no configured channel `{}` (and no `unit` tag)", short(&meter), short(&channel)),
                                )))?;
                                continue;
                            }
                        },
                    };
                    emit(Ok(InputRow {
                        line: line_no,
                        reading: Reading {
                            meter: meter.clone(),
                            channel,
                            amount,
                            unit,
                            ts_ms,
                            quality: Quality::Good,
                            stamped_on_arrival: false,
                        },
                    }))?;
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
enum FieldValue {
    Number(f64),
    Other(&'static str),
}

#[derive(Debug)]
struct Point {
    tags: Vec<(String, String)>,
    fields: Vec<(String, FieldValue)>,
    timestamp: Option<i64>,
}

/// Splits at `sep` where it is neither escaped nor (with `quotes`) inside a double-quoted string.
fn split(s: &str, sep: char, quotes: bool) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    let mut in_quotes = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' if quotes => in_quotes = !in_quotes,
            c if c == sep && !in_quotes => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (',' | '=' | ' ' | '\\' | '"')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_line(line: &str) -> Result<Point, String> {
    let sections: Vec<&str> = split(line, ' ', true)
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if sections.len() < 2 || sections.len() > 3 {
        return Err(format!(
            "expected `measurement[,tags] fields [timestamp]`, found {} parts",
            sections.len()
        ));
    }
    let mut head = split(sections[0], ',', false).into_iter();
    let measurement = head.next().unwrap_or_default();
    if measurement.is_empty() {
        return Err("empty measurement name".into());
    }
    let mut tags = Vec::new();
    for tag in head {
        let kv = split(tag, '=', false);
        if kv.len() != 2 || kv[0].is_empty() || kv[1].is_empty() {
            return Err(format!("tag `{}` is not key=value", short(tag)));
        }
        tags.push((unescape(kv[0]), unescape(kv[1])));
    }
    let mut fields = Vec::new();
    for field in split(sections[1], ',', true) {
        let Some(eq) = find_unescaped_eq(field) else {
            return Err(format!("field `{}` is not key=value", short(field)));
        };
        let (key, raw) = (&field[..eq], &field[eq + 1..]);
        if key.is_empty() || raw.is_empty() {
            return Err(format!("field `{}` is not key=value", short(field)));
        }
        fields.push((unescape(key), field_value(raw)?));
    }
    let timestamp = match sections.get(2) {
        None => None,
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| format!("timestamp `{}` is not an integer", short(t)))?,
        ),
    };
    Ok(Point {
        tags,
        fields,
        timestamp,
    })
}

fn find_unescaped_eq(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '=' => return Some(i),
            _ => {}
        }
    }
    None
}

fn field_value(raw: &str) -> Result<FieldValue, String> {
    if raw.starts_with('"') {
        return if raw.len() >= 2 && raw.ends_with('"') {
            Ok(FieldValue::Other("string"))
        } else {
            Err(format!("unterminated string `{}`", short(raw)))
        };
    }
    if matches!(
        raw,
        "t" | "T" | "true" | "True" | "TRUE" | "f" | "F" | "false" | "False" | "FALSE"
    ) {
        return Ok(FieldValue::Other("boolean"));
    }
    let number = raw
        .strip_suffix('i')
        .or_else(|| raw.strip_suffix('u'))
        .unwrap_or(raw);
    number
        .parse::<f64>()
        .map(FieldValue::Number)
        .map_err(|_| format!("field value `{}` is not a number", short(raw)))
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kwh(_: &str, _: &str) -> Option<Unit> {
        Unit::parse("kWh")
    }

    #[test]
    fn parses_tags_fields_escapes_and_precision() {
        let text = "energy,meter=m1,site=a\\ b import=12.5,export=3i 1714522500000000000\n\
                    # comment\n\
                    energy,meter=m2,unit=Wh import=1500 1714522500000000000\n";
        let (rows, errors) = parse(text, Precision::Ns, 0, kwh);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].reading.channel, "import");
        assert_eq!(rows[0].reading.amount, 12.5);
        assert_eq!(rows[0].reading.ts_ms, 1_714_522_500_000);
        assert_eq!(rows[1].reading.amount, 3.0);
        assert_eq!(rows[2].reading.unit.symbol, "Wh");
        assert_eq!(rows[2].line, 3);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let text = "energy,meter=m1 import=1 1\nenergy import=2 2\nenergy,meter=m1 note=\"hi there\" 3\nenergy,meter=m1 import=abc 4\ngarbage\n";
        let (rows, errors) = parse(text, Precision::S, 0, kwh);
        assert_eq!(rows.len(), 1);
        let lines: Vec<_> = errors.iter().map(|e| (e.line, e.reason)).collect();
        assert_eq!(
            lines,
            vec![
                (2, "malformed_row"),
                (3, "bad_number"),
                (4, "malformed_row"),
                (5, "malformed_row")
            ]
        );
    }
}
