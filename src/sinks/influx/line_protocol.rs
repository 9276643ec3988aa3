//! InfluxDB line protocol encoding.
//!
//! Escaping follows the protocol's rules: in the measurement, commas and spaces; in tag keys, tag
//! values and field keys, commas, equals signs and spaces; in string field values, double quotes
//! and backslashes. Newlines cannot be escaped anywhere, and a backslash in front of one of the
//! escaped characters is ambiguous to InfluxDB's own parser, so names that become tags are checked
//! for both when the configuration is read ([`tag_text_problem`]).
//!
//! Numbers held in micro units are written as exact decimals (`12.5`, not `12.499999999`), so what
//! a reader gets back is the nearest double to the accounted figure, never an artefact of
//! `f64` formatting.

/// Why `text` cannot be a tag key or value, if it cannot.
pub fn tag_text_problem(text: &str) -> Option<&'static str> {
    if text.is_empty() {
        Some("is empty")
    } else if text.contains(['\n', '\r']) {
        Some("contains a line break, which line protocol cannot carry")
    } else if text.contains('\\') {
        Some("contains a backslash, which line protocol cannot carry unambiguously in a tag")
    } else if text.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    }
}

fn needs_escape(text: &str, special: &[u8]) -> bool {
    text.bytes().any(|b| special.contains(&b))
}

fn push_escaped(out: &mut Vec<u8>, text: &str, special: &[u8]) {
    if !needs_escape(text, special) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    for &b in text.as_bytes() {
        if special.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

const MEASUREMENT_SPECIAL: &[u8] = b", ";
const KEY_SPECIAL: &[u8] = b",= ";
const STRING_SPECIAL: &[u8] = b"\"\\";

/// Appends a measurement name, escaped.
pub fn push_measurement(out: &mut Vec<u8>, name: &str) {
    push_escaped(out, name, MEASUREMENT_SPECIAL);
}

/// Appends `,key=value`, escaped. Callers keep empty tags out (line protocol has no empty tag).
pub fn push_tag(out: &mut Vec<u8>, key: &str, value: &str) {
    out.push(b',');
    push_escaped(out, key, KEY_SPECIAL);
    out.push(b'=');
    push_escaped(out, value, KEY_SPECIAL);
}

/// Appends a field key, escaped (without the `=`).
pub fn push_field_key(out: &mut Vec<u8>, key: &str) {
    push_escaped(out, key, KEY_SPECIAL);
}

/// Appends a double-quoted string field value.
pub fn push_string_value(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    push_escaped(out, text, STRING_SPECIAL);
    out.push(b'"');
}

/// Appends an amount held in millionths as an exact decimal: `-12.5`, `0.000001`, `7`.
pub fn push_micro(out: &mut Vec<u8>, micro: i64) {
    let negative = micro < 0;
    let abs = micro.unsigned_abs();
    let int = abs / 1_000_000;
    let mut frac = abs % 1_000_000;
    if negative {
        out.push(b'-');
    }
    push_u64(out, int);
    if frac != 0 {
        let mut digits = 6;
        while frac.is_multiple_of(10) {
            frac /= 10;
            digits -= 1;
        }
        out.push(b'.');
        let mut buf = [b'0'; 6];
        let mut i = digits;
        let mut f = frac;
        while i > 0 {
            i -= 1;
            buf[i] = b'0' + (f % 10) as u8;
            f /= 10;
        }
        out.extend_from_slice(&buf[..digits]);
    }
}

/// Appends a float field value. Non-finite values have no line-protocol form; callers never pass
/// them (the accounting refuses them on entry).
pub fn push_f64(out: &mut Vec<u8>, amount: f64) {
    use std::io::Write;
    debug_assert!(amount.is_finite());
    // Display prints the shortest text that reads back as the same double, never an exponent;
    // a bare `7` is a float in line protocol (integers carry an `i`).
    let _ = write!(out, "{amount}");
}

/// Appends an integer.
pub fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micro(m: i64) -> String {
        let mut out = Vec::new();
        push_micro(&mut out, m);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn micro_amounts_are_exact_decimals() {
        assert_eq!(micro(0), "0");
        assert_eq!(micro(7_000_000), "7");
        assert_eq!(micro(12_500_000), "12.5");
        assert_eq!(micro(1), "0.000001");
        assert_eq!(micro(-1_234_567), "-1.234567");
        assert_eq!(micro(i64::MIN), "-9223372036854.775808");
        assert_eq!(micro(i64::MAX), "9223372036854.775807");
    }

    #[test]
    fn names_are_escaped() {
        let mut out = Vec::new();
        push_measurement(&mut out, "a b,c=d");
        push_tag(&mut out, "k =,", "青河 园区,A=1\"");
        out.push(b' ');
        push_field_key(&mut out, "f x");
        out.push(b'=');
        push_string_value(&mut out, "say \"hi\" \\ ok");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"a\ b\,c=d,k\ \=\,=青河\ 园区\,A\=1" f\ x="say \"hi\" \\ ok""#
        );
    }

    #[test]
    fn tag_text_problems_are_named() {
        assert!(tag_text_problem("青河 Park, Zone=A \"east\"").is_none());
        assert!(tag_text_problem("a\\b").is_some());
        assert!(tag_text_problem("a\nb").is_some());
        assert!(tag_text_problem("").is_some());
    }
}
