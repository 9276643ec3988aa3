//! The park configuration most tests start from, built instead of written out again: a park,
//! its firms and sites, meters with their channels, and any further section as text.

use std::fmt::Write;

/// A configuration file's text, built up section by section.
#[derive(Debug, Clone)]
pub struct ParkToml(String);

impl ParkToml {
    /// `[park]` named `name` (factor year 2022), nothing else.
    pub fn new(name: &str) -> ParkToml {
        ParkToml(format!(
            "[park]\nname = \"{name}\"\ngrid_factor_year = 2022\n"
        ))
    }

    /// Park `P` with one firm `f` (`F`, 1 mu) and one site `s` of `kind` (factory,
    /// charging_station, hydrogen_site, ...): the park of most tests.
    pub fn one_site(kind: &str) -> ParkToml {
        ParkToml::new("P").firm("f", 1.0).site("s", "f", kind)
    }

    pub fn firm(mut self, id: &str, land_mu: f64) -> ParkToml {
        let _ = write!(
            self.0,
            "[[firms]]\nid = \"{id}\"\nname = \"{}\"\nland_mu = {land_mu}\n",
            id.to_uppercase()
        );
        self
    }

    pub fn site(mut self, id: &str, firm: &str, kind: &str) -> ParkToml {
        let _ = write!(
            self.0,
            "[[sites]]\nid = \"{id}\"\nfirm = \"{firm}\"\nkind = \"{kind}\"\n"
        );
        self
    }

    /// A meter at `site` with `channels` (each an inline table: [`counter`], [`gauge`]).
    pub fn meter(mut self, id: &str, site: &str, channels: &[String]) -> ParkToml {
        let _ = write!(
            self.0,
            "[[meters]]\nid = \"{id}\"\nsite = \"{site}\"\nchannels = [\n  {},\n]\n",
            channels.join(",\n  ")
        );
        self
    }

    /// Any further text (a component's section), as written.
    pub fn section(mut self, toml: &str) -> ParkToml {
        self.0.push_str(toml);
        if !self.0.ends_with('\n') {
            self.0.push('\n');
        }
        self
    }

    pub fn text(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ParkToml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A counter channel: `{ id, carrier, kind = "counter", unit, max_rate_per_hour }`.
pub fn counter(id: &str, carrier: &str, unit: &str, max_rate_per_hour: f64) -> String {
    format!("{{ id = \"{id}\", carrier = \"{carrier}\", kind = \"counter\", unit = \"{unit}\", max_rate_per_hour = {max_rate_per_hour} }}")
}

/// A recorded gauge channel: `{ id, kind = "gauge", unit }`, with any further keys.
pub fn gauge(id: &str, unit: &str, extra: &str) -> String {
    if extra.is_empty() {
        format!("{{ id = \"{id}\", kind = \"gauge\", unit = \"{unit}\" }}")
    } else {
        format!("{{ id = \"{id}\", kind = \"gauge\", unit = \"{unit}\", {extra} }}")
    }
}
