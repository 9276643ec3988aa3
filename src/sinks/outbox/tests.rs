use super::*;
use proptest::prelude::*;
use std::sync::atomic::AtomicBool;

fn config(dir: &Path, max_bytes: u64, segment_bytes: u64, when_full: WhenFull) -> OutboxConfig {
    OutboxConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes,
        fsync: FsyncPolicy::Never,
        when_full,
    }
}

fn payload(n: u64) -> Vec<u8> {
    format!("m v={n} {n}\n").into_bytes()
}

/// Reads and acks everything readable, returning the payloads in order.
fn drain(o: &Outbox) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(b) = o.read(7, 1 << 20).unwrap() {
        out.extend(b.records.iter().map(|r| r.payload.clone()));
        o.ack(&b).unwrap();
    }
    out
}

fn append_committed(o: &Outbox, seq: u64) {
    let go = AtomicBool::new(false);
    o.append(seq, 1, &payload(seq), &go).unwrap();
    o.commit(seq);
}

#[test]
fn records_survive_reopen_and_leave_only_when_acked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 20, 200, WhenFull::Block);
    {
        let (o, _) = Outbox::open(cfg.clone(), None).unwrap();
        for seq in 1..=10 {
            append_committed(&o, seq);
        }
        // 10 records of 32 + ~12 bytes in 200-byte segments: several segments.
        let b = o.read(3, 1 << 20).unwrap().unwrap();
        assert_eq!(b.records.len(), 3);
        o.ack(&b).unwrap();
        assert_eq!(o.stats().pending_lines, 7);
    }
    let (o, report) = Outbox::open(cfg, Some(10)).unwrap();
    assert_eq!(report.pending_records, 7);
    assert_eq!(report.torn_bytes, 0);
    let got = drain(&o);
    let want: Vec<Vec<u8>> = (4..=10).map(payload).collect();
    assert_eq!(got, want);
    assert_eq!(o.stats().pending_bytes, 0);
    let segs = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert_eq!(segs, 1, "delivered segments are deleted, the tail stays");
}

#[test]
fn a_torn_tail_is_cut_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 20, 1 << 20, WhenFull::Block);
    {
        let (o, _) = Outbox::open(cfg.clone(), None).unwrap();
        for seq in 1..=3 {
            append_committed(&o, seq);
        }
    }
    let seg = segment_path(dir.path(), 1);
    let len = fs::metadata(&seg).unwrap().len();
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 5).unwrap();
    let (o, report) = Outbox::open(cfg, Some(3)).unwrap();
    // Record 3 is 32 + 10 bytes ("m v=3 3\n" is 8): 37 remain of it after cutting 5.
    assert_eq!(
        report.torn_bytes,
        HEADER_BYTES + payload(3).len() as u64 - 5
    );
    assert_eq!(drain(&o), vec![payload(1), payload(2)]);
    // Appending after the repair goes on from a clean end.
    append_committed(&o, 4);
    assert_eq!(drain(&o), vec![payload(4)]);
}

#[test]
fn a_corrupt_record_is_skipped_and_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 20, 1 << 20, WhenFull::Block);
    let (o, _) = Outbox::open(cfg, None).unwrap();
    for seq in 1..=3 {
        append_committed(&o, seq);
    }
    let seg = segment_path(dir.path(), 1);
    let mut bytes = fs::read(&seg).unwrap();
    let second_payload = (HEADER_BYTES as usize + payload(1).len()) + HEADER_BYTES as usize;
    bytes[second_payload] ^= 0xff;
    fs::write(&seg, &bytes).unwrap();
    assert_eq!(drain(&o), vec![payload(1), payload(3)]);
    let st = o.stats();
    assert_eq!((st.corrupt_records, st.corrupt_lines), (1, 1));
    assert_eq!(st.pending_lines, 0);
}

#[test]
fn records_past_the_stores_last_commit_are_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 20, 1 << 20, WhenFull::Block);
    {
        let (o, _) = Outbox::open(cfg.clone(), None).unwrap();
        append_committed(&o, 1);
        let go = AtomicBool::new(false);
        // Appended, then the process died before the store committed sequence 2.
        o.append(2, 1, &payload(2), &go).unwrap();
        assert_eq!(
            drain(&o),
            vec![payload(1)],
            "uncommitted records are not readable"
        );
    }
    let (o, report) = Outbox::open(cfg, Some(1)).unwrap();
    assert_eq!(report.uncommitted_records, 1);
    assert_eq!(o.committed_seq(), 1);
    append_committed(&o, 2);
    assert_eq!(drain(&o), vec![payload(2)]);
}

#[test]
fn rollback_removes_uncommitted_records() {
    let dir = tempfile::tempdir().unwrap();
    let (o, _) = Outbox::open(config(dir.path(), 1 << 20, 1 << 20, WhenFull::Block), None).unwrap();
    let go = AtomicBool::new(false);
    o.append(1, 1, &payload(1), &go).unwrap();
    o.append(1, 1, &payload(99), &go).unwrap();
    o.rollback().unwrap();
    append_committed(&o, 1);
    assert_eq!(drain(&o), vec![payload(1)]);
}

#[test]
fn full_blocks_until_shutdown_or_drops_oldest_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let rec = HEADER_BYTES + payload(1).len() as u64;
    let (o, _) = Outbox::open(config(dir.path(), 3 * rec, rec, WhenFull::Block), None).unwrap();
    for seq in 1..=3 {
        append_committed(&o, seq);
    }
    let stop = AtomicBool::new(true);
    let err = o.append(4, 1, &payload(4), &stop).unwrap_err();
    assert!(matches!(err, OutboxError::Full { .. }), "{err}");
    assert!(o.stats().full);
    assert_eq!(drain(&o).len(), 3, "nothing was dropped");

    let dir = tempfile::tempdir().unwrap();
    let (o, _) =
        Outbox::open(config(dir.path(), 3 * rec, rec, WhenFull::DropOldest), None).unwrap();
    for seq in 1..=5 {
        append_committed(&o, seq);
    }
    assert_eq!(o.stats().dropped_lines_full, 2);
    assert_eq!(drain(&o), vec![payload(3), payload(4), payload(5)]);
}

#[test]
fn a_blocked_append_goes_on_once_the_reader_acks() {
    let dir = tempfile::tempdir().unwrap();
    let rec = HEADER_BYTES + payload(1).len() as u64;
    let (o, _) = Outbox::open(config(dir.path(), 2 * rec, rec, WhenFull::Block), None).unwrap();
    append_committed(&o, 1);
    append_committed(&o, 2);
    let o = std::sync::Arc::new(o);
    let reader = {
        let o = o.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            // Exactly the two records there while the writer waits.
            let b = o.read(2, 1 << 20).unwrap().unwrap();
            o.ack(&b).unwrap();
            b.records.into_iter().map(|r| r.payload).collect::<Vec<_>>()
        })
    };
    let go = AtomicBool::new(false);
    o.append(3, 1, &payload(3), &go).unwrap();
    o.commit(3);
    let first = reader.join().unwrap();
    assert_eq!(first, vec![payload(1), payload(2)]);
    assert_eq!(drain(&o), vec![payload(3)]);
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Deliver(u8),
    Fail,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..4).prop_map(Op::Append),
        3 => (1u8..6).prop_map(Op::Deliver),
        1 => Just(Op::Fail),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Against a model queue: every committed record is delivered, in order, exactly once
    /// without reopen and never invented; a failed commit leaves nothing behind.
    #[test]
    fn behaves_like_a_queue(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 1 << 20, 300, WhenFull::Block);
        let (mut o, _) = Outbox::open(cfg.clone(), None).unwrap();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut seq = 0u64;
        let mut next = 0u64;
        let go = AtomicBool::new(false);
        for op in ops {
            match op {
                Op::Append(n) => {
                    seq += 1;
                    for _ in 0..n {
                        next += 1;
                        o.append(seq, 1, &payload(next), &go).unwrap();
                        model.push_back(payload(next));
                    }
                    o.commit(seq);
                }
                Op::Fail => {
                    next += 1;
                    o.append(seq + 1, 1, &payload(next), &go).unwrap();
                    o.rollback().unwrap();
                }
                Op::Deliver(n) => {
                    if let Some(b) = o.read(u64::from(n), 1 << 20).unwrap() {
                        for r in &b.records {
                            prop_assert_eq!(Some(&r.payload), model.front());
                            model.pop_front();
                        }
                        o.ack(&b).unwrap();
                    } else {
                        prop_assert!(model.is_empty());
                    }
                }
                Op::Reopen => {
                    drop(o);
                    o = Outbox::open(cfg.clone(), Some(seq)).unwrap().0;
                }
            }
            prop_assert_eq!(o.stats().pending_lines, model.len() as u64);
        }
        prop_assert_eq!(drain(&o), Vec::from(model));
    }
}

#[test]
fn an_outbox_knows_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 20, 1 << 20, WhenFull::Block);
    let store = Path::new("/var/lib/ecogate/store.db");
    // A crash after the first append, before the store's first commit: the store has no
    // sequence, and the record (whose readings will be read again) must go.
    {
        let (o, _) = Outbox::open_for_store(cfg.clone(), "aa", store, None).unwrap();
        let go = AtomicBool::new(false);
        o.append(1, 1, &payload(1), &go).unwrap();
    }
    let (o, report) = Outbox::open_for_store(cfg.clone(), "aa", store, None).unwrap();
    assert_eq!(report.uncommitted_records, 1);
    assert_eq!(report.pending_records, 0);
    append_committed(&o, 1);
    drop(o);
    // Another store's outbox is refused, not cut to that store's sequence.
    let e = Outbox::open_for_store(cfg.clone(), "bb", Path::new("/tmp/scratch.db"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("another store") && e.contains("store id aa") && e.contains("scratch.db"),
        "{e}"
    );
    let (o, report) = Outbox::open_for_store(cfg, "aa", store, Some(1)).unwrap();
    assert_eq!(report.pending_records, 1, "the committed record was kept");
    assert_eq!(drain(&o), vec![payload(1)]);
}

#[test]
fn an_outbox_from_before_store_ids_is_kept_and_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 20, 1 << 20, WhenFull::Block);
    {
        let (o, _) = Outbox::open(cfg.clone(), None).unwrap();
        append_committed(&o, 1);
    }
    let store = Path::new("store.db");
    let (o, report) = Outbox::open_for_store(cfg.clone(), "cc", store, None).unwrap();
    assert_eq!(report.pending_records, 1);
    drop(o);
    assert_eq!(
        fs::read_to_string(dir.path().join("store-id")).unwrap(),
        "cc\n"
    );
}
