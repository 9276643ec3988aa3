//! The outbox reading a segment file of arbitrary bytes (a torn write, a corrupt disk): it
//! opens, reads what is valid and cuts the rest, never panics.
#![no_main]

use ecogate::sinks::outbox::{FsyncPolicy, Outbox, OutboxConfig, WhenFull};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("outbox");
    std::fs::create_dir_all(&seg).unwrap();
    std::fs::write(seg.join(format!("{:020}.seg", 1)), data).unwrap();
    let config = OutboxConfig {
        dir: seg,
        max_bytes: 1 << 20,
        segment_bytes: 1 << 16,
        fsync: FsyncPolicy::Never,
        when_full: WhenFull::DropOldest,
    };
    for committed in [None, Some(0), Some(u64::MAX)] {
        if let Ok((outbox, _report)) = Outbox::open(config.clone(), committed) {
            let mut reads = 0;
            while let Ok(Some(batch)) = outbox.read(1000, 1 << 16) {
                reads += 1;
                if reads > 1000 || batch.records.is_empty() {
                    break;
                }
                let _ = outbox.ack(&batch);
            }
        }
    }
});
