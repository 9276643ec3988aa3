//! InfluxDB line protocol input on arbitrary text, at every precision.
#![no_main]

use ecogate::replay::line_protocol::{parse, Precision};
use ecogate::units::Unit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for precision in [Precision::Ns, Precision::Us, Precision::Ms, Precision::S] {
            let _ = parse(text, precision, 1_700_000_000_000, |_, _| {
                Unit::parse("kWh")
            });
        }
    }
});
