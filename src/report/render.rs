//! Writes a report [`Document`] as aligned text, CSV, JSON, Markdown, one self-contained HTML
//! file (inline CSS and SVG charts, no script, nothing fetched) or an XLSX workbook (one sheet per
//! table, units in the header, number formats, frozen header row). Numbers are rounded only for
//! display: CSV and JSON carry full precision.

use super::num;
use super::tables::{Cell, Chart, Document, Lang, Table};
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Xlsx,
    Md,
    Html,
}

fn title<'a>(lang: Lang, en: &'a str, zh: &'a str) -> &'a str {
    lang.pick(en, zh)
}

fn shown(c: &Cell, decimals: usize) -> String {
    match c {
        Cell::Text(t) => t.clone(),
        Cell::Num(x) => num(*x, decimals),
        Cell::Empty => String::new(),
    }
}

/// Display width: CJK and full-width characters take two columns.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let c = c as u32;
            if (0x1100..=0x115F).contains(&c)
                || (0x2E80..=0xA4CF).contains(&c)
                || (0xAC00..=0xD7A3).contains(&c)
                || (0xF900..=0xFAFF).contains(&c)
                || (0xFE30..=0xFE4F).contains(&c)
                || (0xFF00..=0xFF60).contains(&c)
                || (0xFFE0..=0xFFE6).contains(&c)
            {
                2
            } else {
                1
            }
        })
        .sum()
}

pub fn text(doc: &Document, lang: Lang) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", title(lang, &doc.en, &doc.zh));
    for (en, zh) in &doc.notes {
        let _ = writeln!(out, "{}", title(lang, en, zh));
    }
    for t in &doc.tables {
        let _ = writeln!(out, "\n{}", title(lang, &t.en, &t.zh));
        if t.rows.is_empty() {
            let _ = writeln!(out, "{}", lang.pick("(none)", "(无)"));
            continue;
        }
        let headers: Vec<&str> = t.cols.iter().map(|c| lang.pick(c.en, c.zh)).collect();
        let cells: Vec<Vec<String>> = t
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .zip(&t.cols)
                    .map(|(c, col)| shown(c, col.decimals))
                    .collect()
            })
            .collect();
        let widths: Vec<usize> = (0..t.cols.len())
            .map(|i| {
                cells
                    .iter()
                    .map(|r| width(&r[i]))
                    .chain([width(headers[i])])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |out: &mut String, items: &[String], right: &[bool]| {
            let parts: Vec<String> = items
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let pad = " ".repeat(widths[i].saturating_sub(width(s)));
                    if right[i] {
                        format!("{pad}{s}")
                    } else {
                        format!("{s}{pad}")
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", parts.join("  ").trim_end());
        };
        let numeric: Vec<bool> = (0..t.cols.len())
            .map(|i| t.rows.iter().any(|r| matches!(r[i], Cell::Num(_))))
            .collect();
        let h: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
        line(&mut out, &h, &numeric);
        for r in &cells {
            line(&mut out, r, &numeric);
        }
    }
    out
}

/// CSV of one table: localised headers, full-precision numbers.
pub fn csv(t: &Table, lang: Lang) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(t.cols.iter().map(|c| lang.pick(c.en, c.zh)));
    for r in &t.rows {
        let _ = w.write_record(r.iter().map(|c| match c {
            Cell::Text(s) => s.clone(),
            Cell::Num(x) => x.to_string(),
            Cell::Empty => String::new(),
        }));
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// JSON: English keys, full precision, headings in both languages.
pub fn json(doc: &Document) -> String {
    let tables: Vec<serde_json::Value> = doc
        .tables
        .iter()
        .map(|t| {
            serde_json::json!({
                "id": t.id,
                "title": { "en": t.en, "zh": t.zh },
                "columns": t.cols.iter().map(|c| serde_json::json!({"key": c.key, "en": c.en, "zh": c.zh})).collect::<Vec<_>>(),
                "rows": t.rows.iter().map(|r| {
                    let mut o = serde_json::Map::new();
                    for (c, col) in r.iter().zip(&t.cols) {
                        o.insert(col.key.to_string(), match c {
                            Cell::Text(s) => serde_json::Value::String(s.clone()),
                            // A whole number in a column without decimals (a rank, a count) is
                            // an integer for the program that reads it.
                            Cell::Num(x) if col.decimals == 0 && x.fract() == 0.0 && x.abs() < 9.0e15 => {
                                serde_json::json!(*x as i64)
                            }
                            Cell::Num(x) => serde_json::json!(x),
                            Cell::Empty => serde_json::Value::Null,
                        });
                    }
                    serde_json::Value::Object(o)
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    let v = serde_json::json!({
        "title": { "en": doc.en, "zh": doc.zh },
        "notes": doc.notes.iter().map(|(en, zh)| serde_json::json!({"en": en, "zh": zh})).collect::<Vec<_>>(),
        "tables": tables,
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

pub fn markdown(doc: &Document, lang: Lang) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", md_escape(title(lang, &doc.en, &doc.zh)));
    for (en, zh) in &doc.notes {
        let _ = writeln!(out, "{}\n", md_escape(title(lang, en, zh)));
    }
    for t in &doc.tables {
        let _ = writeln!(out, "## {}\n", md_escape(title(lang, &t.en, &t.zh)));
        if t.rows.is_empty() {
            let _ = writeln!(out, "{}\n", lang.pick("(none)", "(无)"));
            continue;
        }
        let _ = writeln!(
            out,
            "| {} |",
            t.cols
                .iter()
                .map(|c| md_escape(lang.pick(c.en, c.zh)))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(
            out,
            "|{}",
            t.cols
                .iter()
                .enumerate()
                .map(
                    |(i, _)| if t.rows.iter().any(|r| matches!(r[i], Cell::Num(_))) {
                        "---:|"
                    } else {
                        "---|"
                    }
                )
                .collect::<String>()
        );
        for r in &t.rows {
            let _ = writeln!(
                out,
                "| {} |",
                r.iter()
                    .zip(&t.cols)
                    .map(|(c, col)| md_escape(&shown(c, col.decimals)))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        out.push('\n');
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLOURS: [&str; 4] = ["#2f7d4f", "#c0504d", "#4f81bd", "#9b59b6"];

/// A horizontal bar chart (a ranking) when there are many labels, else grouped vertical bars.
fn svg(chart: &Chart, lang: Lang) -> String {
    let mut s = String::new();
    let max = chart
        .series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let n = chart.labels.len().max(1);
    let groups = chart.series.len().max(1);
    let (w, h) = (720.0, 300.0);
    let (left, bottom, top) = (110.0, 100.0, 24.0);
    let plot_w = w - left - 10.0;
    let plot_h = h - bottom - top;
    let slot = plot_w / n as f64;
    let bar = (slot * 0.8 / groups as f64).max(1.0);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" aria-label="{}" class="chart">"#,
        esc(lang.pick(&chart.en, &chart.zh))
    );
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#888"/>"##,
        top + plot_h,
        w - 10.0,
        top + plot_h
    );
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#555">{}</text>"##,
        left - 4.0,
        top + 4.0,
        esc(&num(max, if max >= 100.0 { 0 } else { 2 }))
    );
    for (gi, (en, zh, values)) in chart.series.iter().enumerate() {
        for (i, v) in values.iter().enumerate() {
            let bh = (v.max(0.0) / max) * plot_h;
            let x = left + slot * i as f64 + slot * 0.1 + bar * gi as f64;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                top + plot_h - bh,
                COLOURS[gi % COLOURS.len()],
                esc(&format!(
                    "{} {}",
                    chart.labels.get(i).map_or("", |l| l),
                    lang.pick(en, zh)
                )),
                esc(&num(*v, 2))
            );
        }
    }
    for (i, l) in chart.labels.iter().enumerate() {
        let x = left + slot * (i as f64 + 0.5);
        let _ = write!(
            s,
            r##"<text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="end" transform="rotate(-35 {x:.1} {:.1})" fill="#333">{}</text>"##,
            top + plot_h + 12.0,
            top + plot_h + 12.0,
            esc(l)
        );
    }
    for (gi, (en, zh, _)) in chart.series.iter().enumerate() {
        let x = left + 10.0 + gi as f64 * 180.0;
        let _ = write!(
            s,
            r##"<rect x="{x}" y="4" width="10" height="10" fill="{}"/><text x="{}" y="13" font-size="11" fill="#333">{}</text>"##,
            COLOURS[gi % COLOURS.len()],
            x + 14.0,
            esc(lang.pick(en, zh))
        );
    }
    s.push_str("</svg>");
    s
}

pub fn html(doc: &Document, lang: Lang) -> String {
    let mut out = String::new();
    let t = title(lang, &doc.en, &doc.zh);
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="{}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.1em; margin-top: 1.6em; }}
.note {{ color: #555; font-size: 0.9em; margin: 0.2em 0; }}
.wrap {{ overflow-x: auto; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; white-space: nowrap; }}
th {{ background: #eef3ef; position: sticky; top: 0; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.total td {{ font-weight: bold; background: #f6f6f6; }}
.chart {{ max-width: 760px; width: 100%; height: auto; display: block; margin: 0.5em 0; }}
</style></head><body>
<h1>{}</h1>
"#,
        lang.pick("en", "zh-CN"),
        esc(t),
        esc(t)
    );
    for (en, zh) in &doc.notes {
        let _ = writeln!(out, r#"<p class="note">{}</p>"#, esc(lang.pick(en, zh)));
    }
    for c in &doc.charts {
        let _ = writeln!(
            out,
            "<h2>{}</h2>\n{}",
            esc(lang.pick(&c.en, &c.zh)),
            svg(c, lang)
        );
    }
    for tb in &doc.tables {
        let _ = writeln!(out, "<h2>{}</h2>", esc(lang.pick(&tb.en, &tb.zh)));
        if tb.rows.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", lang.pick("(none)", "(无)"));
            continue;
        }
        let _ = write!(
            out,
            r#"<div class="wrap"><table id="{}"><thead><tr>"#,
            tb.id
        );
        for c in &tb.cols {
            let _ = write!(out, "<th>{}</th>", esc(lang.pick(c.en, c.zh)));
        }
        out.push_str("</tr></thead><tbody>\n");
        for r in &tb.rows {
            let total = matches!(r.first(), Some(Cell::Text(s)) if s == "park");
            out.push_str(if total {
                r#"<tr class="total">"#
            } else {
                "<tr>"
            });
            for (c, col) in r.iter().zip(&tb.cols) {
                let class = if matches!(c, Cell::Num(_)) {
                    r#" class="n""#
                } else {
                    ""
                };
                let _ = write!(out, "<td{class}>{}</td>", esc(&shown(c, col.decimals)));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table></div>\n");
    }
    out.push_str("</body></html>\n");
    out
}

/// The XLSX workbook's bytes.
pub fn xlsx(doc: &Document, lang: Lang) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format as XFormat, Workbook};
    let mut wb = Workbook::new();
    let header = XFormat::new()
        .set_bold()
        .set_text_wrap()
        .set_background_color("EEF3EF");
    let mut used: Vec<String> = Vec::new();
    for t in &doc.tables {
        let ws = wb.add_worksheet();
        // Sheet names: at most 31 characters, unique, without []:*?/\.
        let mut name: String = lang
            .pick(&t.en, &t.zh)
            .chars()
            .filter(|c| !"[]:*?/\\".contains(*c))
            .take(28)
            .collect();
        if used.contains(&name) {
            name = format!(
                "{}{}",
                name.chars().take(26).collect::<String>(),
                used.len()
            );
        }
        used.push(name.clone());
        ws.set_name(&name)?;
        for (ci, c) in t.cols.iter().enumerate() {
            ws.write_string_with_format(0, ci as u16, lang.pick(c.en, c.zh), &header)?;
            let widest = t
                .rows
                .iter()
                .map(|r| width(&shown(&r[ci], c.decimals)))
                .max()
                .unwrap_or(0)
                .max(width(lang.pick(c.en, c.zh)).min(24));
            ws.set_column_width(ci as u16, (widest as f64 + 2.0).min(60.0))?;
        }
        ws.set_row_height(0, 45)?;
        ws.set_freeze_panes(1, 0)?;
        let formats: Vec<XFormat> = t
            .cols
            .iter()
            .map(|c| {
                XFormat::new().set_num_format(if c.decimals == 0 {
                    "#,##0".to_string()
                } else {
                    format!("#,##0.{}", "0".repeat(c.decimals))
                })
            })
            .collect();
        for (ri, r) in t.rows.iter().enumerate() {
            for (ci, c) in r.iter().enumerate() {
                let (row, colu) = (ri as u32 + 1, ci as u16);
                match c {
                    Cell::Text(s) => {
                        ws.write_string(row, colu, s)?;
                    }
                    Cell::Num(x) => {
                        ws.write_number_with_format(row, colu, *x, &formats[ci])?;
                    }
                    Cell::Empty => {}
                }
            }
        }
    }
    if doc.tables.is_empty() {
        wb.add_worksheet();
    }
    wb.save_to_buffer()
}
