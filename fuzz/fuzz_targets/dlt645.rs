//! DL/T 645: the frame decoder walked over arbitrary bytes as the poller walks a line's buffer
//! (every byte consumed, no panic, no frame longer than the input), and every quantity's value
//! decoder on each frame's data.
#![no_main]

use ecogate::sources::dlt645::data::{decode_value, QUANTITIES};
use ecogate::sources::dlt645::frame::{decode, Decoded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        match decode(&data[at..]) {
            Decoded::Incomplete => break,
            Decoded::Bad(_, skip) => {
                assert!(skip > 0 && at + skip <= data.len());
                at += skip;
            }
            Decoded::Frame(f, used) => {
                assert!(used > 0 && at + used <= data.len());
                assert!(f.data.len() <= 200);
                for q in QUANTITIES {
                    if let Ok(v) = decode_value(&q.di, q.format, q.timed, &f.data) {
                        assert!(v.amount.is_finite());
                    }
                }
                at += used;
            }
        }
    }
});
