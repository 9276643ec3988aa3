//! Every live source kind, once. Adding a source is a folder under `sources/` and one line here.

use super::SourceKind;

/// In the order they start, and their sections are validated.
pub fn kinds() -> &'static [&'static dyn SourceKind] {
    &[
        &super::modbus::source::Modbus,
        &super::mqtt::source::Mqtt,
        &super::dlt645::source::Dlt645,
    ]
}

/// The kind named `name`.
pub fn kind(name: &str) -> Option<&'static dyn SourceKind> {
    kinds().iter().copied().find(|k| k.name() == name)
}
