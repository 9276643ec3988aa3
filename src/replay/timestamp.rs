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
    if t.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = t
            .parse()
            .map_err(|_| format!("timestamp `{t}` is too large"))?;
        return Ok(if n < 100_000_000_000 {
            n * 1000
        } else if n < 100_000_000_000_000 {
            n
        } else if n < 100_000_000_000_000_000 {
            n / 1000
        } else {
            n / 1_000_000
        });
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
    }
}
