//! `[influx]`: where and how to write, and the outbox in front of it.
//!
//! ```toml
//! [influx]
//! url = "http://127.0.0.1:8086"
//! org = "park"
//! bucket = "ecogate"
//! token_env = "ECOGATE_INFLUX_TOKEN"   # or token = "…" / token_file = "…"
//!
//! [influx.outbox]
//! dir = "data/outbox"
//! max_bytes = 1073741824
//! fsync = "always"                     # always | never
//! when_full = "block"                  # block | drop_oldest
//! ```

use crate::accounting::window::WindowKind;
use crate::config::raw::S;
use crate::config::Validator;
use crate::sinks::influx::line_protocol::tag_text_problem;
use crate::sinks::outbox::{FsyncPolicy, OutboxConfig, WhenFull};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInflux {
    pub url: Option<S<String>>,
    pub org: Option<S<String>>,
    pub bucket: Option<S<String>>,
    pub token: Option<S<String>>,
    pub token_file: Option<S<String>>,
    pub token_env: Option<S<String>>,
    pub ca_file: Option<S<String>>,
    pub batch_lines: Option<S<u32>>,
    pub flush_interval_ms: Option<S<u64>>,
    pub gzip: Option<S<bool>>,
    pub timeout_s: Option<S<u64>>,
    pub retry_initial_ms: Option<S<u64>>,
    pub retry_max_ms: Option<S<u64>>,
    pub auth_retry_s: Option<S<u64>>,
    pub readings: Option<S<bool>>,
    pub windows: Option<S<Vec<String>>>,
    pub dead_letter: Option<S<String>>,
    pub dead_letter_max_bytes: Option<S<u64>>,
    #[serde(default)]
    pub outbox: RawOutbox,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    pub dir: Option<S<String>>,
    pub max_bytes: Option<S<u64>>,
    pub segment_bytes: Option<S<u64>>,
    pub fsync: Option<S<String>>,
    pub when_full: Option<S<String>>,
}

#[derive(Debug, Clone)]
pub struct InfluxConfig {
    /// The server's base URL; writes go to `{url}/api/v2/write`.
    pub url: reqwest::Url,
    pub org: String,
    pub bucket: String,
    pub token: Option<crate::util::Secret>,
    pub ca_file: Option<PathBuf>,
    pub batch_lines: u32,
    pub flush_interval_ms: u64,
    pub gzip: bool,
    pub timeout_s: u64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub auth_retry_s: u64,
    /// Write raw readings as well as window aggregates.
    pub readings: bool,
    pub windows: Vec<WindowKind>,
    pub dead_letter: PathBuf,
    pub dead_letter_max_bytes: u64,
    pub outbox: OutboxConfig,
}

fn positive_u64(
    v: &mut Validator<'_>,
    s: &Option<S<u64>>,
    key: &str,
    default: u64,
    range: (u64, u64),
) -> u64 {
    match s {
        None => default,
        Some(x) if (range.0..=range.1).contains(x.get_ref()) => *x.get_ref(),
        Some(x) => {
            v.err(
                x,
                key,
                format!("must be {} to {}, got {}", range.0, range.1, x.get_ref()),
            );
            default
        }
    }
}

pub fn validate(
    v: &mut Validator<'_>,
    raw: Option<&RawInflux>,
    park_name: &S<String>,
    store_path: &Path,
    accounting_windows: &[WindowKind],
) -> Option<InfluxConfig> {
    let raw = raw?;
    let Some(url_text) = &raw.url else {
        let at = raw
            .bucket
            .as_ref()
            .or(raw.org.as_ref())
            .map(|b| S::new(b.span(), ()));
        match at {
            Some(at) => v.err(
                &at,
                "influx.url",
                "the [influx] section needs url, org and bucket",
            ),
            None => v.err(
                park_name,
                "influx.url",
                "the [influx] section needs url, org and bucket",
            ),
        }
        return None;
    };
    let url = match reqwest::Url::parse(url_text.get_ref()) {
        // Credentials in the URL would be printed wherever the URL is (the startup line,
        // `check`, errors), and reqwest would send them as Basic auth in place of the token.
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            v.err(
                url_text,
                "influx.url",
                format!(
                    "`{}` carries credentials: give the URL without them and the token in token, token_file or token_env",
                    crate::util::redact_url(url_text.get_ref())
                ),
            );
            None
        }
        Ok(mut u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            // A base with a path (a VictoriaMetrics cluster's vminsert:
            // http://vminsert:8480/insert/0/influx) keeps it: `api/v2/write` is joined
            // after its last segment, not in place of it.
            if !u.path().ends_with('/') {
                let path = format!("{}/", u.path());
                u.set_path(&path);
            }
            Some(u)
        }
        _ => {
            v.err(
                url_text,
                "influx.url",
                format!(
                    "`{}` is not an http(s) URL such as http://127.0.0.1:8086",
                    crate::util::redact_url(url_text.get_ref())
                ),
            );
            None
        }
    };
    let mut text = |s: &Option<S<String>>, key: &str| match s {
        Some(t) if !t.get_ref().trim().is_empty() => Some(t.get_ref().clone()),
        Some(t) => {
            v.err(t, key, "must not be empty");
            None
        }
        None => {
            v.err(url_text, key, "is required with [influx]");
            None
        }
    };
    let org = text(&raw.org, "influx.org");
    let bucket = text(&raw.bucket, "influx.bucket");
    if let Some(problem) = tag_text_problem(park_name.get_ref()) {
        v.err(
            park_name,
            "park.name",
            format!("becomes the `park` tag of every InfluxDB point and {problem}"),
        );
    }
    let sources = [&raw.token, &raw.token_file, &raw.token_env]
        .iter()
        .filter(|t| t.is_some())
        .count();
    let mut token = None;
    if sources > 1 {
        v.err(
            url_text,
            "influx.token",
            "give one of token, token_file and token_env",
        );
    } else if let Some(t) = &raw.token {
        token = Some(t.get_ref().clone());
    } else if let Some(f) = &raw.token_file {
        let path = v.relative_to_config(f.get_ref());
        match std::fs::read_to_string(&path) {
            Ok(t) => token = Some(t.trim().to_string()),
            Err(e) => v.err(
                f,
                "influx.token_file",
                format!("cannot read {}: {e}", path.display()),
            ),
        }
    } else if let Some(name) = &raw.token_env {
        match std::env::var(name.get_ref()) {
            Ok(t) if !t.trim().is_empty() => token = Some(t.trim().to_string()),
            _ => v.err(
                name,
                "influx.token_env",
                format!("environment variable `{}` is not set", name.get_ref()),
            ),
        }
    }
    let ca_file = raw
        .ca_file
        .as_ref()
        .map(|c| v.relative_to_config(c.get_ref()));
    let batch_lines = match &raw.batch_lines {
        None => 5000,
        Some(b) if (1..=100_000).contains(b.get_ref()) => *b.get_ref(),
        Some(b) => {
            v.err(
                b,
                "influx.batch_lines",
                format!("must be 1 to 100000, got {}", b.get_ref()),
            );
            5000
        }
    };
    let flush_interval_ms = positive_u64(
        v,
        &raw.flush_interval_ms,
        "influx.flush_interval_ms",
        1000,
        (1, 600_000),
    );
    let timeout_s = positive_u64(v, &raw.timeout_s, "influx.timeout_s", 10, (1, 600));
    let retry_initial_ms = positive_u64(
        v,
        &raw.retry_initial_ms,
        "influx.retry_initial_ms",
        1000,
        (1, 600_000),
    );
    let retry_max_ms = positive_u64(
        v,
        &raw.retry_max_ms,
        "influx.retry_max_ms",
        60_000,
        (1, 3_600_000),
    );
    if retry_max_ms < retry_initial_ms {
        if let Some(at) = &raw.retry_max_ms {
            v.err(at, "influx.retry_max_ms", "must be >= retry_initial_ms");
        }
    }
    let auth_retry_s = positive_u64(v, &raw.auth_retry_s, "influx.auth_retry_s", 60, (1, 86_400));
    let windows = match &raw.windows {
        None => accounting_windows.to_vec(),
        Some(list) => {
            let mut out = Vec::new();
            for name in list.get_ref() {
                match WindowKind::parse(name) {
                    Some(w) if accounting_windows.contains(&w) => out.push(w),
                    Some(_) => v.err(
                        list,
                        "influx.windows",
                        format!("window `{name}` is not in accounting.windows, so there is nothing to write"),
                    ),
                    None => v.err(
                        list,
                        "influx.windows",
                        format!("unknown window `{name}` (1m, 15m, 1h, 1d, month, year)"),
                    ),
                }
            }
            out
        }
    };
    let store_dir = store_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let o = &raw.outbox;
    let dir = o.dir.as_ref().map_or_else(
        || store_dir.join("outbox"),
        |d| v.relative_to_config(d.get_ref()),
    );
    let max_bytes = positive_u64(
        v,
        &o.max_bytes,
        "influx.outbox.max_bytes",
        1 << 30,
        (64 * 1024, 1 << 50),
    );
    let segment_bytes = positive_u64(
        v,
        &o.segment_bytes,
        "influx.outbox.segment_bytes",
        (16 << 20).min(max_bytes / 4),
        (4096, 1 << 32),
    );
    if segment_bytes > max_bytes / 2 {
        if let Some(at) = &o.segment_bytes {
            v.err(at, "influx.outbox.segment_bytes", "must be at most half of max_bytes, so the oldest segment can be dropped or delivered while the newest fills");
        }
    }
    let fsync = match o.fsync.as_ref().map(|f| (f, f.get_ref().as_str())) {
        None | Some((_, "always")) => FsyncPolicy::Always,
        Some((_, "never")) => FsyncPolicy::Never,
        Some((f, other)) => {
            v.err(
                f,
                "influx.outbox.fsync",
                format!("unknown policy `{other}` (always, never)"),
            );
            FsyncPolicy::Always
        }
    };
    let when_full = match o.when_full.as_ref().map(|f| (f, f.get_ref().as_str())) {
        None | Some((_, "block")) => WhenFull::Block,
        Some((_, "drop_oldest")) => WhenFull::DropOldest,
        Some((f, other)) => {
            v.err(
                f,
                "influx.outbox.when_full",
                format!("unknown policy `{other}` (block, drop_oldest)"),
            );
            WhenFull::Block
        }
    };
    let dead_letter = raw.dead_letter.as_ref().map_or_else(
        || dir.join("dead-letter.jsonl"),
        |d| v.relative_to_config(d.get_ref()),
    );
    let dead_letter_max_bytes = positive_u64(
        v,
        &raw.dead_letter_max_bytes,
        "influx.dead_letter_max_bytes",
        64 << 20,
        (1024, 1 << 40),
    );
    Some(InfluxConfig {
        url: url?,
        org: org?,
        bucket: bucket?,
        token: token.map(crate::util::Secret::new),
        ca_file,
        batch_lines,
        flush_interval_ms,
        gzip: raw.gzip.as_ref().is_none_or(|g| *g.get_ref()),
        timeout_s,
        retry_initial_ms,
        retry_max_ms,
        auth_retry_s,
        readings: raw.readings.as_ref().is_none_or(|r| *r.get_ref()),
        windows,
        dead_letter,
        dead_letter_max_bytes,
        outbox: OutboxConfig {
            dir,
            max_bytes,
            segment_bytes,
            fsync,
            when_full,
        },
    })
}
