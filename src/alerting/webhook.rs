//! Alertmanager-compatible webhook payloads, posted with reqwest over HTTP or HTTPS (rustls with
//! the web's root certificates; proxies from `HTTPS_PROXY`/`HTTP_PROXY`, as chat-bot webhooks of
//! DingTalk, WeCom or Feishu need from most gateways).

use super::rules::Notification;
use std::time::Duration;

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

/// Why a notification did not reach the receiver. Never carries the URL (its userinfo may be a
/// secret): reqwest's errors are taken `without_url`.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("timed out")]
    Timeout(#[source] reqwest::Error),
    #[error("cannot connect")]
    Connect(#[source] reqwest::Error),
    #[error("sending failed")]
    Send(#[source] reqwest::Error),
    #[error("receiver answered {status}: {start}")]
    Refused {
        status: reqwest::StatusCode,
        /// The first 200 characters of its answer.
        start: String,
    },
}

/// The client a run of the alerting loop keeps: it reuses connections and TLS sessions to the
/// receiver (it belongs to the runtime it is used on, so each run makes its own).
pub fn client() -> Result<reqwest::Client, WebhookError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("ecogate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(WebhookError::Client)
}

/// Posts `body` as JSON to an `http(s)://` URL; any 2xx is success. The error names the
/// status (and the start of the answer) or the transport failure, never the URL's userinfo.
pub async fn post(client: &reqwest::Client, url: &str, body: &str) -> Result<(), WebhookError> {
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                WebhookError::Timeout(e.without_url())
            } else if e.is_connect() {
                WebhookError::Connect(e.without_url())
            } else {
                WebhookError::Send(e.without_url())
            }
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(WebhookError::Refused {
        status,
        start: text.chars().take(200).collect(),
    })
}
