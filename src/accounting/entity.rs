//! Who a figure belongs to: a meter, site, firm or the park, and a meter's channel, by
//! configuration indices. The identity every accounting file shares, so that none of them
//! imports another for it.

/// Who an aggregate belongs to. Indices point into the configuration's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    Meter(u32),
    Site(u32),
    Firm(u32),
    Park,
}

impl Entity {
    pub fn level(self) -> &'static str {
        match self {
            Entity::Meter(_) => "meter",
            Entity::Site(_) => "site",
            Entity::Firm(_) => "firm",
            Entity::Park => "park",
        }
    }
}

/// A channel by configuration indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelRef {
    pub meter: u32,
    pub channel: u32,
}
