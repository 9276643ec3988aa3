//! HTML of the status pages. Every text from the configuration or a meter is escaped.

use super::model::*;
use crate::report::tables::Lang;
use std::fmt::Write;

/// HTML-escapes text for element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn num(x: f64, decimals: usize) -> String {
    crate::report::num(x, decimals)
}

fn opt(x: Option<f64>, decimals: usize) -> String {
    x.map_or("-".into(), |v| num(v, decimals))
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{}%", num(v * 100.0, 1)))
}

const CSS: &str = "body{font-family:'Noto Sans CJK SC','Noto Sans SC','PingFang SC','Microsoft YaHei',sans-serif;margin:0;background:#f4f6f8;color:#1c2733}\
header{background:#17594a;color:#fff;padding:10px 16px;display:flex;flex-wrap:wrap;gap:8px 20px;align-items:baseline}\
header h1{font-size:1.2em;margin:0}header a{color:#d8f3e8;text-decoration:none}header .at{font-size:.85em;opacity:.85;margin-left:auto}\
main{padding:12px 16px;max-width:1100px}section{background:#fff;border-radius:6px;padding:10px 14px;margin:0 0 14px;box-shadow:0 1px 2px #0002}\
h2{font-size:1.05em;margin:4px 0 10px}.cards{display:flex;flex-wrap:wrap;gap:10px}.card{flex:1 1 140px;border:1px solid #dde3e8;border-radius:5px;padding:8px}\
.card .k{font-size:.8em;color:#5a6b7a}.card .v{font-size:1.25em;font-weight:600}.scroll{overflow-x:auto}\
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{padding:5px 8px;border-bottom:1px solid #e6eaee;text-align:right;white-space:nowrap}\
th{background:#eef2f4;font-weight:600}td.l,th.l{text-align:left}.up{color:#17803d;font-weight:600}.down{color:#c0392b;font-weight:600}\
.alert{display:inline-block;background:#fdecea;color:#a4281b;border-radius:3px;padding:0 5px;margin:1px 2px;font-size:.85em}\
.cls{display:inline-block;min-width:1.4em;text-align:center;border-radius:3px;color:#fff;font-weight:600}.A{background:#1e8449}.B{background:#2e86c1}.C{background:#d68910}.D{background:#c0392b}\
svg{max-width:100%;height:auto}.legend{font-size:.8em;color:#5a6b7a}.lang{font-size:.85em}\
section.notice{background:#fff4e5;border-left:4px solid #d68910}";

/// The query that keeps a link in the page's language.
fn lang_query(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "",
        Lang::En => "?lang=en",
    }
}

fn page(lang: Lang, title: &str, park: &str, at: &str, body: &str, path: &str) -> String {
    let other = match lang {
        Lang::Zh => format!("<a class=lang href=\"{path}?lang=en\">English</a>"),
        Lang::En => format!("<a class=lang href=\"{path}?lang=zh\">中文</a>"),
    };
    let q = lang_query(lang);
    format!(
        "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"60\"><title>{} · {}</title><style>{CSS}</style></head><body>\
         <header><h1>{}</h1><a href=\"/{q}\">{}</a><a href=\"/meters{q}\">{}</a>{other}<span class=at>{} {}</span></header>\
         <main>{body}</main></body></html>",
        lang.pick("en", "zh-CN"),
        esc(title),
        esc(park),
        esc(park),
        lang.pick("Park overview", "园区总览"),
        lang.pick("Meter status", "表计状态"),
        lang.pick("as of", "更新于"),
        esc(at),
    )
}

fn totals_cards(lang: Lang, heading: &str, t: &Totals) -> String {
    let card = |k: &str, v: String| {
        format!("<div class=card><div class=k>{k}</div><div class=v>{v}</div></div>")
    };
    format!(
        "<h2>{}</h2><div class=cards>{}{}{}{}</div>",
        esc(heading),
        card(
            lang.pick("Electricity (kWh)", "用电量(kWh)"),
            num(t.electricity_kwh, 0)
        ),
        card(
            lang.pick("Energy (tce)", "综合能耗(吨标准煤)"),
            num(t.energy_tce, 2)
        ),
        card(lang.pick("CO2 (t)", "二氧化碳排放量(吨)"), num(t.co2_t, 2)),
        card(
            lang.pick("Green electricity share", "绿电占比"),
            pct(t.green_share)
        ),
    )
}

fn class_badge(class: Option<&str>) -> String {
    match class {
        Some(c) => format!("<span class=\"cls {}\">{}</span>", esc(c), esc(c)),
        None => "-".into(),
    }
}

fn alerts(lang: Lang, a: &[(String, String)]) -> String {
    a.iter()
        .map(|(en, zh)| format!("<span class=alert>{}</span>", esc(lang.pick(en, zh))))
        .collect()
}

/// `/`.
pub fn overview(o: &Overview, lang: Lang) -> String {
    let mut b = String::new();
    for (en, zh) in &o.notices {
        let _ = write!(
            b,
            "<section class=notice role=alert><h2>{}</h2><p>{}</p></section>",
            lang.pick("Warning", "警告"),
            esc(lang.pick(en, zh))
        );
    }
    let _ = write!(
        b,
        "<section>{}</section><section>{}</section>",
        totals_cards(lang, lang.pick("Today", "今日"), &o.today),
        totals_cards(lang, lang.pick("This month", "本月"), &o.month)
    );
    let _ = write!(
        b,
        "<section><h2>{} {}</h2><div class=scroll><table><tr><th>#</th><th class=l>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th class=l>{}</th></tr>",
        lang.pick("Firms ranked by output per mu, provisional", "企业亩均产值排名(预评,年初至今年化)"),
        o.evaluation_year,
        lang.pick("Firm", "企业"),
        lang.pick("Land (mu)", "用地面积(亩)"),
        lang.pick("Output per mu (10k CNY/mu·a)", "亩均产值(万元/亩·年)"),
        lang.pick("Carbon intensity, 24 h (tCO2/10k CNY)", "单位产值碳排放,近24小时(吨二氧化碳/万元)"),
        lang.pick("Score", "综合得分"),
        lang.pick("Class", "评价等级"),
        lang.pick("Alerts", "告警"),
    );
    let q = lang_query(lang);
    for (i, f) in o.firms.iter().enumerate() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=l><a href=\"/firm/{}{q}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=l>{}</td></tr>",
            i + 1,
            esc(&f.id),
            esc(&f.name),
            num(f.land_mu, 1),
            opt(f.output_per_mu_cny.map(|v| v / 10_000.0), 2),
            opt(f.carbon_intensity, 3),
            opt(f.score, 1),
            class_badge(f.class.as_deref()),
            alerts(lang, &f.alerts)
        );
    }
    b.push_str("</table></div></section>");
    let _ = write!(
        b,
        "<section><h2>{}</h2><p><a href=\"/meters{q}\">{} {} / {}</a></p></section>",
        lang.pick("Meters", "表计"),
        lang.pick("Online", "在线"),
        o.meters_up,
        o.meters_total
    );
    page(
        lang,
        lang.pick("Park overview", "园区总览"),
        &o.park,
        &o.at,
        &b,
        "/",
    )
}

/// A bar chart of energy (bars) and CO2 (a line), both scaled to their own maximum.
fn chart(lang: Lang, title: &str, bars: &[Bar]) -> String {
    let (w, h, pad) = (720.0, 220.0, 30.0);
    let n = bars.len().max(1) as f64;
    let max_e = bars.iter().map(|b| b.energy_kwh).fold(0.0, f64::max);
    let max_c = bars.iter().map(|b| b.co2_kg).fold(0.0, f64::max);
    let step = (w - 2.0 * pad) / n;
    let y = |v: f64, max: f64| {
        if max > 0.0 {
            h - pad - (v / max) * (h - 2.0 * pad)
        } else {
            h - pad
        }
    };
    let mut s = format!(
        "<h2>{}</h2><svg viewBox=\"0 0 {w} {h}\" role=img aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    for (i, b) in bars.iter().enumerate() {
        let x = pad + i as f64 * step + step * 0.15;
        let top = y(b.energy_kwh, max_e);
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#3a9d7a\"><title>{} {} kWh, {} kg CO2</title></rect>",
            step * 0.7,
            (h - pad - top).max(0.0),
            esc(&b.label),
            num(b.energy_kwh, 1),
            num(b.co2_kg, 1)
        );
        // A label every few bars, so that 30 of them stay legible on a phone.
        let every = (bars.len() / 8).max(1);
        if i % every == 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#5a6b7a\">{}</text>",
                x + step * 0.35,
                h - 10.0,
                esc(&b.label)
            );
        }
    }
    let points: Vec<String> = bars
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "{:.1},{:.1}",
                pad + (i as f64 + 0.5) * step,
                y(b.co2_kg, max_c)
            )
        })
        .collect();
    let _ = write!(
        s,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\"/>\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#8895a1\"/></svg>\
         <div class=legend><span style=\"color:#3a9d7a\">■</span> {} ({} {}) &nbsp; <span style=\"color:#c0392b\">━</span> {} ({} {})</div>",
        points.join(" "),
        h - pad,
        w - pad,
        h - pad,
        lang.pick("electricity, kWh", "用电量,kWh"),
        lang.pick("max", "最大"),
        num(max_e, 1),
        lang.pick("CO2, kg", "二氧化碳,kg"),
        lang.pick("max", "最大"),
        num(max_c, 1)
    );
    s
}

/// `/firm/ID`.
pub fn firm(p: &FirmPage, lang: Lang, now_ms: i64) -> String {
    let f = &p.firm;
    let mut b = format!(
        "<section><h2>{} · {} {}</h2><p>{} {} · {} {} · {} {} · {} {}</p>{}</section>",
        esc(&f.name),
        lang.pick("Class", "评价等级"),
        class_badge(f.class.as_deref()),
        lang.pick("Land (mu)", "用地面积(亩)"),
        num(f.land_mu, 1),
        lang.pick("Output per mu (10k CNY/mu·a)", "亩均产值(万元/亩·年)"),
        opt(f.output_per_mu_cny.map(|v| v / 10_000.0), 2),
        lang.pick(
            "Carbon intensity (tCO2/10k CNY)",
            "单位产值碳排放(吨二氧化碳/万元)"
        ),
        opt(f.carbon_intensity, 3),
        lang.pick("Score", "综合得分"),
        opt(f.score, 1),
        alerts(lang, &f.alerts),
    );
    let _ = write!(
        b,
        "<section>{}</section><section>{}</section><section>{}</section><section>{}</section>",
        totals_cards(lang, lang.pick("Today", "今日"), &p.today),
        totals_cards(lang, lang.pick("This month", "本月"), &p.month),
        chart(lang, lang.pick("Last 24 hours", "最近24小时"), &p.hours),
        chart(lang, lang.pick("Last 30 days", "最近30天"), &p.days),
    );
    if let Some(t) = &p.tou {
        let mut rows = String::new();
        for (en, zh, kwh) in &t.bands {
            let _ = write!(
                rows,
                "<tr><td class=l>{}</td><td>{}</td></tr>",
                lang.pick(en, zh),
                num(*kwh, 1)
            );
        }
        let _ = write!(
            b,
            "<section><h2>{}</h2><div class=scroll><table><tr><th class=l>{}</th><th>{}</th></tr>{rows}</table></div><p>{} {} · {} {} ({}) · {} {}</p></section>",
            lang.pick("Time of use this month", "本月分时电量"),
            lang.pick("Band", "时段"),
            lang.pick("Grid import (kWh)", "网购电量(千瓦时)"),
            lang.pick("Energy cost (CNY)", "电度电费(元)"),
            opt(t.cost_cny, 2),
            lang.pick("Max 15-min demand (kW)", "最大需量(千瓦)"),
            opt(t.max_demand_kw, 1),
            esc(t.max_demand_at.as_deref().unwrap_or("-")),
            lang.pick("Contracted (kW)", "核定需量(千瓦)"),
            opt(t.contract_kw, 1),
        );
    }
    let _ = write!(
        b,
        "<section><h2>{}</h2>{}</section>",
        lang.pick("Meters", "表计"),
        meter_table(lang, &p.meters, now_ms)
    );
    page(
        lang,
        &f.name,
        &p.park,
        &p.at,
        &b,
        &format!("/firm/{}", f.id),
    )
}

fn age(lang: Lang, now_ms: i64, last_ms: i64) -> String {
    if last_ms <= 0 {
        return lang.pick("never", "从未").into();
    }
    let s = ((now_ms - last_ms) / 1000).max(0);
    match s {
        0..=119 => format!("{s} {}", lang.pick("s ago", "秒前")),
        120..=7199 => format!("{} {}", s / 60, lang.pick("min ago", "分钟前")),
        7200..=172_799 => format!("{} {}", s / 3600, lang.pick("h ago", "小时前")),
        _ => format!("{} {}", s / 86_400, lang.pick("days ago", "天前")),
    }
}

fn meter_table(lang: Lang, meters: &[MeterRow], now_ms: i64) -> String {
    let mut b = format!(
        "<div class=scroll><table><tr><th class=l>{}</th><th class=l>{}</th><th class=l>{}</th><th class=l>{}</th><th>{}</th><th class=l>{}</th></tr>",
        lang.pick("Meter", "表计"),
        lang.pick("Firm / site", "企业 / 站点"),
        lang.pick("Source", "数据源"),
        lang.pick("State", "状态"),
        lang.pick("Last reading", "最近读数"),
        lang.pick("Last error", "最近故障"),
    );
    for m in meters {
        let s = &m.status;
        let state = if s.up {
            format!("<span class=up>{}</span>", lang.pick("online", "在线"))
        } else {
            format!("<span class=down>{}</span>", lang.pick("offline", "离线"))
        };
        let error = match (s.last_failure, &s.detail) {
            (Some(r), Some(d)) => format!("{}: {}", lang.pick(r.en, r.zh), esc(d)),
            (Some(r), None) => lang.pick(r.en, r.zh).to_string(),
            _ => String::new(),
        };
        let _ = write!(
            b,
            "<tr><td class=l title=\"{}\">{}</td><td class=l>{} / {}</td><td class=l>{}</td><td class=l>{}</td><td>{}</td><td class=l>{}</td></tr>",
            esc(&m.description),
            esc(&s.meter),
            esc(&m.firm),
            esc(&m.site),
            s.source,
            state,
            age(lang, now_ms, s.last_success_ms),
            error
        );
    }
    b.push_str("</table></div>");
    b
}

/// `/meters`.
pub fn meters(p: &MetersPage, lang: Lang) -> String {
    let up = p.meters.iter().filter(|m| m.status.up).count();
    let body = format!(
        "<section><h2>{} · {} {} / {}</h2>{}</section>",
        lang.pick("Meter status", "表计状态"),
        lang.pick("online", "在线"),
        up,
        p.meters.len(),
        meter_table(lang, &p.meters, p.now_ms)
    );
    page(
        lang,
        lang.pick("Meter status", "表计状态"),
        &p.park,
        &p.at,
        &body,
        "/meters",
    )
}
