//! Delivery: reads the outbox in order and writes it to `/api/v2/write`, with a policy per answer.
//!
//! | answer | what happens |
//! |---|---|
//! | 204 | delivered; removed from the outbox |
//! | 400, 422 | split in halves until the refused lines stand alone; those go to the dead-letter file with the server's message, the rest is delivered |
//! | 413 | split in halves and retried; a single line still too large is dead-lettered |
//! | 400, 413, 422 for 100 lines in a row with none delivered | the server, not the lines, is at fault: no more dead letters; data kept, retried every `auth_retry_s`, `ecogate_influx_refusing` = 1 |
//! | 401, 403, 404 | token, permission or bucket problem: `ecogate_influx_auth_failing` = 1, data kept, retried every `auth_retry_s` |
//! | 429, 503 | retried after the server's Retry-After (seconds or HTTP date), else as below |
//! | other 5xx, no answer | retried with exponential backoff and jitter, from `retry_initial_ms` up to `retry_max_ms` |
//!
//! The outbox record stays until every line of the batch is delivered or dead-lettered, so a
//! restart in the middle sends the batch again: InfluxDB keeps one point per series and
//! timestamp, so a repeat is an identical point, never a second one.

use super::config::InfluxConfig;
use super::metrics::InfluxMetrics;
use crate::sinks::outbox::{Outbox, ReadBatch};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Largest request body before compression, whatever `batch_lines` says.
const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug)]
enum Outcome {
    Delivered,
    /// These lines stand alone and the server refuses them.
    Refused {
        status: u16,
        message: String,
    },
    /// Split the request and try the halves.
    Split {
        status: u16,
    },
    /// Try the same request again after the delay.
    Retry {
        after: Duration,
        reason: &'static str,
    },
}

#[derive(Debug)]
pub struct Sender {
    cfg: InfluxConfig,
    client: reqwest::Client,
    write_url: reqwest::Url,
    outbox: Arc<Outbox>,
    metrics: InfluxMetrics,
    attempt: u32,
    auth_log: Option<Instant>,
    /// Lines dead-lettered since the last delivery.
    refused_in_row: u64,
    refuse_log: Option<Instant>,
}

/// Lines refused one by one, with nothing delivered in between, before ecogate stops taking the
/// server's word that the lines are at fault.
pub const MAX_REFUSED_IN_A_ROW: u64 = 100;

/// Builds the HTTP client: rustls, the configured extra CA, the request timeout.
pub fn client(cfg: &InfluxConfig) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(cfg.timeout_s))
        .connect_timeout(Duration::from_secs(cfg.timeout_s.min(10)))
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("ecogate/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &cfg.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| anyhow::anyhow!("influx.ca_file {}: {e}", ca.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("influx.ca_file {}: {e}", ca.display()))?;
        b = b.add_root_certificate(cert);
    }
    Ok(b.build()?)
}

/// Writes lines once, outside the outbox: for figures that are derived and kept elsewhere (the
/// evaluation, kept with its inputs in the statistics store and recomputable), where a write lost
/// to an outage is repeated by the next evaluation rather than queued.
pub async fn write_once(cfg: &InfluxConfig, lines: Vec<u8>) -> anyhow::Result<()> {
    let client = client(cfg)?;
    let mut url = cfg.url.join("api/v2/write")?;
    url.query_pairs_mut()
        .append_pair("org", &cfg.org)
        .append_pair("bucket", &cfg.bucket)
        .append_pair("precision", "ms");
    let mut req = client
        .post(url)
        .header("Content-Type", "text/plain; charset=utf-8");
    if let Some(t) = &cfg.token {
        req = req.header("Authorization", format!("Token {}", t.expose()));
    }
    let resp = req.body(lines).send().await?;
    let status = resp.status();
    if !status.is_success() {
        anyhow::bail!(
            "influx: {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

impl Sender {
    pub fn new(
        cfg: InfluxConfig,
        outbox: Arc<Outbox>,
        metrics: InfluxMetrics,
    ) -> anyhow::Result<Sender> {
        let client = client(&cfg)?;
        let mut write_url = cfg.url.join("api/v2/write")?;
        write_url
            .query_pairs_mut()
            .append_pair("org", &cfg.org)
            .append_pair("bucket", &cfg.bucket)
            .append_pair("precision", "ms");
        Ok(Sender {
            attempt: 0,
            cfg,
            client,
            write_url,
            outbox,
            metrics,
            auth_log: None,
            refused_in_row: 0,
            refuse_log: None,
        })
    }

    async fn read(&self) -> anyhow::Result<Option<ReadBatch>> {
        let outbox = self.outbox.clone();
        // More than one request's worth: the window lines of many commits merge into one each
        // (coalesce.rs), and the rest goes out in requests of `batch_lines`.
        let lines = u64::from(self.cfg.batch_lines).max(COALESCE_LINES);
        Ok(tokio::task::spawn_blocking(move || outbox.read(lines, MAX_BODY_BYTES)).await??)
    }

    /// Runs until `shutdown`; what is not yet delivered stays in the outbox for the next start.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let flush = Duration::from_millis(self.cfg.flush_interval_ms);
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.metrics.observe_outbox(&self.outbox);
            let batch = match self.read().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("influx: cannot read the outbox: {e}");
                    if sleep_or_stop(Duration::from_secs(5), &mut shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            let Some(batch) = batch else {
                tokio::select! {
                    _ = self.outbox.readable.notified() => {}
                    _ = tokio::time::sleep(flush) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            };
            let lines: u64 = batch.records.iter().map(|r| u64::from(r.lines)).sum();
            if let Some(first) = batch.records.first() {
                // Not a full read yet: give the pipeline until the flush interval to add to it.
                // Appended "in the future": the clock went back since. Sent now; waiting for the
                // age to reach the flush interval would wait out the step (seen in
                // tests/chaos.rs: an hour with nothing delivered).
                let age_ms = chrono::Utc::now().timestamp_millis() - first.appended_ms;
                let age_ms = if age_ms < 0 {
                    self.cfg.flush_interval_ms as i64
                } else {
                    age_ms
                };
                let wait_ms = self.cfg.flush_interval_ms as i64 - age_ms;
                // Until the flush interval, as long as the read is not full: the commits of the
                // interval are merged into one line per window (coalesce.rs).
                if lines < COALESCE_LINES && wait_ms > 0 {
                    let wait = Duration::from_millis(wait_ms as u64);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            }
            let mut batch = batch;
            let merged =
                super::coalesce::coalesce_parts(batch.records.iter().map(|r| r.payload.as_slice()));
            // The merged body is what is sent; the records' payloads are not needed to ack.
            for r in &mut batch.records {
                r.payload = Vec::new();
            }
            self.metrics
                .lines_coalesced
                .inc_by(merged.lines_in - merged.lines_out);
            let mut stopped = false;
            for chunk in line_chunks(&merged.body, self.cfg.batch_lines as usize) {
                if !self.deliver(chunk.to_vec(), &mut shutdown).await {
                    stopped = true;
                    break;
                }
            }
            if stopped {
                break;
            }
            if let Err(e) = self.outbox.ack(&batch) {
                tracing::error!("influx: cannot record delivery in the outbox: {e}");
            }
        }
        self.metrics.observe_outbox(&self.outbox);
        tracing::info!("influx sender stopped");
    }

    /// Delivers every line of `body` (or dead-letters those refused alone). False on shutdown.
    async fn deliver(&mut self, body: Vec<u8>, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut work = vec![body];
        while let Some(chunk) = work.pop() {
            loop {
                match self.send(&chunk).await {
                    Outcome::Delivered => {
                        self.metrics.lines_written.inc_by(count_lines(&chunk));
                        self.attempt = 0;
                        self.refused_in_row = 0;
                        self.metrics.refusing.set(0);
                        break;
                    }
                    Outcome::Split { status } if count_lines(&chunk) <= 1 => {
                        if let Some(after) = self.refuse(&chunk, status, "refused on its own") {
                            if sleep_or_stop(after, shutdown).await {
                                return false;
                            }
                            continue;
                        }
                        break;
                    }
                    Outcome::Split { .. } => {
                        self.metrics.splits.inc();
                        let (a, b) = split_half(&chunk);
                        // Popped last-first: keep the original order.
                        work.push(b);
                        work.push(a);
                        break;
                    }
                    Outcome::Refused { status, message } => {
                        if let Some(after) = self.refuse(&chunk, status, &message) {
                            if sleep_or_stop(after, shutdown).await {
                                return false;
                            }
                            continue;
                        }
                        break;
                    }
                    Outcome::Retry { after, reason } => {
                        self.metrics.retries.with_label_values(&[reason]).inc();
                        if sleep_or_stop(after, shutdown).await {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    /// A line refused on its own goes to the dead-letter file, unless the server has refused
    /// every line for a while: then the fault is the server's (a schema conflict, a broken proxy),
    /// not the lines', and the data stays in the outbox, retried every `auth_retry_s`, with
    /// `ecogate_influx_refusing` = 1. `Some(delay)` means wait and send the same line again.
    fn refuse(&mut self, chunk: &[u8], status: u16, message: &str) -> Option<Duration> {
        if self.refused_in_row >= MAX_REFUSED_IN_A_ROW {
            self.metrics.refusing.set(1);
            self.metrics.retries.with_label_values(&["refusing"]).inc();
            if self
                .refuse_log
                .is_none_or(|t| t.elapsed() > Duration::from_secs(300))
            {
                self.refuse_log = Some(Instant::now());
                tracing::error!(
                    status,
                    "influx: the last {} lines were all refused; keeping the data and retrying every {} s instead of dead-lettering more: {message}",
                    self.refused_in_row,
                    self.cfg.auth_retry_s
                );
            }
            return Some(Duration::from_secs(self.cfg.auth_retry_s));
        }
        self.refused_in_row += count_lines(chunk);
        self.dead_letter(chunk, status, message);
        None
    }

    fn next_backoff(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(crate::util::backoff_ms(
            self.cfg.retry_initial_ms as f64,
            self.attempt,
            self.cfg.retry_max_ms as f64,
        ))
    }

    async fn send(&mut self, chunk: &[u8]) -> Outcome {
        let mut req = self
            .client
            .post(self.write_url.clone())
            .header("Content-Type", "text/plain; charset=utf-8")
            .header("Accept", "application/json");
        if let Some(t) = &self.cfg.token {
            req = req.header("Authorization", format!("Token {}", t.expose()));
        }
        let body = if self.cfg.gzip {
            req = req.header("Content-Encoding", "gzip");
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(chunk.len() / 4),
                flate2::Compression::fast(),
            );
            enc.write_all(chunk).expect("writing to memory");
            enc.finish().expect("writing to memory")
        } else {
            chunk.to_vec()
        };
        let started = Instant::now();
        let result = req.body(body).send().await;
        self.metrics
            .request_seconds
            .observe(started.elapsed().as_secs_f64());
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.metrics.requests.with_label_values(&["network"]).inc();
                let after = self.next_backoff();
                tracing::warn!(retry_in = ?after, "influx: write failed: {e}");
                return Outcome::Retry {
                    after,
                    reason: "network",
                };
            }
        };
        let status = resp.status().as_u16();
        self.metrics.status(status);
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let message = resp.text().await.unwrap_or_default();
        let message: String = message.chars().take(2000).collect();
        if status != 401 && status != 403 && status != 404 {
            self.metrics.auth_failing.set(0);
        }
        match status {
            200..=299 => Outcome::Delivered,
            400 | 422 => {
                if count_lines(chunk) <= 1 {
                    Outcome::Refused { status, message }
                } else {
                    tracing::warn!(
                        status,
                        "influx: batch refused, splitting to isolate the bad lines: {message}"
                    );
                    Outcome::Split { status }
                }
            }
            413 => Outcome::Split { status },
            401 | 403 | 404 => {
                self.metrics.auth_failing.set(1);
                if self
                    .auth_log
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(300))
                {
                    self.auth_log = Some(Instant::now());
                    tracing::error!(
                        status,
                        url = %self.cfg.url,
                        org = %self.cfg.org,
                        bucket = %self.cfg.bucket,
                        "influx: write refused (token, permission or bucket); data is kept and retried every {} s: {message}",
                        self.cfg.auth_retry_s
                    );
                }
                Outcome::Retry {
                    after: Duration::from_secs(self.cfg.auth_retry_s),
                    reason: "auth",
                }
            }
            429 | 503 => {
                let after = match retry_after {
                    Some(a) => a.min(Duration::from_secs(3600)),
                    None => self.next_backoff(),
                };
                tracing::warn!(status, retry_in = ?after, "influx: server busy");
                Outcome::Retry {
                    after,
                    reason: "throttled",
                }
            }
            500..=599 => {
                let after = self.next_backoff();
                tracing::warn!(status, retry_in = ?after, "influx: server error: {message}");
                Outcome::Retry {
                    after,
                    reason: "server_error",
                }
            }
            _ => {
                let after = self.next_backoff();
                tracing::error!(status, retry_in = ?after, "influx: unexpected answer, keeping the data: {message}");
                Outcome::Retry {
                    after,
                    reason: "other_status",
                }
            }
        }
    }

    fn dead_letter(&self, chunk: &[u8], status: u16, message: &str) {
        let lines = count_lines(chunk);
        self.metrics.dead_letter_lines.inc_by(lines);
        let path = &self.cfg.dead_letter;
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let text = String::from_utf8_lossy(chunk);
        tracing::error!(
            status,
            lines,
            file = %path.display(),
            "influx: line refused, written to the dead-letter file: {message}"
        );
        if size >= self.cfg.dead_letter_max_bytes {
            tracing::error!(file = %path.display(), "influx: dead-letter file at its size cap; refused line counted but not kept");
            return;
        }
        let mut out = String::new();
        for line in text.lines() {
            let entry = serde_json::json!({
                "time": chrono::Utc::now().to_rfc3339(),
                "status": status,
                "message": message,
                "line": line,
            });
            out.push_str(&entry.to_string());
            out.push('\n');
        }
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(out.as_bytes()));
        if let Err(e) = written {
            tracing::error!(file = %path.display(), "influx: cannot write the dead-letter file: {e}");
        }
    }
}

/// True when stopped.
async fn sleep_or_stop(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
}

/// Lines read from the outbox at once to be merged (at most [`MAX_BODY_BYTES`] of them).
const COALESCE_LINES: u64 = 50_000;

/// `body` in runs of at most `lines` whole lines.
fn line_chunks(body: &[u8], lines: usize) -> impl Iterator<Item = &[u8]> {
    let lines = lines.max(1);
    let mut rest = body;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = 0;
        for _ in 0..lines {
            match rest[end..].iter().position(|&b| b == b'\n') {
                Some(i) => end += i + 1,
                None => {
                    end = rest.len();
                    break;
                }
            }
            if end == rest.len() {
                break;
            }
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

fn count_lines(chunk: &[u8]) -> u64 {
    chunk.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Splits at the line boundary nearest the middle; both halves end in a newline.
fn split_half(chunk: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let ends: Vec<usize> = chunk
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    let cut = ends[ends.len() / 2 - 1];
    (chunk[..cut].to_vec(), chunk[cut..].to_vec())
}

/// `Retry-After`: delay in seconds or an HTTP date.
pub fn parse_retry_after(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let ms = at.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis(ms.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_take_whole_lines_up_to_the_batch_size() {
        let body = b"a\nb\nc\nd\ne\n";
        let chunks: Vec<&[u8]> = line_chunks(body, 2).collect();
        assert_eq!(chunks, vec![&b"a\nb\n"[..], b"c\nd\n", b"e\n"]);
    }

    #[test]
    fn halves_split_at_line_ends() {
        let (a, b) = split_half(b"a 1\nb 2\nc 3\n");
        assert_eq!((&a[..], &b[..]), (&b"a 1\n"[..], &b"b 2\nc 3\n"[..]));
        let (a, b) = split_half(b"a 1\nb 2\n");
        assert_eq!((&a[..], &b[..]), (&b"a 1\n"[..], &b"b 2\n"[..]));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let soon = chrono::Utc::now() + chrono::Duration::seconds(30);
        let d = parse_retry_after(&soon.to_rfc2822()).unwrap();
        assert!(
            d > Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
