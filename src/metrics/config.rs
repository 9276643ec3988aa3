//! `[metrics]`: where `/metrics` is served.

use crate::config::raw::S;
use crate::config::Validator;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<S<String>>,
    pub enabled: Option<S<bool>>,
}

/// The address to serve on (loopback port 9108 by default), or `None` when switched off.
pub fn validate(v: &mut Validator<'_>, raw: &RawMetrics) -> Option<SocketAddr> {
    match (&raw.enabled, &raw.listen) {
        (Some(e), _) if !*e.get_ref() => None,
        (_, None) => Some(SocketAddr::from(([127, 0, 0, 1], 9108))),
        (_, Some(l)) => match l.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                v.err(
                    l,
                    "metrics.listen",
                    format!("`{}` is not an address such as 127.0.0.1:9108", l.get_ref()),
                );
                None
            }
        },
    }
}
