//! `report --central` and `evaluate --central`: the figures of every firm in the
//! configuration, read back from the central time-series store that park gateways and shards
//! write to (docs/scale-out.md), instead of from this machine's SQLite store.
//!
//! The window points are read with VictoriaMetrics' export API and written whole into a
//! scratch store of the usual schema; the reports and the evaluation then run on it unchanged,
//! so a city run and the per-park runs cannot compute a figure two ways. Each window point is
//! a running total written again by every commit (docs/schema.md); the largest sample of a
//! series at a timestamp is its latest total, because window sums only grow (counter deltas
//! and integrals are never negative), and it is what VictoriaMetrics keeps itself with
//! `-dedup.minScrapeInterval`. The park row is the sum of the firm rows: every meter belongs to
//! a site of a firm, so nothing of a park is outside its firms.

use crate::accounting::metric::{Metric, Sums};
use crate::accounting::window::WindowKind;
use crate::config::Config;
use crate::sinks::store::import::WindowRow;
use crate::sinks::store::Store;
use anyhow::{bail, Context};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

const PREFIX: &str = "ecogate_window_";
/// Each level is read in requests of at most this much time, so that one answer stays a few
/// megabytes even for a city's meters.
const REQUEST_SPAN_MS: i64 = 31 * 86_400_000;

/// What was read back.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReadBack {
    /// Window rows written to the scratch store (the park's included).
    pub rows: usize,
    /// Series and samples read (a window written by several commits has several samples).
    pub series: usize,
    pub samples: usize,
    /// Window points of firms, sites or meters the configuration does not have: another
    /// city's, or a firm since removed. Left out.
    pub unknown_entities: usize,
    /// The `park` tags seen: one per gateway's park.
    pub parks: Vec<String>,
}

/// A window kind of one entity: its rows by start, one series of every metric feeding them.
type Key = (WindowKind, &'static str, String);

/// Reads the window points of `config`'s firms, sites and meters whose windows start in
/// `[from_ms, to_ms)` from the VictoriaMetrics at `base` (its `/api/v1/export`; a cluster's
/// `http://vmselect:8481/select/<tenant>/prometheus`) into a new store at `path`.
pub fn materialize(
    config: &Config,
    base: &reqwest::Url,
    (from_ms, to_ms): (i64, i64),
    path: &Path,
) -> anyhow::Result<(Store, ReadBack)> {
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    let ids: [(&'static str, HashSet<&str>); 3] = [
        ("firm", config.firms.iter().map(|f| f.id.as_str()).collect()),
        ("site", config.sites.iter().map(|s| s.id.as_str()).collect()),
        (
            "meter",
            config.meters.iter().map(|m| m.id.as_str()).collect(),
        ),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .user_agent(concat!("ecogate/", env!("CARGO_PKG_VERSION")))
        .build()?;
    // Appended, not joined: a cluster's `/select/0/prometheus` keeps its last segment.
    let export = reqwest::Url::parse(&format!(
        "{}/api/v1/export",
        base.as_str().trim_end_matches('/')
    ))
    .context("the central store's URL")?;
    let mut got = ReadBack::default();
    let mut rows: HashMap<Key, HashMap<i64, Sums>> = HashMap::new();
    let mut parks: HashSet<String> = HashSet::new();
    // Which park wrote each entity: one id written by two parks' gateways would be merged
    // into one figure, so ids must be unique city-wide, and a clash is refused.
    let mut writer: HashMap<(&'static str, String), String> = HashMap::new();
    let mut clash: Option<String> = None;
    for (level, known) in &ids {
        let mut t = from_ms;
        while t < to_ms {
            let until = (t + REQUEST_SPAN_MS).min(to_ms);
            let selector = format!("{{__name__=~\"{PREFIX}.+\",level=\"{level}\"}}");
            // VictoriaMetrics' bounds are inclusive seconds: ask one second either side and
            // keep what lies in [t, until) by the window start itself.
            let query = [
                ("match[]", selector),
                ("start", ((t / 1000) - 1).to_string()),
                ("end", (until / 1000 + 1).to_string()),
            ];
            rt.block_on(read_export(&client, &export, &query, |series: Series| {
                got.series += 1;
                got.samples += series.timestamps.len();
                let Some(metric) = series
                    .metric
                    .get("__name__")
                    .and_then(|n| n.strip_prefix(PREFIX))
                    .and_then(Metric::parse)
                else {
                    return; // a ratio (derived again from the sums) or another field
                };
                let Some(window) = series
                    .metric
                    .get("window")
                    .and_then(|w| WindowKind::parse(w))
                else {
                    return;
                };
                let Some(entity) = series.metric.get(*level) else {
                    return;
                };
                if !known.contains(entity.as_str()) {
                    got.unknown_entities += 1;
                    return;
                }
                if let Some(p) = series.metric.get("park") {
                    parks.insert(p.clone());
                    let first = writer
                        .entry((level, entity.clone()))
                        .or_insert_with(|| p.clone());
                    if first != p && clash.is_none() {
                        // In name order: the store answers series in no fixed order.
                        let (a, b) = if *first < *p { (&*first, p) } else { (p, &*first) };
                        clash = Some(format!(
                            "{level} `{entity}` is written by two parks, `{a}` and `{b}`: ids must be unique across the parks that share a central store (rename one in its park's configuration)"
                        ));
                    }
                }
                // One lookup (and one copy of the id) a series, not a sample.
                let by_start = rows.entry((window, level, entity.clone())).or_default();
                for (&ts, &amount) in series.timestamps.iter().zip(&series.values) {
                    if ts < t || ts >= until {
                        continue;
                    }
                    let micro = (amount * 1e6).round() as i64;
                    let slot = &mut by_start.entry(ts).or_default().0[metric.index()];
                    *slot = (*slot).max(micro);
                }
            }))
            .with_context(|| format!("reading {level} windows from {export}"))?;
            if let Some(c) = clash.take() {
                bail!("{c}");
            }
            t = until;
        }
    }
    let mut park: HashMap<(WindowKind, i64), Sums> = HashMap::new();
    for ((window, level, _), by_start) in &rows {
        if *level == "firm" {
            for (ts, sums) in by_start {
                park.entry((*window, *ts)).or_default().merge(sums);
            }
        }
    }
    let mut out: Vec<WindowRow> = Vec::new();
    for ((window, level, entity), by_start) in rows {
        out.extend(by_start.into_iter().map(|(start_ms, sums)| WindowRow {
            window,
            level,
            entity: entity.clone(),
            start_ms,
            sums,
        }));
    }
    out.extend(
        park.into_iter()
            .map(|((window, start_ms), sums)| WindowRow {
                window,
                level: "park",
                entity: "park".into(),
                start_ms,
                sums,
            }),
    );
    got.rows = out.len();
    let mut parks: Vec<String> = parks.into_iter().collect();
    parks.sort();
    got.parks = parks;
    let mut store = Store::open(path)?;
    store.put_window_rows(&out)?;
    Ok((store, got))
}

#[derive(serde::Deserialize)]
struct Series {
    metric: HashMap<String, String>,
    values: Vec<f64>,
    timestamps: Vec<i64>,
}

/// One export request, its JSON lines handed to `each` as they arrive.
async fn read_export(
    client: &reqwest::Client,
    url: &reqwest::Url,
    query: &[(&str, String)],
    mut each: impl FnMut(Series),
) -> anyhow::Result<()> {
    let mut resp = client.get(url.clone()).query(query).send().await?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        if status == reqwest::StatusCode::NOT_FOUND {
            bail!("{status}: this server does not answer VictoriaMetrics' /api/v1/export; reading back needs VictoriaMetrics (single-node, or a cluster's vmselect with --central http://vmselect:8481/select/<tenant>/prometheus). {body}");
        }
        bail!("{status}: {body}");
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut line_no = 0usize;
    let mut take = |line: &[u8], each: &mut dyn FnMut(Series)| -> anyhow::Result<()> {
        line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let series: Series = serde_json::from_slice(line)
            .with_context(|| format!("answer line {line_no} is not an export series"))?;
        each(series);
        Ok(())
    };
    while let Some(chunk) = resp.chunk().await? {
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            take(&buf[start..start + nl], &mut each)?;
            start += nl + 1;
        }
        buf.drain(..start);
    }
    take(&buf, &mut each)
}

/// A store read back for one command, removed when dropped.
pub struct Scratch {
    pub store: Store,
    pub read: ReadBack,
    path: std::path::PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The windows of local years `first_year` to `last_year` (with a day either side, for
/// windows that start before local midnight in UTC) read back from `url`, or from the
/// configuration's `[influx] url` when `url` is `None`.
pub fn read_years(
    app: &super::AppConfig,
    url: Option<&str>,
    first_year: i32,
    last_year: i32,
) -> anyhow::Result<Scratch> {
    let base = match (url, &app.influx) {
        (Some(u), _) => reqwest::Url::parse(u).with_context(|| format!("--central {u}"))?,
        (None, Some(influx)) => influx.url.clone(),
        (None, None) => bail!(
            "--central reads the central store: give its URL (--central http://host:8428) or configure [influx]"
        ),
    };
    let tz = app.park.timezone;
    let jan1 = |y: i32| {
        chrono::NaiveDate::from_ymd_opt(y, 1, 1)
            .map(|d| crate::accounting::window::local_midnight_ms(d, tz))
    };
    let (Some(from), Some(to)) = (jan1(first_year), jan1(last_year + 1)) else {
        bail!("years {first_year} to {last_year} are out of range");
    };
    const DAY_MS: i64 = 86_400_000;
    let path = std::env::temp_dir().join(format!(
        "ecogate-central-{}-{}.db",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    ));
    let (store, read) = materialize(&app.core, &base, (from - DAY_MS, to + DAY_MS), &path)?;
    Ok(Scratch { store, read, path })
}
