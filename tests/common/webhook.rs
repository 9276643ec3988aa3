//! A webhook receiver for alert tests: accepts Alertmanager-style POSTs on a loopback port and
//! keeps every alert object it is sent.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub type Alerts = Arc<Mutex<Vec<serde_json::Value>>>;

/// Starts the receiver; returns its port and the alerts received so far.
pub async fn start() -> (u16, Alerts) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Alerts = Arc::default();
    let sink = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                while let Ok(n) = s.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        let v: serde_json::Value =
                            serde_json::from_str(&body[..len]).unwrap_or_default();
                        sink.lock()
                            .unwrap()
                            .extend(v["alerts"].as_array().into_iter().flatten().cloned());
                        break;
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (port, got)
}

/// (status, alertname, firm or site) of each alert received.
pub fn summary(got: &Alerts) -> Vec<(String, String, String)> {
    got.lock()
        .unwrap()
        .iter()
        .map(|a| {
            let l = &a["labels"];
            (
                a["status"].as_str().unwrap_or("").into(),
                l["alertname"].as_str().unwrap_or("").into(),
                l["firm"]
                    .as_str()
                    .or(l["site"].as_str())
                    .unwrap_or("")
                    .into(),
            )
        })
        .collect()
}
