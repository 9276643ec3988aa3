//! `ecogate probe` for a Modbus meter: one read of every point, with the raw registers, the
//! decoded values and the request timings, for commissioning (compare a value with the meter's
//! display) and for finding out why a meter is down.

use super::config::{Device, Point, Profile, Transport};
use super::plan::{self, Limits, Span};
use super::poller::{exception_label, point_value, read_request, Failure};
use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

/// What one probe saw.
#[derive(Debug)]
pub struct ProbeReport {
    pub target: String,
    pub unit_id: u8,
    /// Milliseconds to connect, or why it failed.
    pub connect: Result<f64, String>,
    pub requests: Vec<RequestOutcome>,
    pub points: Vec<PointOutcome>,
}

#[derive(Debug)]
pub struct RequestOutcome {
    pub span: String,
    pub elapsed_ms: f64,
    pub result: Result<usize, String>,
}

#[derive(Debug)]
pub struct PointOutcome {
    pub channel: String,
    pub register: String,
    pub data_type: String,
    pub word_order: String,
    pub words: Vec<u16>,
    pub value: Result<f64, String>,
    pub unit: String,
}

impl ProbeReport {
    /// Every point read and decoded.
    pub fn ok(&self) -> bool {
        self.connect.is_ok()
            && !self.points.is_empty()
            && self.points.iter().all(|p| p.value.is_ok())
    }
}

fn failure_text(f: Failure) -> String {
    match f {
        Failure::Exception(code) => format!("exception {code} ({})", exception_label(code)),
        Failure::Timeout => "timeout: no answer".into(),
        Failure::Transport => "transport error: the connection failed during the request".into(),
        Failure::BadResponse => "bad response: fewer registers than asked for".into(),
        Failure::Connect => "not connected".into(),
    }
}

fn register(span: &Span) -> String {
    format!(
        "{} {} (0x{:04X})",
        span.function.name(),
        span.address,
        span.address
    )
}

/// Reads every point of `device` once over a connection of its own.
pub async fn probe(transport: &Transport, device: &Device) -> ProbeReport {
    let timeout = Duration::from_millis(device.timeout_ms);
    let mut report = ProbeReport {
        target: transport.describe(),
        unit_id: device.unit_id,
        connect: Err(String::new()),
        requests: Vec::new(),
        points: Vec::new(),
    };
    let started = Instant::now();
    let mut conn = match super::transport::connect(transport, timeout).await {
        Ok(c) => {
            report.connect = Ok(started.elapsed().as_secs_f64() * 1000.0);
            c
        }
        Err(e) => {
            report.connect = Err(e.to_string());
            return report;
        }
    };
    let spans: Vec<Span> = device.points.iter().map(|p| p.span).collect();
    let requests = plan::plan(&spans, device.limits);
    let mut words_of: Vec<Option<Result<Vec<u16>, String>>> = vec![None; device.points.len()];
    for req in &requests {
        let started = Instant::now();
        let got = read_request(&mut conn, device.unit_id, req, timeout).await;
        let span = format!(
            "{} {}..{} ({} registers)",
            req.function.name(),
            req.address,
            req.address as u32 + req.count as u32 - 1,
            req.count
        );
        report.requests.push(RequestOutcome {
            span,
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
            result: got.as_ref().map(Vec::len).map_err(|f| failure_text(*f)),
        });
        for &(pi, offset) in &req.points {
            let p = &device.points[pi];
            words_of[pi] = Some(match &got {
                Ok(words) => {
                    let start = offset as usize;
                    let end = (start + p.data_type.width() as usize).min(words.len());
                    Ok(words[start..end].to_vec())
                }
                Err(f) => Err(failure_text(*f)),
            });
        }
    }
    for (p, words) in device.points.iter().zip(words_of) {
        report.points.push(point_outcome(p, words));
    }
    report
}

fn point_outcome(p: &Point, words: Option<Result<Vec<u16>, String>>) -> PointOutcome {
    let (words, value) = match words {
        None => (Vec::new(), Err("not read".to_string())),
        Some(Err(e)) => (Vec::new(), Err(e)),
        Some(Ok(w)) => {
            let v = point_value(p, &w).map_err(|(reason, detail)| format!("{reason}: {detail}"));
            (w, v)
        }
    };
    PointOutcome {
        channel: p.channel.clone(),
        register: register(&p.span),
        data_type: format!("{:?}", p.data_type).to_lowercase(),
        word_order: format!("{:?}", p.word_order),
        words,
        value,
        unit: p.unit.symbol.to_string(),
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.connect {
            Ok(ms) => writeln!(
                f,
                "{}, unit {}: connected in {ms:.1} ms",
                self.target, self.unit_id
            )?,
            Err(e) => {
                return writeln!(
                    f,
                    "{}, unit {}: cannot connect: {e}",
                    self.target, self.unit_id
                )
            }
        }
        writeln!(f, "\nrequests")?;
        for r in &self.requests {
            let result = match &r.result {
                Ok(n) => format!("ok, {n} registers"),
                Err(e) => e.clone(),
            };
            writeln!(f, "  {:<34} {:>8.1} ms  {result}", r.span, r.elapsed_ms)?;
        }
        writeln!(f, "\nchannels")?;
        writeln!(
            f,
            "  {:<20} {:<24} {:<6} {:<6} {:<24} {:>16} unit",
            "channel", "register", "type", "order", "raw registers", "value"
        )?;
        for p in &self.points {
            let mut raw = String::new();
            for w in &p.words {
                let _ = write!(raw, "{w:04X} ");
            }
            let value = match &p.value {
                Ok(v) => format!("{v}"),
                Err(e) => format!("refused ({e})"),
            };
            writeln!(
                f,
                "  {:<20} {:<24} {:<6} {:<6} {:<24} {:>16} {}",
                p.channel,
                p.register,
                p.data_type,
                p.word_order,
                raw.trim_end(),
                value,
                p.unit
            )?;
        }
        Ok(())
    }
}

/// A device reading every point of a profile, named by the point (no configuration: for
/// commissioning a new meter). CT/PT ratios are not applied: values are as the meter sends them.
pub fn device_from_profile(profile: &Profile, unit_id: u8, timeout_ms: u64) -> Device {
    let points = profile
        .points
        .iter()
        .map(|(name, p)| Point {
            channel: name.clone(),
            span: Span {
                function: p.function,
                address: p.address,
                width: p.data_type.width(),
            },
            data_type: p.data_type,
            word_order: p.word_order,
            scale: p.scale,
            offset: 0.0,
            multiplier: 1.0,
            unit: p.unit,
            min: None,
            max: None,
        })
        .collect();
    Device {
        meter: format!("{}@{unit_id}", profile.name),
        unit_id,
        poll_interval_ms: 1000,
        timeout_ms,
        retries: 0,
        limits: Limits {
            max_per_request: 125,
            max_gap: 10,
            single: false,
        },
        points,
    }
}
