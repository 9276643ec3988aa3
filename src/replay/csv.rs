//! CSV input: `timestamp,meter,channel,value,unit[,quality]` with a header row.

use super::{timestamp, InputRow, ReplayError, RowError};
use crate::reading::{Quality, Reading};
use crate::units::Unit;
use chrono_tz::Tz;
use std::io::Read;

const COLUMNS: [&str; 5] = ["timestamp", "meter", "channel", "value", "unit"];

/// Reads every row; a bad row becomes a `RowError` naming its line, and reading goes on.
pub fn parse(input: impl Read, tz: Tz) -> Result<(Vec<InputRow>, Vec<RowError>), String> {
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    parse_each(input, tz, |row| {
        match row {
            Ok(r) => rows.push(r),
            Err(e) => errors.push(e),
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok((rows, errors))
}

/// Reads row after row, handing each (or why it was refused) to `emit` as it is read: memory
/// does not grow with the input.
pub fn parse_each(
    input: impl Read,
    tz: Tz,
    mut emit: impl FnMut(Result<InputRow, RowError>) -> Result<(), ReplayError>,
) -> Result<(), ReplayError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| ReplayError::Input(format!("cannot read the header row: {e}")))?
        .clone();
    let mut index = [0usize; 5];
    for (i, name) in COLUMNS.iter().enumerate() {
        index[i] = headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                ReplayError::Input(format!(
                    "line 1: the header has no `{name}` column (need {})",
                    COLUMNS.join(",")
                ))
            })?;
    }
    let quality_col = headers
        .iter()
        .position(|h| h.eq_ignore_ascii_case("quality"));
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                emit(Err(RowError::new(line, "malformed_row", format!("{e}"))))?;
                // An I/O error does not move the reader on: stop rather than loop on it.
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(ReplayError::Input(format!("cannot read line {line}: {e}")));
                }
                continue;
            }
        }
        let line = record.position().map_or(0, |p| p.line() as usize);
        let field = |i: usize| record.get(index[i]);
        let (Some(ts), Some(meter), Some(channel), Some(value), Some(unit)) =
            (field(0), field(1), field(2), field(3), field(4))
        else {
            emit(Err(RowError::new(
                line,
                "malformed_row",
                format!("{} fields, need at least {}", record.len(), headers.len()),
            )))?;
            continue;
        };
        let ts_ms = match timestamp::parse(ts, tz) {
            Ok(t) => t,
            Err(e) => {
                emit(Err(RowError::new(line, "bad_timestamp", e)))?;
                continue;
            }
        };
        let Ok(amount) = value.parse::<f64>() else {
            emit(Err(RowError::new(
                line,
                "bad_number",
                format!("value `{}` is not a number", short(value)),
            )))?;
            continue;
        };
        let Some(unit) = Unit::parse(unit) else {
            emit(Err(RowError::new(
                line,
                "unknown_unit",
                format!("unit `{}` is not known", short(unit)),
            )))?;
            continue;
        };
        let quality = match quality_col.and_then(|q| record.get(q)) {
            None => Quality::Good,
            Some(q) => match Quality::parse(q) {
                Some(q) => q,
                None => {
                    emit(Err(RowError::new(
                        line,
                        "malformed_row",
                        format!("quality `{}` is not good, uncertain or bad", short(q)),
                    )))?;
                    continue;
                }
            },
        };
        emit(Ok(InputRow {
            line,
            reading: Reading {
                meter: meter.to_string(),
                channel: channel.to_string(),
                amount,
                unit,
                ts_ms,
                quality,
                stamped_on_arrival: false,
            },
        }))?;
    }
    Ok(())
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}
