//! Configuration parsing and validation on arbitrary text: located errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ecogate::app::AppConfig::parse(std::path::Path::new("fuzz.toml"), text);
    }
});
