//! One line per window point per request.
//!
//! Each store commit writes the running total of every window it touched, so a window of a busy
//! meter is in the outbox once per commit: dozens of times a second when MQTT acknowledgements
//! drive commits. InfluxDB keeps only the last value per series, field and timestamp, so the
//! sender merges the outbox records it sends together: one `ecogate_window` line per series and
//! timestamp, holding every field any of its lines wrote, each at its latest value. Fields must
//! be merged, not just the last line kept: a figure back at zero is written once (its commit
//! changed it) and left out of later lines, and dropping that line would leave InfluxDB with the
//! old value. Other lines (readings) pass unchanged and in order. The outbox is untouched: what
//! is merged is only the request body, so durability is the outbox's, as before.

use std::collections::HashMap;

const WINDOW: &[u8] = b"ecogate_window";

/// A merged body and how many lines it saved.
#[derive(Debug, Default, PartialEq)]
pub struct Coalesced {
    pub body: Vec<u8>,
    pub lines_in: u64,
    pub lines_out: u64,
}

enum Entry<'a> {
    Verbatim(&'a [u8]),
    Window {
        series: &'a [u8],
        ts: &'a [u8],
        /// Field keys in first-written order with their latest values.
        fields: Vec<(&'a [u8], &'a [u8])>,
    },
}

/// The measurement and tags (up to the first unescaped space), the fields, and the timestamp of
/// a window line; `None` for any other line (which then passes as it is).
fn window_parts(line: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    if !line.starts_with(WINDOW) || !matches!(line.get(WINDOW.len()), Some(b',') | Some(b' ')) {
        return None;
    }
    let mut i = 0;
    let series_end = loop {
        match line.get(i)? {
            b'\\' => i += 2,
            b' ' => break i,
            _ => i += 1,
        }
    };
    // Window fields are numbers with plain keys: the last space starts the timestamp.
    let ts_start = line.iter().rposition(|&b| b == b' ')?;
    if ts_start <= series_end {
        return None;
    }
    Some((
        &line[..series_end],
        &line[series_end + 1..ts_start],
        &line[ts_start + 1..],
    ))
}

/// Merges the window lines of `body` (whole lines, each ending in `\n`).
pub fn coalesce(body: &[u8]) -> Coalesced {
    coalesce_parts(std::iter::once(body))
}

/// As [`coalesce`] for a body in parts (outbox records, each whole lines), without first
/// copying them into one buffer.
pub fn coalesce_parts<'a>(parts: impl Iterator<Item = &'a [u8]>) -> Coalesced {
    let mut entries: Vec<Entry> = Vec::new();
    let mut index: HashMap<(&[u8], &[u8]), usize> = HashMap::new();
    let mut lines_in = 0u64;
    let lines = parts.flat_map(|p| p.split(|&b| b == b'\n').filter(|l| !l.is_empty()));
    let mut total_bytes = 0usize;
    for line in lines {
        total_bytes += line.len() + 1;
        lines_in += 1;
        let Some((series, fields, ts)) = window_parts(line) else {
            entries.push(Entry::Verbatim(line));
            continue;
        };
        let at = *index.entry((series, ts)).or_insert_with(|| {
            entries.push(Entry::Window {
                series,
                ts,
                fields: Vec::new(),
            });
            entries.len() - 1
        });
        let Entry::Window { fields: merged, .. } = &mut entries[at] else {
            unreachable!("the index points at window entries");
        };
        for field in fields.split(|&b| b == b',') {
            let Some(eq) = field.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (key, value) = (&field[..eq], &field[eq + 1..]);
            match merged.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => merged.push((key, value)),
            }
        }
    }
    let mut out = Vec::with_capacity(total_bytes);
    for e in &entries {
        match e {
            Entry::Verbatim(line) => out.extend_from_slice(line),
            Entry::Window { series, ts, fields } => {
                out.extend_from_slice(series);
                out.push(b' ');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(k);
                    out.push(b'=');
                    out.extend_from_slice(v);
                }
                out.push(b' ');
                out.extend_from_slice(ts);
            }
        }
        out.push(b'\n');
    }
    Coalesced {
        body: out,
        lines_in,
        lines_out: entries.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_written_by_three_commits_is_sent_once_with_every_field_at_its_latest() {
        // Commit 1: export 5 kWh; commit 2: export back to 0 (written because it changed), and
        // import 7; commit 3: import 9 only. InfluxDB must end with export 0 and import 9.
        let tags = r"ecogate_window,level=firm,firm=f1,park=青河\ Park\,\ Zone\=A,window=1h";
        let body = format!(
            "{tags} grid_export_kwh=5,deltas=1 1700000000000\n\
             ecogate_reading,meter=m1 energy_kwh=100.5 1700000000001\n\
             {tags} grid_export_kwh=0,grid_import_kwh=7,deltas=2 1700000000000\n\
             {tags} grid_import_kwh=9,deltas=3 1700000000000\n\
             {tags} grid_import_kwh=1,deltas=1 1700003600000\n"
        );
        let c = coalesce(body.as_bytes());
        assert_eq!(
            String::from_utf8(c.body).unwrap(),
            format!(
                "{tags} grid_export_kwh=0,deltas=3,grid_import_kwh=9 1700000000000\n\
                 ecogate_reading,meter=m1 energy_kwh=100.5 1700000000001\n\
                 {tags} grid_import_kwh=1,deltas=1 1700003600000\n"
            )
        );
        assert_eq!((c.lines_in, c.lines_out), (5, 3));
    }

    #[test]
    fn readings_pass_unchanged_even_when_repeated() {
        let body =
            b"ecogate_reading,meter=m1 energy_kwh=1 5\necogate_reading,meter=m1 energy_kwh=1 5\n";
        let c = coalesce(body);
        assert_eq!(c.body, body.to_vec());
        assert_eq!((c.lines_in, c.lines_out), (2, 2));
    }
}
