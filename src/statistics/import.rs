//! Reading a statistics file (CSV, or the first sheet of an XLSX workbook): one row per firm and
//! year, checked row by row; every problem is reported as FILE:LINE with the column, and a file
//! with any problem imports nothing.
//!
//! The header names the columns, in English (`firm`, `year`, `tax_cny`, ...) or with the usual
//! Chinese headers (企业, 年度, 税收, 营业收入, 工业增加值, 工业总产值, 从业人员, 研发经费, 污染物排放当量,
//! 外购能源); a header that says 万元 is in 10,000 CNY and is converted to CNY. Columns it does not
//! know are refused by name (a misspelt header would otherwise drop a statistic silently).

use super::FIELDS;
use crate::config::Config;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line (CSV) or row (XLSX) in the file, the header being line 1.
    pub line: usize,
    pub firm: String,
    pub year: i32,
    /// In the order of [`FIELDS`], in CNY, persons, t and tce.
    pub values: [Option<f64>; 8],
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Column {
    Firm,
    Year,
    /// Index into FIELDS, and the factor to its unit (10,000 for a 万元 column).
    Field(usize, f64),
}

/// Header aliases: what the bureaus' files say, for each column.
const ALIASES: &[(&str, &[&str])] = &[
    ("firm", &["firm", "firm_id", "企业", "企业名称", "企业编号"]),
    ("year", &["year", "年度", "年份"]),
    ("tax_cny", &["tax_cny", "税收", "实缴税金", "税收实际贡献"]),
    ("revenue_cny", &["revenue_cny", "营业收入", "主营业务收入"]),
    (
        "value_added_cny",
        &["value_added_cny", "工业增加值", "增加值"],
    ),
    (
        "output_value_cny",
        &["output_value_cny", "工业总产值", "总产值"],
    ),
    (
        "employees",
        &["employees", "从业人员", "职工人数", "年平均职工人数"],
    ),
    (
        "rd_spend_cny",
        &["rd_spend_cny", "研发经费", "研发经费支出"],
    ),
    (
        "pollutant_t",
        &["pollutant_t", "污染物排放当量", "排放当量"],
    ),
    ("off_meter_tce", &["off_meter_tce", "外购能源", "表外能耗"]),
];

fn column(header: &str) -> Option<Column> {
    let h = header.trim().trim_start_matches('\u{feff}');
    // "税收(万元)" -> "税收" with a factor of 10,000; "tax_cny" as it is.
    let (name, unit) = match h.find(['(', '（']) {
        Some(i) => (h[..i].trim(), &h[i..]),
        None => (h, ""),
    };
    let factor = if unit.contains("万元") {
        10_000.0
    } else {
        1.0
    };
    let (key, _) = ALIASES
        .iter()
        .find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))?;
    Some(match *key {
        "firm" => Column::Firm,
        "year" => Column::Year,
        k => Column::Field(FIELDS.iter().position(|f| *f == k)?, factor),
    })
}

/// Reads and checks a statistics file against the configured firms (by id, or by name).
pub fn read(path: &Path, config: &Config) -> Result<Vec<Row>, Vec<String>> {
    let shown = path.display().to_string();
    let table = match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("xlsx") | Some("xlsm") | Some("xls") => read_xlsx(path),
        _ => read_csv(path),
    }
    .map_err(|e| vec![format!("{shown}: {}", crate::util::error_chain(&e))])?;
    let mut it = table.into_iter();
    let Some((_, header)) = it.next() else {
        return Err(vec![format!("{shown}: the file is empty")]);
    };
    let mut errors = Vec::new();
    let mut columns = Vec::new();
    for h in &header {
        match column(h) {
            Some(c) if columns.contains(&Some(c)) => {
                errors.push(format!("{shown}:1: column `{h}` is given twice"))
            }
            Some(c) => columns.push(Some(c)),
            None if h.trim().is_empty() => columns.push(None),
            None => errors.push(format!(
                "{shown}:1: unknown column `{h}`; the columns are firm, year, {} (or their usual Chinese headers)",
                FIELDS.join(", ")
            )),
        }
    }
    for need in [Column::Firm, Column::Year] {
        if !columns.contains(&Some(need)) {
            errors.push(format!(
                "{shown}:1: no `{}` column",
                if need == Column::Firm { "firm" } else { "year" }
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut rows: Vec<Row> = Vec::new();
    for (line, cells) in it {
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if cells.len() > columns.len()
            && cells[columns.len()..].iter().any(|c| !c.trim().is_empty())
        {
            errors.push(format!(
                "{shown}:{line}: {} cells, but the header names {} columns",
                cells.len(),
                columns.len()
            ));
            continue;
        }
        let mut row = Row {
            line,
            firm: String::new(),
            year: 0,
            values: [None; 8],
        };
        let mut ok = true;
        for (cell, col) in cells.iter().zip(&columns) {
            let cell = cell.trim();
            let at = |what: &str| format!("{shown}:{line}: {what}");
            match col {
                None => {}
                Some(Column::Firm) => {
                    match config.firms.iter().find(|f| f.id == cell || f.name == cell) {
                        Some(f) => row.firm = f.id.clone(),
                        None => {
                            errors.push(at(&format!(
                                "firm `{cell}` is not in the configuration (give its id or name)"
                            )));
                            ok = false;
                        }
                    }
                }
                Some(Column::Year) => match cell.trim_end_matches(".0").parse::<i32>() {
                    Ok(y) if (1990..=2100).contains(&y) => row.year = y,
                    _ => {
                        errors.push(at(&format!("year `{cell}` is not a year such as 2026")));
                        ok = false;
                    }
                },
                Some(Column::Field(i, factor)) => {
                    if cell.is_empty() {
                        continue;
                    }
                    match cell.replace(',', "").parse::<f64>() {
                        Ok(v) if v.is_finite() && v >= 0.0 => row.values[*i] = Some(v * factor),
                        _ => {
                            errors.push(at(&format!(
                                "{} `{cell}` is not a number of zero or more",
                                FIELDS[*i]
                            )));
                            ok = false;
                        }
                    }
                }
            }
        }
        if !ok {
            continue;
        }
        if let Some(first) = rows
            .iter()
            .find(|r| r.firm == row.firm && r.year == row.year)
        {
            errors.push(format!(
                "{shown}:{line}: firm `{}` has a row for {} already, at line {}",
                row.firm, row.year, first.line
            ));
            continue;
        }
        rows.push(row);
    }
    if rows.is_empty() && errors.is_empty() {
        errors.push(format!("{shown}: no rows below the header"));
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

type Table = Vec<(usize, Vec<String>)>;

/// Why a statistics file could not be read as a table at all (before any row is checked).
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("cannot read the file")]
    Io(#[from] std::io::Error),
    #[error(
        "the file is neither UTF-8 nor GBK/GB18030: save it again as \"CSV UTF-8\" (or as XLSX)"
    )]
    NotText,
    #[error("not a CSV file")]
    Csv(#[from] csv::Error),
    #[error("not a workbook ecogate can read")]
    Workbook(#[from] calamine::Error),
    #[error("the workbook has no sheet")]
    NoSheet,
}

/// A CSV's text: UTF-8 (a byte-order mark dropped), or else GB18030, the superset of the GBK
/// that Excel on Chinese Windows saves as "CSV"; bytes that are neither are refused with what
/// to do.
fn csv_text(bytes: &[u8]) -> Result<String, ReadError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_string());
    }
    let (text, _, malformed) = encoding_rs::GB18030.decode(bytes);
    if malformed {
        return Err(ReadError::NotText);
    }
    Ok(text.into_owned())
}

fn read_csv(path: &Path) -> Result<Table, ReadError> {
    let bytes = std::fs::read(path)?;
    let text = csv_text(&bytes)?;
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec?;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        out.push((line, rec.iter().map(str::to_string).collect()));
    }
    Ok(out)
}

fn read_xlsx(path: &Path) -> Result<Table, ReadError> {
    use calamine::{open_workbook_auto, Data, Reader};
    let mut wb = open_workbook_auto(path)?;
    let sheet = wb
        .sheet_names()
        .first()
        .cloned()
        .ok_or(ReadError::NoSheet)?;
    let range = wb.worksheet_range(&sheet)?;
    let first_row = range.start().map_or(0, |(r, _)| r as usize);
    Ok(range
        .rows()
        .enumerate()
        .map(|(i, cells)| {
            (
                first_row + i + 1,
                cells
                    .iter()
                    .map(|c| match c {
                        Data::Empty => String::new(),
                        Data::Float(f) => f.to_string(),
                        Data::Int(i) => i.to_string(),
                        other => other.to_string(),
                    })
                    .collect(),
            )
        })
        .collect())
}
