//! The window kinds a park accounts in: configuration vocabulary (`[accounting] windows`,
//! retention per window). Their calendar arithmetic is the accounting's (`accounting/window.rs`).

use std::fmt;

/// A kind of aggregation window, aligned to the park's local calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WindowKind {
    Minute,
    QuarterHour,
    Hour,
    Day,
    Month,
    Year,
}

impl WindowKind {
    pub const ALL: &'static [WindowKind] = &[
        WindowKind::Minute,
        WindowKind::QuarterHour,
        WindowKind::Hour,
        WindowKind::Day,
        WindowKind::Month,
        WindowKind::Year,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WindowKind::Minute => "1m",
            WindowKind::QuarterHour => "15m",
            WindowKind::Hour => "1h",
            WindowKind::Day => "1d",
            WindowKind::Month => "month",
            WindowKind::Year => "year",
        }
    }

    pub fn parse(text: &str) -> Option<WindowKind> {
        WindowKind::ALL.iter().copied().find(|w| w.name() == text)
    }
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
