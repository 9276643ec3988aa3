//! `[metrics]`: where `/metrics`, the health probes and the status page are served, and the
//! token that guards them when they listen beyond loopback.
//!
//! ```toml
//! [metrics]
//! listen = "0.0.0.0:9108"                 # default 127.0.0.1:9108
//! token_env = "ECOGATE_STATUS_TOKEN"      # or token_file = "…"
//! ```

use crate::config::raw::S;
use crate::config::Validator;
use crate::util::Secret;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<S<String>>,
    pub enabled: Option<S<bool>>,
    pub token_file: Option<S<String>>,
    pub token_env: Option<S<String>>,
}

/// The validated listener.
#[derive(Debug, Clone)]
pub struct Listener {
    pub listen: SocketAddr,
    /// Asked for (`Authorization: Bearer …` or `?token=…`) on every route but /healthz and
    /// /readyz.
    pub token: Option<Secret>,
}

/// The listener (loopback port 9108 by default), or `None` when switched off.
pub fn validate(v: &mut Validator<'_>, raw: &RawMetrics) -> Option<Listener> {
    let listen = match (&raw.enabled, &raw.listen) {
        (Some(e), _) if !*e.get_ref() => return None,
        (_, None) => SocketAddr::from(([127, 0, 0, 1], 9108)),
        (_, Some(l)) => match l.get_ref().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                v.err(
                    l,
                    "metrics.listen",
                    format!("`{}` is not an address such as 127.0.0.1:9108", l.get_ref()),
                );
                return None;
            }
        },
    };
    let token = match (&raw.token_file, &raw.token_env) {
        (Some(f), Some(_)) => {
            v.err(
                f,
                "metrics.token_file",
                "give one of token_file and token_env",
            );
            None
        }
        (Some(f), None) => {
            let path = v.relative_to_config(f.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(t) if !t.trim().is_empty() => Some(Secret::new(t.trim().to_string())),
                Ok(_) => {
                    v.err(
                        f,
                        "metrics.token_file",
                        format!("{} is empty", path.display()),
                    );
                    None
                }
                Err(e) => {
                    v.err(
                        f,
                        "metrics.token_file",
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
        (None, Some(name)) => match std::env::var(name.get_ref()) {
            Ok(t) if !t.trim().is_empty() => Some(Secret::new(t.trim().to_string())),
            _ => {
                v.err(
                    name,
                    "metrics.token_env",
                    format!("environment variable `{}` is not set", name.get_ref()),
                );
                None
            }
        },
        (None, None) => None,
    };
    Some(Listener { listen, token })
}
