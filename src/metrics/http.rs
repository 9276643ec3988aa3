//! The metrics listener: a small HTTP/1.1 server for Prometheus scrapes and health probes.
//!
//! - `GET /metrics`: the text exposition format.
//! - `GET /healthz`: 200 while the process answers (liveness).
//! - `GET /readyz`: 200 when every readiness check passes (the store takes commits, the sources
//!   are connected, the outbox is below its cap), else 503; the body has one line per check.
//! - `GET /`, `/firm/ID`, `/meters`: the status pages (`crate::status`), `?lang=en` for English.
//!
//! With a token configured, every route but the two probes asks for it.
//!
//! HEAD is answered like GET without the body. Bound to loopback unless configured otherwise.
//! Requests are read under a timeout and a size limit, so a slow or hostile client cannot hold a
//! connection or grow memory; each connection is served and closed. Hand-written rather than a
//! framework: three fixed read-only routes and no request body, where a framework would bring
//! its own timeouts and limits to configure to the same effect.

use prometheus::{Encoder, TextEncoder};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Something that can refresh gauges just before a scrape (e.g. device health).
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// One readiness check: `Ok(what is fine)` or `Err(what is wrong, in words)`.
#[derive(Clone)]
pub struct Check {
    pub name: &'static str,
    pub probe: Arc<dyn Fn() -> Result<String, String> + Send + Sync>,
}

impl Check {
    pub fn new(
        name: &'static str,
        probe: impl Fn() -> Result<String, String> + Send + Sync + 'static,
    ) -> Check {
        Check {
            name,
            probe: Arc::new(probe),
        }
    }
}

/// An answer from the status pages.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The status pages: (path, query) to a page, `None` for a path they do not serve.
pub type Pages = Arc<dyn Fn(&str, &str) -> Option<Page> + Send + Sync>;

/// What the listener serves.
#[derive(Clone)]
pub struct Endpoints {
    /// Gathered in order; a family already gathered from an earlier registry is skipped in the
    /// later ones (a source kept across a reload keeps the registry it started with).
    pub registries: Vec<prometheus::Registry>,
    pub refresh: Vec<Refresh>,
    pub checks: Vec<Check>,
    pub pages: Option<Pages>,
    /// When set, every route but /healthz and /readyz asks for it.
    pub token: Option<crate::util::Secret>,
}

/// Whether the request carries the token, as `Authorization: Bearer …` or `?token=…`.
fn authorized(head: &str, query: &str, token: &str) -> bool {
    // Compared without an early exit, so that timing says nothing about how much matched.
    let same = |given: &str| {
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    };
    let from_header = head.lines().skip(1).any(|l| {
        let Some((name, value)) = l.split_once(':') else {
            return false;
        };
        name.trim().eq_ignore_ascii_case("authorization")
            && value
                .trim()
                .strip_prefix("Bearer ")
                .is_some_and(|t| same(t.trim()))
    });
    from_header
        || query
            .split('&')
            .filter_map(|kv| kv.strip_prefix("token="))
            .any(same)
}

impl Endpoints {
    /// (ready, one line per check).
    pub fn readiness(&self) -> (bool, String) {
        let mut ready = true;
        let mut body = String::new();
        for c in &self.checks {
            match (c.probe)() {
                Ok(what) => body.push_str(&format!("ok   {}: {what}\n", c.name)),
                Err(why) => {
                    ready = false;
                    body.push_str(&format!("FAIL {}: {why}\n", c.name));
                }
            }
        }
        (ready, body)
    }
}

/// Binds and serves until `shutdown` turns true. Returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    endpoints: Endpoints,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.changed() => break,
                a = listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else { continue };
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), handle(stream, &endpoints)).await;
            });
        }
    });
    Ok((local, task))
}

async fn handle(mut stream: TcpStream, endpoints: &Endpoints) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 8192 {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request too large\n",
                false,
            )
            .await;
        }
    }
    let line = buf.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET or HEAD /metrics, /healthz, /readyz\n",
            false,
        )
        .await;
    }
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let head = String::from_utf8_lossy(&buf);
    if let Some(token) = &endpoints.token {
        if !matches!(route, "/healthz" | "/readyz") && !authorized(&head, query, token.expose()) {
            return respond(
                &mut stream,
                "401 Unauthorized",
                "text/plain",
                b"a token is required: Authorization: Bearer TOKEN, or ?token=TOKEN\n",
                head_only,
            )
            .await;
        }
    }
    match route {
        "/metrics" => {
            let registries = endpoints.registries.clone();
            let refresh = endpoints.refresh.clone();
            // The refreshers read the store: off the async workers.
            let body = tokio::task::spawn_blocking(move || {
                for r in &refresh {
                    r();
                }
                let mut families = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for r in &registries {
                    for f in r.gather() {
                        if seen.insert(f.name().to_string()) {
                            families.push(f);
                        }
                    }
                }
                let mut body = Vec::new();
                TextEncoder::new()
                    .encode(&families, &mut body)
                    .map(|_| body)
            })
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
                head_only,
            )
            .await
        }
        "/healthz" => respond(&mut stream, "200 OK", "text/plain", b"ok\n", head_only).await,
        "/readyz" => {
            let e = endpoints.clone();
            let (ready, body) = tokio::task::spawn_blocking(move || e.readiness())
                .await
                .map_err(std::io::Error::other)?;
            let status = if ready {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            respond(
                &mut stream,
                status,
                "text/plain; charset=utf-8",
                body.as_bytes(),
                head_only,
            )
            .await
        }
        _ => {
            let page = match endpoints.pages.clone() {
                Some(pages) => {
                    let (route, query) = (route.to_string(), query.to_string());
                    tokio::task::spawn_blocking(move || pages(&route, &query))
                        .await
                        .map_err(std::io::Error::other)?
                }
                None => None,
            };
            match page {
                Some(p) => respond(&mut stream, p.status, p.content_type, &p.body, head_only).await,
                None => {
                    respond(
                        &mut stream,
                        "404 Not Found",
                        "text/plain",
                        b"not here: /, /firm/ID, /meters, /metrics, /healthz, /readyz\n",
                        head_only,
                    )
                    .await
                }
            }
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}
