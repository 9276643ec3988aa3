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
pub fn base_options(b: &Broker, client_id: &str) -> Result<MqttOptions, TlsError> {
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

/// Why the TLS settings cannot be used; each names the file and keeps its cause.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error("{} is not a PEM file of certificates or a key", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error("{}: no private key in it", path.display())]
    NoKey { path: PathBuf },
    #[error("{} was refused", path.display())]
    Refused {
        path: PathBuf,
        #[source]
        cause: rustls::Error,
    },
    #[error("no TLS protocol version to offer")]
    Versions(#[source] rustls::Error),
}

pub(super) fn tls_config(tls: &Tls) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|cause| TlsError::Read {
            path: p.clone(),
            cause,
        })
    };
    let pem = |p: &PathBuf| {
        let p = p.clone();
        move |cause| TlsError::Pem { path: p, cause }
    };
    let refused = |p: &PathBuf| {
        let p = p.clone();
        move |cause| TlsError::Refused { path: p, cause }
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut read(&tls.ca_file)?.as_slice()) {
        roots
            .add(cert.map_err(pem(&tls.ca_file))?)
            .map_err(refused(&tls.ca_file))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::Versions)?
    .with_root_certificates(roots);
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(pem(cert))?;
            let key_der = rustls_pemfile::private_key(&mut read(key)?.as_slice())
                .map_err(pem(key))?
                .ok_or_else(|| TlsError::NoKey { path: key.clone() })?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(refused(cert))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
