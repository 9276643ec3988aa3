//! Timestamps as meter exports write them.

use chrono::{DateTime, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// Parses RFC 3339 (`2024-05-01T08:15:00+08:00`), a local wall time in the park's zone
/// (`2024-05-01 08:15:00`, as most meter exports write it), or an integer epoch whose unit is
/// told by its size: seconds below 10^11, milliseconds below 10^14, microseconds below 10^17,
/// else nanoseconds. Returns epoch milliseconds.
pub fn parse(text: &str, tz: Tz) -> Result<i64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty timestamp".into());
    }
    let (int_part, frac_part) = t.split_once('.').unwrap_or((t, ""));
    if !int_part.is_empty()
        && int_part.bytes().all(|b| b.is_ascii_digit())
        && frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        let n: i64 = int_part
            .parse()
            .map_err(|_| format!("timestamp `{t}` is too large"))?;
        // A fraction (`1796172360.458`, as many JSON encoders write seconds) is of the same
        // unit as the integer part.
        let frac: f64 = if frac_part.is_empty() {
            0.0
        } else {
            format!("0.{frac_part}").parse().unwrap_or(0.0)
        };
        let (whole_ms, frac_ms) = if n < 100_000_000_000 {
            (n * 1000, frac * 1000.0)
        } else if n < 100_000_000_000_000 {
            (n, frac)
        } else if n < 100_000_000_000_000_000 {
            (n / 1000, ((n % 1000) as f64 + frac) / 1000.0)
        } else {
            (n / 1_000_000, ((n % 1_000_000) as f64 + frac) / 1_000_000.0)
        };
        return Ok(whole_ms + frac_ms.floor() as i64);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, format) {
            return tz
                .from_local_datetime(&naive)
                .earliest()
                .map(|dt| dt.timestamp_millis())
                .ok_or_else(|| format!("local time `{t}` does not exist in {tz} (clock change)"));
        }
    }
    Err(format!(
        "timestamp `{}` is not RFC 3339, `YYYY-MM-DD HH:MM:SS` (park local time) or an epoch number",
        t.chars().take(40).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let expect = 1_714_522_500_000; // 2024-05-01T00:15:00Z
        assert_eq!(parse("2024-05-01T00:15:00Z", tz), Ok(expect));
        assert_eq!(parse("2024-05-01T08:15:00+08:00", tz), Ok(expect));
        assert_eq!(parse("2024-05-01 08:15:00", tz), Ok(expect));
        assert_eq!(parse("1714522500", tz), Ok(expect));
        assert_eq!(parse("1714522500000", tz), Ok(expect));
        assert_eq!(parse("1714522500000000000", tz), Ok(expect));
        assert!(parse("yesterday", tz).unwrap_err().contains("not RFC 3339"));
        // Float epochs: seconds with milliseconds, and milliseconds with a fraction.
        assert_eq!(parse("1714522500.458", tz), Ok(expect + 458));
        assert_eq!(parse("1714522500458.9", tz), Ok(expect + 458));
        assert!(parse("1714522500.4.5", tz).is_err());
    }
}
