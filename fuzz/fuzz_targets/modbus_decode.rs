//! Modbus register decoding: every data type in every word order on arbitrary registers.
#![no_main]

use ecogate::sources::modbus::decode::{decode, DataType, WordOrder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let words: Vec<u16> = data
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .collect();
    for &(_, ty) in DataType::NAMES {
        for order in [
            WordOrder::Abcd,
            WordOrder::Cdab,
            WordOrder::Badc,
            WordOrder::Dcba,
        ] {
            if let Ok(v) = decode(&words, ty, order) {
                assert!(!v.is_nan() || matches!(ty, DataType::F32 | DataType::F64));
            }
        }
    }
});
