//! Topic patterns with named segments: `park/{firm}/{site}/{meter}/telemetry`.

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// `$share/<group>/` before the topic: the broker hands each message to one member of the
    /// group. Delivered topics do not carry it, so it takes no part in matching.
    share: Option<String>,
    segments: Vec<Segment>,
}

impl Pattern {
    /// Parses a pattern. MQTT wildcards are not allowed: a named segment is the wildcard, so
    /// every topic a subscription can receive is one the pattern can bind.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let (share, text) = match text.strip_prefix("$share/") {
            Some(rest) => match rest.split_once('/') {
                Some((group, topic))
                    if !group.is_empty() && !group.contains(['+', '#']) && !topic.is_empty() =>
                {
                    (Some(group.to_string()), topic)
                }
                _ => {
                    return Err(
                        "a shared subscription is `$share/<group>/<topic>`, the group a name without + or #"
                            .into(),
                    )
                }
            },
            None => (None, text),
        };
        if text.is_empty() {
            return Err("empty topic pattern".into());
        }
        let mut segments = Vec::new();
        for seg in text.split('/') {
            if seg.contains('+') || seg.contains('#') {
                return Err(format!(
                    "segment `{seg}`: use a named segment like {{meter}} instead of MQTT wildcards"
                ));
            }
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("segment `{seg}`: a name is letters, digits and _"));
                }
                segments.push(Segment::Named(name.to_string()));
            } else if seg.contains('{') || seg.contains('}') {
                return Err(format!(
                    "segment `{seg}`: a named segment is a whole segment, like {{meter}}"
                ));
            } else {
                segments.push(Segment::Literal(seg.to_string()));
            }
        }
        Ok(Pattern { share, segments })
    }

    /// The subscription filter: named segments become `+`.
    pub fn filter(&self) -> String {
        let topic = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::Named(_) => "+",
            })
            .collect::<Vec<_>>()
            .join("/");
        match &self.share {
            Some(group) => format!("$share/{group}/{topic}"),
            None => topic,
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Named(n) if n == name))
    }

    /// Matches a topic; returns the value of segment `name` (if the pattern has it) on a match.
    pub fn bind<'t>(&self, topic: &'t str, name: &str) -> Option<Option<&'t str>> {
        let mut found = None;
        let mut parts = topic.split('/');
        for seg in &self.segments {
            let part = parts.next()?;
            match seg {
                Segment::Literal(l) if l != part => return None,
                Segment::Literal(_) => {}
                Segment::Named(n) => {
                    if part.is_empty() {
                        return None;
                    }
                    if n == name {
                        found = Some(part);
                    }
                }
            }
        }
        parts.next().is_none().then_some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_segments_bind_and_filter() {
        let p = Pattern::parse("park/{firm}/{site}/{meter}/telemetry").unwrap();
        assert_eq!(p.filter(), "park/+/+/+/telemetry");
        assert_eq!(p.bind("park/f1/s1/m7/telemetry", "meter"), Some(Some("m7")));
        assert_eq!(p.bind("park/f1/s1/m7/status", "meter"), None);
        assert_eq!(p.bind("park/f1/s1/m7/telemetry/x", "meter"), None);
        assert_eq!(p.bind("park/f1/s1//telemetry", "meter"), None);
        assert!(Pattern::parse("park/+/x").is_err());
        assert!(Pattern::parse("park/{me ter}").is_err());
        let shared = Pattern::parse("$share/ecogate-1/park/1/{firm}/{meter}").unwrap();
        assert_eq!(shared.filter(), "$share/ecogate-1/park/1/+/+");
        assert_eq!(shared.bind("park/1/f/m9", "meter"), Some(Some("m9")));
        assert_eq!(shared.bind("park/2/f/m9", "meter"), None);
        assert!(Pattern::parse("$share/park/x").is_ok());
        assert!(Pattern::parse("$share//park/x").is_err());
        assert!(Pattern::parse("$share/g").is_err());
        assert!(Pattern::parse("$share/g+/t").is_err());
        let fixed = Pattern::parse("site/a/energy").unwrap();
        assert_eq!(fixed.bind("site/a/energy", "meter"), Some(None));
    }
}
