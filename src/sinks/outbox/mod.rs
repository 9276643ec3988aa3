//! The durable outbox: a disk queue between the pipeline and a network sink.
//!
//! Every batch of line protocol is appended here before the store commit that produced it, and
//! leaves only after the sink has a 204 for it, so an outage, a restart or `kill -9` loses nothing.
//!
//! # Layout
//! A folder of segment files `NNNNNNNNNNNNNNNNNNNN.seg`, written in order, each a run of records:
//!
//! ```text
//! magic u32 | payload length u32 | lines u32 | crc32 u32 | seq u64 | appended_ms i64 | payload
//! ```
//!
//! (little endian; the CRC covers the other header fields and the payload). `seq` is the
//! pipeline's commit sequence: a record becomes readable only once the store has committed that
//! sequence, and on open, records beyond the store's last committed sequence (appended just before
//! a crash that stopped the store commit) are cut off, so the outbox never holds figures the store
//! does not. The `store-id` file names the store that commits with the outbox
//! ([`Outbox::open_for_store`]). The `ack` file holds the position of the first record not yet
//! delivered; segments wholly before it are deleted.
//!
//! # Faults
//! A torn tail (a header or payload cut short, a bad magic) is truncated on open, counted and
//! logged. A record whose checksum does not match is skipped when read, counted and logged. A
//! failed append (disk full) is cut back to the previous length and reported to the caller, which
//! has not committed or acknowledged anything yet. The size cap either holds the writer back
//! (`block`, the default) or drops the oldest segment (`drop_oldest`), counting the lines lost.
//!
//! # Durability
//! With `fsync = "always"` each append is flushed to the device before the store commit, so
//! acknowledged data survives power loss; with `"never"` it survives a crash or `kill -9` of the
//! process (the kernel holds the pages) but a power cut may lose the last seconds.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

const MAGIC: u32 = 0x4547_4f31; // "EGO1"
pub const HEADER_BYTES: u64 = 32;
/// No record is larger: a longer length field is a torn or foreign header, not a record.
pub const MAX_RECORD_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Flush every append to the device before the store commits.
    Always,
    /// Leave flushing to the kernel.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Hold the pipeline back until the sink catches up (nothing lost; sources back up).
    Block,
    /// Delete the oldest segment to make room, counting its lines as dropped.
    DropOldest,
}

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    pub when_full: WhenFull,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: cannot {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error(
        "outbox {dir} is full ({pending_bytes} bytes waiting, cap {max_bytes}): the sink is not taking data"
    )]
    Full {
        dir: PathBuf,
        pending_bytes: u64,
        max_bytes: u64,
    },
    #[error("outbox record of {bytes} bytes is larger than the {max} byte limit")]
    TooLarge { bytes: u64, max: u64 },
    #[error(
        "outbox {dir} holds the records of another store (store id {owner}; {store} has id {store_id}): run ecogate with the store that wrote them until they are delivered, or give this store an outbox of its own ([influx.outbox] dir)"
    )]
    OtherStore {
        dir: PathBuf,
        owner: String,
        store: PathBuf,
        store_id: String,
    },
    /// Another process writes to this outbox.
    #[error(transparent)]
    Locked(#[from] crate::sinks::lock::LockError),
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> OutboxError + 'a {
    move |source| OutboxError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Position of a record: segment id and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    lines: u64,
}

/// What opening found, for the log and the metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    pub pending_records: u64,
    pub pending_lines: u64,
    pub torn_bytes: u64,
    pub uncommitted_records: u64,
    pub committed_seq: u64,
}

/// Counters the outbox keeps for the metrics (monotonic, since open).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending_bytes: u64,
    pub pending_lines: u64,
    pub oldest_pending_ms: Option<i64>,
    pub full: bool,
    pub dropped_lines_full: u64,
    pub corrupt_records: u64,
    pub corrupt_lines: u64,
    pub torn_bytes: u64,
    pub uncommitted_records: u64,
}

/// A record read for delivery.
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: u64,
    pub lines: u32,
    pub appended_ms: i64,
    pub payload: Vec<u8>,
}

/// Records read from the ack position; pass `end` to [`Outbox::ack`] once delivered.
#[derive(Debug)]
pub struct ReadBatch {
    pub records: Vec<Record>,
    pub end: Cursor,
    /// Lines of skipped (corrupt) records inside this range.
    pub skipped_lines: u64,
    /// Lines (delivered or skipped) read from `end`'s segment.
    end_segment_lines: u64,
}

#[derive(Debug)]
struct Inner {
    segments: VecDeque<Segment>,
    writer: File,
    /// Where the first record not yet committed by the store starts, if any was appended.
    uncommitted_from: Option<u64>,
    uncommitted_lines: u64,
    committed_seq: u64,
    last_seq: u64,
    ack: Cursor,
    /// Lines of the head segment before the ack position.
    head_acked_lines: u64,
    stats: OutboxStats,
}

#[derive(Debug)]
pub struct Outbox {
    config: OutboxConfig,
    inner: Mutex<Inner>,
    space: Condvar,
    /// Woken when records become readable.
    pub readable: tokio::sync::Notify,
    /// One process owns an outbox while it lives.
    _lock: crate::sinks::lock::ExclusiveLock,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn header(payload: &[u8], lines: u32, seq: u64, appended_ms: i64) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8..12].copy_from_slice(&lines.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    h[24..32].copy_from_slice(&appended_ms.to_le_bytes());
    let crc = checksum(&h, payload);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

fn checksum(h: &[u8; HEADER_BYTES as usize], payload: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&h[0..12]);
    c.update(&h[16..32]);
    c.update(payload);
    c.finalize()
}

#[derive(Debug)]
struct Parsed {
    len: u64,
    lines: u32,
    crc: u32,
    seq: u64,
    appended_ms: i64,
}

fn parse_header(h: &[u8; HEADER_BYTES as usize]) -> Option<Parsed> {
    let word = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    if word(0) != MAGIC {
        return None;
    }
    let len = u64::from(word(4));
    if len > MAX_RECORD_BYTES {
        return None;
    }
    Some(Parsed {
        len,
        lines: word(8),
        crc: word(12),
        seq: u64::from_le_bytes(h[16..24].try_into().expect("8 bytes")),
        appended_ms: i64::from_le_bytes(h[24..32].try_into().expect("8 bytes")),
    })
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Outbox {
    pub fn config(&self) -> &OutboxConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves consistent file state behind (every
        // change is a whole append or a whole truncate), so carry on with the data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> OutboxStats {
        self.lock().stats.clone()
    }

    /// The last sequence the store committed (as known to the outbox).
    pub fn committed_seq(&self) -> u64 {
        self.lock().committed_seq
    }

    /// Appends one record for commit sequence `seq`; not readable until [`Outbox::commit`].
    /// With `block`, waits for room while `shutdown` is unset.
    pub fn append(
        &self,
        seq: u64,
        lines: u32,
        payload: &[u8],
        shutdown: &AtomicBool,
    ) -> Result<(), OutboxError> {
        let record_bytes = HEADER_BYTES + payload.len() as u64;
        if payload.len() as u64 > MAX_RECORD_BYTES || record_bytes > self.config.max_bytes {
            return Err(OutboxError::TooLarge {
                bytes: record_bytes,
                max: MAX_RECORD_BYTES.min(self.config.max_bytes),
            });
        }
        let mut inner = self.lock();
        let mut warned = false;
        while inner.stats.pending_bytes + record_bytes > self.config.max_bytes {
            match self.config.when_full {
                WhenFull::DropOldest if inner.segments.len() > 1 => {
                    self.drop_oldest(&mut inner)?;
                }
                _ => {
                    inner.stats.full = true;
                    if !warned {
                        warned = true;
                        tracing::error!(
                            dir = %self.config.dir.display(),
                            pending_bytes = inner.stats.pending_bytes,
                            max_bytes = self.config.max_bytes,
                            "outbox full: holding new readings back until the sink takes data"
                        );
                    }
                    if shutdown.load(Ordering::Relaxed) {
                        return Err(OutboxError::Full {
                            dir: self.config.dir.clone(),
                            pending_bytes: inner.stats.pending_bytes,
                            max_bytes: self.config.max_bytes,
                        });
                    }
                    inner = self
                        .space
                        .wait_timeout(inner, Duration::from_millis(500))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
        inner.stats.full = false;
        let tail_bytes = inner.segments.back().expect("tail").bytes;
        if tail_bytes > 0
            && tail_bytes + record_bytes > self.config.segment_bytes
            && inner.uncommitted_from.is_none()
        {
            self.roll(&mut inner)?;
        }
        let tail = inner.segments.back().expect("tail");
        let (tail_id, start) = (tail.id, tail.bytes);
        let path = segment_path(&self.config.dir, tail_id);
        let appended_ms = now_ms();
        let h = header(payload, lines, seq, appended_ms);
        let written = inner
            .writer
            .write_all(&h)
            .and_then(|_| inner.writer.write_all(payload))
            .and_then(|_| match self.config.fsync {
                FsyncPolicy::Always => inner.writer.sync_data(),
                FsyncPolicy::Never => Ok(()),
            });
        if let Err(source) = written {
            // Cut back what part of the record reached the file, so the segment stays whole.
            if let Err(e) = inner.writer.set_len(start) {
                tracing::error!(segment = %path.display(), "outbox: cannot cut back a failed append: {e}");
            }
            return Err(OutboxError::Io {
                path,
                op: "append a record",
                source,
            });
        }
        let tail = inner.segments.back_mut().expect("tail");
        tail.bytes += record_bytes;
        tail.lines += u64::from(lines);
        inner.uncommitted_from.get_or_insert(start);
        inner.uncommitted_lines += u64::from(lines);
        inner.last_seq = seq;
        Ok(())
    }

    /// The store committed `seq`: records up to it become readable.
    pub fn commit(&self, seq: u64) {
        let mut inner = self.lock();
        if let Some(start) = inner.uncommitted_from.take() {
            let tail_bytes = inner.segments.back().expect("tail").bytes;
            let was_empty = inner.stats.pending_bytes == 0;
            inner.stats.pending_bytes += tail_bytes - start;
            inner.stats.pending_lines += inner.uncommitted_lines;
            if was_empty {
                inner.stats.oldest_pending_ms = Some(now_ms());
            }
        }
        inner.uncommitted_lines = 0;
        inner.committed_seq = seq;
        drop(inner);
        self.readable.notify_one();
    }

    /// The store commit failed: remove what was appended since the last commit, so the retry
    /// appends it again under the same sequence.
    pub fn rollback(&self) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        if let Some(start) = inner.uncommitted_from.take() {
            let path = segment_path(&self.config.dir, inner.segments.back().expect("tail").id);
            inner
                .writer
                .set_len(start)
                .map_err(io_err(&path, "cut back uncommitted records"))?;
            let lines = inner.uncommitted_lines;
            let tail = inner.segments.back_mut().expect("tail");
            tail.bytes = start;
            tail.lines -= lines;
        }
        inner.uncommitted_lines = 0;
        inner.last_seq = inner.committed_seq;
        Ok(())
    }

    fn roll(&self, inner: &mut Inner) -> Result<(), OutboxError> {
        let id = inner.segments.back().expect("tail").id + 1;
        let path = segment_path(&self.config.dir, id);
        if self.config.fsync == FsyncPolicy::Always {
            inner
                .writer
                .sync_all()
                .map_err(io_err(&path, "flush the previous segment"))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path, "create a segment"))?;
        if self.config.fsync == FsyncPolicy::Always {
            sync_dir(&self.config.dir)?;
        }
        inner.writer = file;
        inner.segments.push_back(Segment {
            id,
            bytes: 0,
            lines: 0,
        });
        Ok(())
    }

    fn drop_oldest(&self, inner: &mut Inner) -> Result<(), OutboxError> {
        let head = inner.segments.pop_front().expect("two segments at least");
        let path = segment_path(&self.config.dir, head.id);
        let pending_bytes = head.bytes - inner.ack.offset;
        let lost_lines = head.lines - inner.head_acked_lines;
        fs::remove_file(&path).map_err(io_err(&path, "delete the oldest segment"))?;
        inner.ack = Cursor {
            segment: inner.segments.front().expect("next").id,
            offset: 0,
        };
        inner.head_acked_lines = 0;
        inner.stats.pending_bytes -= pending_bytes;
        inner.stats.pending_lines = inner.stats.pending_lines.saturating_sub(lost_lines);
        inner.stats.dropped_lines_full += lost_lines;
        write_ack(&self.config.dir, inner.ack)?;
        tracing::error!(
            segment = %path.display(),
            lines = lost_lines,
            "outbox full: dropped the oldest segment (when_full = \"drop_oldest\")"
        );
        Ok(())
    }

    /// Reads committed records from the ack position, up to `max_lines` lines and `max_bytes`
    /// payload bytes (at least one record when any is readable). Corrupt records are skipped and
    /// counted. `None` when nothing is readable.
    pub fn read(&self, max_lines: u64, max_bytes: u64) -> Result<Option<ReadBatch>, OutboxError> {
        let mut inner = self.lock();
        let mut records = Vec::new();
        let mut cursor = inner.ack;
        let mut lines = 0u64;
        let mut bytes = 0u64;
        let mut skipped_lines = 0u64;
        let mut end_segment_lines = 0u64;
        let mut file: Option<(u64, File)> = None;
        let mut h = [0u8; HEADER_BYTES as usize];
        while let Some((seg_id, seg_bytes)) = inner
            .segments
            .iter()
            .find(|s| s.id == cursor.segment)
            .map(|s| (s.id, s.bytes))
        {
            let readable_end = if Some(seg_id) == inner.segments.back().map(|s| s.id) {
                inner.uncommitted_from.unwrap_or(seg_bytes)
            } else {
                seg_bytes
            };
            if cursor.offset >= readable_end {
                let next = inner
                    .segments
                    .iter()
                    .find(|s| s.id > cursor.segment)
                    .map(|s| s.id);
                match next {
                    Some(id) if cursor.offset >= seg_bytes => {
                        cursor = Cursor {
                            segment: id,
                            offset: 0,
                        };
                        end_segment_lines = 0;
                        continue;
                    }
                    _ => break,
                }
            }
            let path = segment_path(&self.config.dir, cursor.segment);
            if file.as_ref().map(|(id, _)| *id) != Some(cursor.segment) {
                let f = File::open(&path).map_err(io_err(&path, "open a segment for reading"))?;
                file = Some((cursor.segment, f));
            }
            let f = &mut file.as_mut().expect("opened").1;
            f.seek(SeekFrom::Start(cursor.offset))
                .and_then(|_| f.read_exact(&mut h))
                .map_err(io_err(&path, "read a record header"))?;
            let Some(p) = parse_header(&h) else {
                // Open() cut torn tails, so this is damage after open: skip the segment's rest.
                let lost = seg_bytes - cursor.offset;
                tracing::error!(segment = %path.display(), offset = cursor.offset, bytes = lost, "outbox: unreadable record header, skipping the rest of the segment");
                inner.stats.corrupt_records += 1;
                cursor.offset = seg_bytes;
                continue;
            };
            if !records.is_empty()
                && (lines + u64::from(p.lines) > max_lines || bytes + p.len > max_bytes)
            {
                break;
            }
            let mut payload = vec![0u8; p.len as usize];
            f.read_exact(&mut payload)
                .map_err(io_err(&path, "read a record"))?;
            cursor.offset += HEADER_BYTES + p.len;
            if checksum(&h, &payload) != p.crc {
                tracing::error!(
                    segment = %path.display(),
                    offset = cursor.offset - HEADER_BYTES - p.len,
                    lines = p.lines,
                    "outbox: record checksum mismatch, skipping it"
                );
                inner.stats.corrupt_records += 1;
                inner.stats.corrupt_lines += u64::from(p.lines);
                skipped_lines += u64::from(p.lines);
                end_segment_lines += u64::from(p.lines);
                continue;
            }
            lines += u64::from(p.lines);
            end_segment_lines += u64::from(p.lines);
            bytes += p.len;
            records.push(Record {
                seq: p.seq,
                lines: p.lines,
                appended_ms: p.appended_ms,
                payload,
            });
        }
        if let Some(first) = records.first() {
            inner.stats.oldest_pending_ms = Some(first.appended_ms);
        }
        if records.is_empty() && cursor == inner.ack {
            return Ok(None);
        }
        Ok(Some(ReadBatch {
            records,
            end: cursor,
            skipped_lines,
            end_segment_lines,
        }))
    }

    /// Everything before `end` is delivered: move the ack position, delete finished segments.
    pub fn ack(&self, batch: &ReadBatch) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        let end = batch.end;
        if end <= inner.ack {
            return Ok(());
        }
        let lines: u64 = batch
            .records
            .iter()
            .map(|r| u64::from(r.lines))
            .sum::<u64>()
            + batch.skipped_lines;
        let mut freed = 0u64;
        let mut popped = false;
        while inner.segments.front().is_some_and(|s| s.id < end.segment) {
            let head = inner.segments.pop_front().expect("head");
            freed += head.bytes - inner.ack.offset;
            let path = segment_path(&self.config.dir, head.id);
            fs::remove_file(&path).map_err(io_err(&path, "delete a delivered segment"))?;
            inner.ack = Cursor {
                segment: inner.segments.front().map_or(end.segment, |s| s.id),
                offset: 0,
            };
            popped = true;
        }
        freed += end.offset - inner.ack.offset;
        inner.ack = end;
        inner.head_acked_lines = if popped {
            batch.end_segment_lines
        } else {
            inner.head_acked_lines + lines
        };
        inner.stats.pending_bytes = inner.stats.pending_bytes.saturating_sub(freed);
        inner.stats.pending_lines = inner.stats.pending_lines.saturating_sub(lines);
        if inner.stats.pending_bytes == 0 {
            inner.stats.oldest_pending_ms = None;
        }
        write_ack(&self.config.dir, end)?;
        drop(inner);
        self.space.notify_all();
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "flush the folder"))
}

const ACK_FILE: &str = "ack";
/// The id of the store that commits with this outbox.
const OWNER_FILE: &str = "store-id";

fn read_ack(dir: &Path) -> Option<Cursor> {
    let bytes = fs::read(dir.join(ACK_FILE)).ok()?;
    if bytes.len() != 20 {
        return None;
    }
    let segment = u64::from_le_bytes(bytes[0..8].try_into().ok()?);
    let offset = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    (crc32fast::hash(&bytes[0..16]) == crc).then_some(Cursor { segment, offset })
}

/// Written by rename, so a crash leaves the old or the new position, never a torn one. Not
/// flushed: a lost ack position only means records are sent again as identical points.
fn write_ack(dir: &Path, at: Cursor) -> Result<(), OutboxError> {
    let mut bytes = Vec::with_capacity(20);
    bytes.extend_from_slice(&at.segment.to_le_bytes());
    bytes.extend_from_slice(&at.offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join("ack.tmp");
    fs::write(&tmp, &bytes).map_err(io_err(&tmp, "write the ack position"))?;
    fs::rename(&tmp, dir.join(ACK_FILE)).map_err(io_err(&tmp, "replace the ack position"))
}

mod open;

#[cfg(test)]
mod tests;
