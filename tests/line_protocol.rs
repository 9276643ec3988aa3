//! Line-protocol encoding round trip: any name (spaces, commas, '=', quotes, Chinese) and any
//! value, encoded by ecogate, parses back to the same point with a parser written here from
//! InfluxDB's line-protocol reference (independent of the encoder).

use ecogate::sinks::influx::line_protocol::{
    push_f64, push_field_key, push_i64, push_measurement, push_micro, push_string_value, push_tag,
    tag_text_problem,
};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Micro(i64),
    Float(f64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Point {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, Value)>,
    ts: i64,
}

fn encode(p: &Point) -> String {
    let mut out = Vec::new();
    push_measurement(&mut out, &p.measurement);
    for (k, v) in &p.tags {
        push_tag(&mut out, k, v);
    }
    out.push(b' ');
    for (i, (k, v)) in p.fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_field_key(&mut out, k);
        out.push(b'=');
        match v {
            Value::Micro(m) => push_micro(&mut out, *m),
            Value::Float(f) => push_f64(&mut out, *f),
            Value::Text(t) => push_string_value(&mut out, t),
        }
    }
    out.push(b' ');
    push_i64(&mut out, p.ts);
    String::from_utf8(out).unwrap()
}

/// Reads up to an unescaped char in `stops`; `\` escapes only the characters in `escapable`.
fn take(
    s: &mut std::iter::Peekable<std::str::Chars<'_>>,
    stops: &[char],
    escapable: &[char],
) -> String {
    let mut out = String::new();
    while let Some(&c) = s.peek() {
        if stops.contains(&c) {
            break;
        }
        s.next();
        if c == '\\' {
            match s.peek() {
                Some(&n) if escapable.contains(&n) => {
                    out.push(n);
                    s.next();
                }
                _ => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A parsed line: measurement, tags, fields as `(key, text, was quoted)`, timestamp.
type Parsed = (
    String,
    Vec<(String, String)>,
    Vec<(String, String, bool)>,
    i64,
);

/// Parses one line; field values come back as text (numbers) or unescaped strings.
fn parse(line: &str) -> Result<Parsed, String> {
    let mut s = line.chars().peekable();
    let measurement = take(&mut s, &[',', ' '], &[',', ' ']);
    let mut tags = Vec::new();
    while s.peek() == Some(&',') {
        s.next();
        let k = take(&mut s, &['='], &[',', '=', ' ']);
        if s.next() != Some('=') {
            return Err("tag without =".into());
        }
        let v = take(&mut s, &[',', ' '], &[',', '=', ' ']);
        tags.push((k, v));
    }
    if s.next() != Some(' ') {
        return Err("no space before fields".into());
    }
    let mut fields = Vec::new();
    loop {
        let k = take(&mut s, &['='], &[',', '=', ' ']);
        if s.next() != Some('=') {
            return Err("field without =".into());
        }
        if s.peek() == Some(&'"') {
            s.next();
            let mut v = String::new();
            loop {
                match s.next() {
                    Some('\\') => match s.next() {
                        Some(n @ ('"' | '\\')) => v.push(n),
                        Some(n) => {
                            v.push('\\');
                            v.push(n);
                        }
                        None => return Err("unterminated string".into()),
                    },
                    Some('"') => break,
                    Some(c) => v.push(c),
                    None => return Err("unterminated string".into()),
                }
            }
            fields.push((k, v, true));
        } else {
            let v = take(&mut s, &[',', ' '], &[]);
            fields.push((k, v, false));
        }
        match s.next() {
            Some(',') => continue,
            Some(' ') => break,
            _ => return Err("no timestamp".into()),
        }
    }
    let ts: String = s.collect();
    Ok((
        measurement,
        tags,
        fields,
        ts.parse().map_err(|e| format!("timestamp: {e}"))?,
    ))
}

fn name() -> impl Strategy<Value = String> {
    // Letters, the characters that need escaping, quotes, Chinese, and spaces anywhere.
    proptest::collection::vec(
        prop_oneof![
            Just('a'),
            Just('Z'),
            Just('7'),
            Just(' '),
            Just(','),
            Just('='),
            Just('"'),
            Just('\''),
            Just('青'),
            Just('河'),
            Just('园'),
            Just('_'),
            Just('-'),
            Just('.'),
        ],
        1..12,
    )
    .prop_map(|v| v.into_iter().collect::<String>())
    .prop_filter("a name line protocol can carry", |s| {
        tag_text_problem(s).is_none() && !s.starts_with('#')
    })
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-9_000_000_000_000_000i64..9_000_000_000_000_000).prop_map(Value::Micro),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        "[^\n\r]{0,20}".prop_map(Value::Text),
    ]
}

fn point() -> impl Strategy<Value = Point> {
    (
        name(),
        proptest::collection::btree_map(name(), name(), 0..4),
        proptest::collection::btree_map(name(), value(), 1..4),
        any::<i64>(),
    )
        .prop_map(|(measurement, tags, fields, ts)| Point {
            measurement,
            tags: tags.into_iter().collect(),
            fields: fields.into_iter().collect(),
            ts,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn encoded_points_parse_back_the_same(p in point()) {
        let line = encode(&p);
        prop_assert!(!line.contains('\n'));
        let (measurement, tags, fields, ts) = parse(&line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        prop_assert_eq!(&measurement, &p.measurement, "{}", line);
        prop_assert_eq!(&tags, &p.tags, "{}", line);
        prop_assert_eq!(ts, p.ts);
        prop_assert_eq!(fields.len(), p.fields.len());
        for ((k, text, quoted), (want_k, want)) in fields.iter().zip(&p.fields) {
            prop_assert_eq!(k, want_k, "{}", line);
            match want {
                Value::Micro(m) => {
                    prop_assert!(!quoted);
                    // Exact decimal: the micro amount is recovered digit for digit.
                    let (int, frac) = text.trim_start_matches('-').split_once('.').unwrap_or((text.trim_start_matches('-'), ""));
                    let micro: i128 = int.parse::<i128>().unwrap() * 1_000_000
                        + format!("{frac:0<6}").parse::<i128>().unwrap();
                    let micro = if text.starts_with('-') { -micro } else { micro };
                    prop_assert_eq!(micro, i128::from(*m), "{}", text);
                }
                Value::Float(f) => {
                    prop_assert!(!quoted);
                    prop_assert_eq!(text.parse::<f64>().unwrap().to_bits(), f.to_bits(), "{}", text);
                }
                Value::Text(t) => {
                    prop_assert!(quoted);
                    prop_assert_eq!(text, t);
                }
            }
        }
    }
}

#[test]
fn a_known_hostile_line() {
    let p = Point {
        measurement: "ecogate reading,x".into(),
        tags: vec![("park".into(), r#"青河 Park, Zone=A "east""#.into())],
        fields: vec![
            ("energy kwh".into(), Value::Micro(-1_500_000)),
            ("note".into(), Value::Text(r#"say "hi" \ bye"#.into())),
        ],
        ts: 1_780_000_800_000,
    };
    assert_eq!(
        encode(&p),
        r#"ecogate\ reading\,x,park=青河\ Park\,\ Zone\=A\ "east" energy\ kwh=-1.5,note="say \"hi\" \\ bye" 1780000800000"#
    );
}
