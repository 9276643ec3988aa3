//! Opening an outbox: the lock, its owner (the store it belongs to), and recovery of what a
//! crash left (a torn record cut, acknowledged segments deleted).

use super::*;

impl Outbox {
    /// Opens the outbox, repairing a torn tail and cutting off records past `committed_seq` (the
    /// store's last committed sequence; `None` when the store has none, and then all are kept).
    pub fn open(
        config: OutboxConfig,
        committed_seq: Option<u64>,
    ) -> Result<(Outbox, OpenReport), OutboxError> {
        let lock = crate::sinks::lock::ExclusiveLock::acquire(&config.dir, "outbox")?;
        fs::create_dir_all(&config.dir).map_err(io_err(&config.dir, "create the folder"))?;
        Self::open_locked(config, lock, committed_seq)
    }

    /// Whether the outbox in `dir` may commit with the store whose id is `store_id` (`ecogate
    /// check`): the error [`Outbox::open_for_store`] would give, without opening it.
    pub fn check_owner(dir: &Path, store_id: &str, store_path: &Path) -> Result<(), OutboxError> {
        let owner_path = dir.join(OWNER_FILE);
        match fs::read_to_string(&owner_path) {
            Ok(owner) if owner.trim() != store_id => Err(OutboxError::OtherStore {
                dir: dir.to_path_buf(),
                owner: owner.trim().to_string(),
                store: store_path.to_path_buf(),
                store_id: store_id.to_string(),
            }),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&owner_path, "read the store id")(e)),
        }
    }

    /// [`Outbox::open`] for the store whose id is `store_id`, which commits with this outbox.
    /// The outbox remembers its store (a `store-id` file written before its first record), so:
    /// a store that never committed (`committed_seq` `None`) cuts every record (they were
    /// appended before a crash stopped the store's first commit, and the readings will be read
    /// again), and an outbox of another store is refused rather than cut to this store's
    /// sequence.
    pub fn open_for_store(
        config: OutboxConfig,
        store_id: &str,
        store_path: &Path,
        committed_seq: Option<u64>,
    ) -> Result<(Outbox, OpenReport), OutboxError> {
        let dir = config.dir.clone();
        let lock = crate::sinks::lock::ExclusiveLock::acquire(&dir, "outbox")?;
        fs::create_dir_all(&dir).map_err(io_err(&dir, "create the folder"))?;
        let owner_path = dir.join(OWNER_FILE);
        let seq = match fs::read_to_string(&owner_path) {
            Ok(owner) if owner.trim() == store_id => Some(committed_seq.unwrap_or(0)),
            Ok(owner) => {
                return Err(OutboxError::OtherStore {
                    dir,
                    owner: owner.trim().to_string(),
                    store: store_path.to_path_buf(),
                    store_id: store_id.to_string(),
                })
            }
            // An outbox written before outboxes knew their store: kept as it is, and adopted.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let tmp = dir.join("store-id.tmp");
                fs::write(&tmp, format!("{store_id}\n"))
                    .and_then(|_| File::open(&tmp)?.sync_all())
                    .map_err(io_err(&tmp, "write the store id"))?;
                fs::rename(&tmp, &owner_path).map_err(io_err(&tmp, "replace the store id"))?;
                sync_dir(&dir)?;
                committed_seq
            }
            Err(e) => return Err(io_err(&owner_path, "read the store id")(e)),
        };
        Self::open_locked(config, lock, seq)
    }

    fn open_locked(
        config: OutboxConfig,
        lock: crate::sinks::lock::ExclusiveLock,
        committed_seq: Option<u64>,
    ) -> Result<(Outbox, OpenReport), OutboxError> {
        let dir = config.dir.clone();
        let mut ids: Vec<u64> = fs::read_dir(&dir)
            .map_err(io_err(&dir, "list the folder"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse::<u64>().ok()
            })
            .collect();
        ids.sort_unstable();
        let ack = read_ack(&dir).filter(|a| ids.binary_search(&a.segment).is_ok());
        let mut report = OpenReport::default();
        let mut segments = VecDeque::new();
        let mut ack_cursor = ack.unwrap_or(Cursor {
            segment: ids.first().copied().unwrap_or(1),
            offset: 0,
        });
        let mut head_acked_lines = 0;
        let mut oldest_pending_ms = None;
        let mut last_seq = 0u64;
        let mut cut = false;
        for &id in &ids {
            let path = segment_path(&dir, id);
            if id < ack_cursor.segment || cut {
                fs::remove_file(&path).map_err(io_err(&path, "delete an old segment"))?;
                continue;
            }
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(&path, "open a segment"))?;
            let size = file
                .metadata()
                .map_err(io_err(&path, "read a segment's size"))?
                .len();
            let mut offset = 0u64;
            let mut lines = 0u64;
            let mut h = [0u8; HEADER_BYTES as usize];
            let mut valid_end = size;
            while offset < size {
                let parsed = if size - offset < HEADER_BYTES {
                    None
                } else {
                    file.seek(SeekFrom::Start(offset))
                        .and_then(|_| file.read_exact(&mut h))
                        .map_err(io_err(&path, "read a record header"))?;
                    parse_header(&h).filter(|p| offset + HEADER_BYTES + p.len <= size)
                };
                let Some(p) = parsed else {
                    report.torn_bytes += size - offset;
                    tracing::warn!(
                        segment = %path.display(),
                        offset,
                        bytes = size - offset,
                        "outbox: torn or unreadable record, cutting the segment here"
                    );
                    valid_end = offset;
                    break;
                };
                if committed_seq.is_some_and(|c| p.seq > c) {
                    report.uncommitted_records += 1;
                    valid_end = offset;
                    cut = true;
                    // Count the rest of this segment's records as uncommitted too.
                    let mut o = offset + HEADER_BYTES + p.len;
                    while o + HEADER_BYTES <= size {
                        file.seek(SeekFrom::Start(o))
                            .and_then(|_| file.read_exact(&mut h))
                            .map_err(io_err(&path, "read a record header"))?;
                        match parse_header(&h) {
                            Some(q) => {
                                report.uncommitted_records += 1;
                                o += HEADER_BYTES + q.len;
                            }
                            None => break,
                        }
                    }
                    break;
                }
                last_seq = last_seq.max(p.seq);
                if id == ack_cursor.segment && offset < ack_cursor.offset {
                    head_acked_lines += u64::from(p.lines);
                } else {
                    report.pending_records += 1;
                    report.pending_lines += u64::from(p.lines);
                    oldest_pending_ms.get_or_insert(p.appended_ms);
                }
                lines += u64::from(p.lines);
                offset += HEADER_BYTES + p.len;
            }
            if valid_end < size {
                file.set_len(valid_end)
                    .and_then(|_| file.sync_all())
                    .map_err(io_err(&path, "truncate a torn segment"))?;
            }
            if id == ack_cursor.segment && ack_cursor.offset > valid_end {
                ack_cursor.offset = valid_end;
            }
            segments.push_back(Segment {
                id,
                bytes: valid_end,
                lines,
            });
        }
        if report.uncommitted_records > 0 {
            tracing::warn!(
                records = report.uncommitted_records,
                "outbox: dropped records appended after the store's last commit (their readings were never committed and will be read again)"
            );
        }
        let committed = committed_seq.unwrap_or(last_seq).max(last_seq);
        report.committed_seq = committed;
        if segments.is_empty() {
            let id = ack_cursor.segment.max(1);
            File::create(segment_path(&dir, id))
                .map_err(io_err(&segment_path(&dir, id), "create a segment"))?;
            sync_dir(&dir)?;
            segments.push_back(Segment {
                id,
                bytes: 0,
                lines: 0,
            });
            ack_cursor = Cursor {
                segment: id,
                offset: 0,
            };
            head_acked_lines = 0;
        }
        let tail = segments.back().expect("one segment at least");
        let tail_path = segment_path(&dir, tail.id);
        let writer = OpenOptions::new()
            .append(true)
            .open(&tail_path)
            .map_err(io_err(&tail_path, "open the tail segment"))?;
        let pending_bytes = segments.iter().map(|s| s.bytes).sum::<u64>() - ack_cursor.offset;
        let inner = Inner {
            segments,
            writer,
            uncommitted_from: None,
            uncommitted_lines: 0,
            committed_seq: committed,
            last_seq: committed,
            ack: ack_cursor,
            head_acked_lines,
            stats: OutboxStats {
                pending_bytes,
                pending_lines: report.pending_lines,
                oldest_pending_ms,
                torn_bytes: report.torn_bytes,
                uncommitted_records: report.uncommitted_records,
                ..OutboxStats::default()
            },
        };
        Ok((
            Outbox {
                config,
                inner: Mutex::new(inner),
                space: Condvar::new(),
                readable: tokio::sync::Notify::new(),
                _lock: lock,
            },
            report,
        ))
    }
}
