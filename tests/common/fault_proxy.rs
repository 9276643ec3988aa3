//! A small HTTP proxy in front of the real VictoriaMetrics, to answer what a real server will not
//! on demand (400 for one line, 401, 413, 429 with Retry-After, 5xx). Requests it does not fault
//! go through to the server unchanged, and the server's answer comes back.

#![allow(dead_code)]

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    /// The body, decompressed.
    pub body: String,
    pub status: u16,
}

impl Seen {
    pub fn lines(&self) -> usize {
        self.body.lines().count()
    }
}

/// Decides an answer: `Some((status, headers, body))` to fault, `None` to pass through.
pub type Rule = Box<dyn FnMut(usize, &str) -> Option<(u16, Vec<(String, String)>, String)> + Send>;

pub struct FaultProxy {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FaultProxy {
    /// Starts on a free loopback port, forwarding to `upstream` (host:port).
    pub async fn start(upstream: String, rule: Rule) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rule = Arc::new(Mutex::new(rule));
        let client = reqwest::Client::new();
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (seen, rule, client, upstream) = (
                    seen2.clone(),
                    rule.clone(),
                    client.clone(),
                    upstream.clone(),
                );
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut r = BufReader::new(r);
                    loop {
                        let mut request_line = String::new();
                        if r.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut headers = Vec::new();
                        let mut len = 0usize;
                        loop {
                            let mut h = String::new();
                            if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end().to_string();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':') {
                                if k.eq_ignore_ascii_case("content-length") {
                                    len = v.trim().parse().unwrap_or(0);
                                }
                                headers.push((k.trim().to_string(), v.trim().to_string()));
                            }
                        }
                        let mut raw = vec![0u8; len];
                        if r.read_exact(&mut raw).await.is_err() {
                            return;
                        }
                        let gz = headers.iter().any(|(k, v)| {
                            k.eq_ignore_ascii_case("content-encoding") && v == "gzip"
                        });
                        let body = if gz {
                            let mut s = String::new();
                            flate2::read::GzDecoder::new(&raw[..])
                                .read_to_string(&mut s)
                                .unwrap();
                            s
                        } else {
                            String::from_utf8_lossy(&raw).to_string()
                        };
                        let index = seen.lock().unwrap().len();
                        let fault = (rule.lock().unwrap())(index, &body);
                        let (status, extra, text) = match fault {
                            Some(f) => f,
                            None => {
                                let path = request_line.split_whitespace().nth(1).unwrap_or("/");
                                let mut req = client
                                    .post(format!("http://{upstream}{path}"))
                                    .body(raw.clone());
                                for (k, v) in &headers {
                                    if !k.eq_ignore_ascii_case("host")
                                        && !k.eq_ignore_ascii_case("content-length")
                                    {
                                        req = req.header(k, v);
                                    }
                                }
                                match req.send().await {
                                    Ok(resp) => {
                                        let st = resp.status().as_u16();
                                        (st, Vec::new(), resp.text().await.unwrap_or_default())
                                    }
                                    Err(_) => (502, Vec::new(), "upstream down".into()),
                                }
                            }
                        };
                        seen.lock().unwrap().push(Seen {
                            at: Instant::now(),
                            body,
                            status,
                        });
                        let mut resp = format!(
                            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\n",
                            text.len()
                        );
                        for (k, v) in extra {
                            resp.push_str(&format!("{k}: {v}\r\n"));
                        }
                        resp.push_str("\r\n");
                        resp.push_str(&text);
                        if w.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FaultProxy { port, seen }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
