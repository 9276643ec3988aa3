//! Alertmanager-compatible webhook payloads, posted over plain HTTP (the receiver is expected
//! on the gateway's network; put a TLS-terminating relay in front for anything further).

use super::rules::Notification;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The webhook body, in Alertmanager's format (version 4).
pub fn payload(notifications: &[Notification]) -> String {
    let alerts: Vec<serde_json::Value> = notifications
        .iter()
        .map(|n| {
            let mut labels = serde_json::Map::new();
            labels.insert("alertname".into(), n.condition.alertname().into());
            labels.insert(n.condition.entity_label().into(), n.entity.clone().into());
            labels.insert("source".into(), "ecogate".into());
            let summary = if n.firing {
                format!("{} {}: {:.4} above its threshold {:.4}", n.condition.entity_label(), n.entity, n.value, n.threshold)
            } else {
                format!("{} {}: back within its threshold", n.condition.entity_label(), n.entity)
            };
            serde_json::json!({
                "status": if n.firing { "firing" } else { "resolved" },
                "labels": labels,
                "annotations": { "summary": summary },
                "startsAt": rfc3339(n.starts_at_ms),
                "endsAt": n.ends_at_ms.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            })
        })
        .collect();
    let status = if notifications.iter().any(|n| n.firing) {
        "firing"
    } else {
        "resolved"
    };
    serde_json::json!({
        "version": "4",
        "receiver": "ecogate",
        "status": status,
        "groupLabels": {},
        "commonLabels": { "source": "ecogate" },
        "alerts": alerts,
    })
    .to_string()
}

/// Posts `body` as JSON to an `http://host:port/path` URL; any 2xx is success.
pub async fn post(url: &str, body: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// webhook URLs are supported")?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = vec![0u8; 64];
        let n = s.read(&mut head).await.map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&head[..n]).to_string();
        let code = line.split_whitespace().nth(1).unwrap_or("");
        if code.starts_with('2') {
            Ok(())
        } else {
            Err(format!(
                "receiver answered `{}`",
                line.lines().next().unwrap_or("")
            ))
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}
