//! Sparkplug B protobuf payloads on arbitrary bytes: parse, and decode as BIRTH then DATA with
//! the aliases it may define. An error or readings, never a panic or a runaway allocation.
#![no_main]

use ecogate::sources::mqtt::sparkplug::{self, Aliases, Kind};
use ecogate::units::Unit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sparkplug::parse(data);
    let fields = vec![
        ("e".to_string(), "Energy/Import".to_string(), None),
        ("p".to_string(), "Power".to_string(), Unit::parse("W")),
    ];
    let mut aliases = Aliases::default();
    for kind in [Kind::Birth, Kind::Data] {
        let _ = sparkplug::decode(&fields, "m", kind, data, 0, &mut aliases, |c| {
            Unit::parse(if c == "p" { "kW" } else { "kWh" })
        });
    }
});
