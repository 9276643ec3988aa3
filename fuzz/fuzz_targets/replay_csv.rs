//! Replay CSV on arbitrary bytes: rows or row errors naming their line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ecogate::replay::csv::parse(data, chrono_tz::Asia::Shanghai);
});
