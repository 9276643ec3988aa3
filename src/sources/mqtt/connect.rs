//! A connection's settings from the `[mqtt]` broker section: address, credentials, TLS. Shared
//! by the source's client, `probe`, and the alert publisher the application builds from it.

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// TLS to the broker: the CA that signed its certificate, and a client certificate if it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca_file: PathBuf,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// Where the broker is and how to log in; validated from `[mqtt]` in `config.rs`.
#[derive(Debug, Clone)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<crate::util::Secret>,
    pub keep_alive_s: u64,
    pub max_packet_bytes: usize,
    pub max_payload_bytes: usize,
    pub sys_topics: bool,
    pub tls: Option<Tls>,
}

/// Connection options shared by the subscriber and the alert publisher.
pub fn base_options(b: &Broker, client_id: &str) -> Result<MqttOptions, String> {
    let mut o = MqttOptions::new(client_id.to_string(), b.host.clone(), b.port);
    o.set_keep_alive(Duration::from_secs(b.keep_alive_s))
        .set_max_packet_size(b.max_packet_bytes, b.max_packet_bytes)
        .set_request_channel_capacity(10_000);
    if let Some(user) = &b.username {
        o.set_credentials(
            user.clone(),
            b.password
                .as_ref()
                .map_or(String::new(), |p| p.expose().to_string()),
        );
    }
    if let Some(tls) = &b.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls_config(tls)?,
        )));
    }
    Ok(o)
}

pub(super) fn tls_config(tls: &Tls) -> Result<Arc<rustls::ClientConfig>, String> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut read(&tls.ca_file)?.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: {e}", tls.ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", tls.ca_file.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
                .map_err(|e| format!("{}: {e}", key.display()))?
                .ok_or_else(|| format!("{}: no private key", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| e.to_string())?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
