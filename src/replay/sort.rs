//! Time order for an input of any size in bounded memory: rows are gathered in runs of
//! [`RUN_ROWS`], each run sorted and, when there is more than one, written to a scratch file;
//! the runs are then merged. The order is exactly a stable sort of the whole file by time (ties
//! keep their file order), so a file replays the same whether it fits in memory or not.

use super::{InputRow, ReplayError};
use crate::reading::{Quality, Reading};
use crate::units::Unit;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Rows held in memory at once (about 15 MB): a run.
pub const RUN_ROWS: usize = 100_000;

/// A row with its place in the file, so that equal times keep file order.
struct Seq(u64, InputRow);

pub struct Sorter {
    dir: PathBuf,
    run: Vec<Seq>,
    run_rows: usize,
    next_seq: u64,
    spills: Vec<PathBuf>,
    scratch: Option<PathBuf>,
}

impl Sorter {
    /// Scratch files go to a folder made in `dir` when the first run is full, removed at the end.
    pub fn new(dir: &Path) -> Sorter {
        Sorter::with_run_rows(dir, RUN_ROWS)
    }

    pub fn with_run_rows(dir: &Path, run_rows: usize) -> Sorter {
        Sorter {
            dir: dir.to_path_buf(),
            run: Vec::new(),
            run_rows: run_rows.max(1),
            next_seq: 0,
            spills: Vec::new(),
            scratch: None,
        }
    }

    pub fn push(&mut self, row: InputRow) -> Result<(), ReplayError> {
        self.run.push(Seq(self.next_seq, row));
        self.next_seq += 1;
        if self.run.len() >= self.run_rows {
            self.spill()?;
        }
        Ok(())
    }

    fn sort_run(&mut self) {
        // Sequence numbers are unique: an unstable sort on (time, sequence) is a stable sort.
        self.run.sort_unstable_by_key(|s| (s.1.reading.ts_ms, s.0));
    }

    fn spill(&mut self) -> Result<(), ReplayError> {
        self.sort_run();
        let scratch = match &self.scratch {
            Some(s) => s.clone(),
            None => {
                remove_stale_scratch(&self.dir);
                let s = self
                    .dir
                    .join(format!("{SCRATCH_PREFIX}{}", std::process::id()));
                std::fs::create_dir_all(&s).map_err(scratch_err(&s))?;
                self.scratch = Some(s.clone());
                s
            }
        };
        let path = scratch.join(format!("run-{}", self.spills.len()));
        let written = (|| {
            let mut out = BufWriter::new(File::create(&path)?);
            for s in self.run.drain(..) {
                write_row(&mut out, &s)?;
            }
            out.flush()
        })();
        written.map_err(scratch_err(&path))?;
        self.spills.push(path);
        Ok(())
    }

    /// Every row in time order, in batches of at most `batch` rows, to `feed`.
    pub fn finish<E: From<ReplayError>>(
        mut self,
        batch: usize,
        mut feed: impl FnMut(&[InputRow]) -> Result<(), E>,
    ) -> Result<(), E> {
        let batch = batch.max(1);
        if self.spills.is_empty() {
            self.sort_run();
            let rows: Vec<InputRow> = std::mem::take(&mut self.run)
                .into_iter()
                .map(|s| s.1)
                .collect();
            for chunk in rows.chunks(batch) {
                feed(chunk)?;
            }
            return Ok(());
        }
        if !self.run.is_empty() {
            self.spill()?;
        }
        let mut readers = Vec::with_capacity(self.spills.len());
        for path in &self.spills {
            let file = File::open(path).map_err(scratch_err(path))?;
            readers.push(BufReader::with_capacity(64 * 1024, file));
        }
        let spills = self.spills.clone();
        let read = |readers: &mut Vec<BufReader<File>>, i: usize| {
            read_row(&mut readers[i]).map_err(scratch_err(&spills[i]))
        };
        let mut heads: Vec<Option<Seq>> = Vec::with_capacity(readers.len());
        let mut heap = BinaryHeap::new();
        for i in 0..readers.len() {
            let head = read(&mut readers, i)?;
            if let Some(s) = &head {
                heap.push(Reverse((s.1.reading.ts_ms, s.0, i)));
            }
            heads.push(head);
        }
        let mut out: Vec<InputRow> = Vec::with_capacity(batch);
        while let Some(Reverse((_, _, i))) = heap.pop() {
            let next = read(&mut readers, i)?;
            if let Some(s) = &next {
                heap.push(Reverse((s.1.reading.ts_ms, s.0, i)));
            }
            let row = std::mem::replace(&mut heads[i], next).expect("a popped run has a head");
            out.push(row.1);
            if out.len() == batch {
                feed(&out)?;
                out.clear();
            }
        }
        if !out.is_empty() {
            feed(&out)?;
        }
        Ok(())
    }
}

/// Scratch folders are named this and the replay's process id.
const SCRATCH_PREFIX: &str = ".replay-sort-";

fn scratch_err(path: &Path) -> impl Fn(io::Error) -> ReplayError + '_ {
    move |cause| ReplayError::Scratch {
        path: path.to_path_buf(),
        cause,
    }
}

/// A replay killed while sorting leaves its scratch folder behind (its drop never ran): the next
/// sorting replay in the same folder removes those whose process is gone.
fn remove_stale_scratch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SCRATCH_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(folder = %entry.path().display(), "removing a killed replay's scratch folder");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for Sorter {
    fn drop(&mut self) {
        if let Some(s) = &self.scratch {
            let _ = std::fs::remove_dir_all(s);
        }
    }
}

fn write_str(out: &mut impl Write, s: &str) -> io::Result<()> {
    out.write_all(&(s.len() as u32).to_le_bytes())?;
    out.write_all(s.as_bytes())
}

fn write_row(out: &mut impl Write, s: &Seq) -> io::Result<()> {
    let r = &s.1.reading;
    out.write_all(&s.0.to_le_bytes())?;
    out.write_all(&(s.1.line as u64).to_le_bytes())?;
    out.write_all(&r.ts_ms.to_le_bytes())?;
    out.write_all(&r.amount.to_bits().to_le_bytes())?;
    let quality = match r.quality {
        Quality::Good => 0u8,
        Quality::Uncertain => 1,
        Quality::Bad => 2,
    };
    out.write_all(&[quality, r.stamped_on_arrival as u8])?;
    write_str(out, r.unit.symbol)?;
    write_str(out, &r.meter)?;
    write_str(out, &r.channel)
}

fn read_u64(r: &mut impl Read) -> io::Result<Option<u64>> {
    let mut b = [0u8; 8];
    match r.read_exact(&mut b) {
        Ok(()) => Ok(Some(u64::from_le_bytes(b))),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_str(r: &mut impl Read) -> io::Result<String> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut buf)?;
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn read_row(r: &mut impl Read) -> io::Result<Option<Seq>> {
    let Some(seq) = read_u64(r)? else {
        return Ok(None);
    };
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let line = read_u64(r)?.ok_or_else(|| bad("a scratch run ends inside a row"))? as usize;
    let ts_ms = read_u64(r)?.ok_or_else(|| bad("a scratch run ends inside a row"))? as i64;
    let amount =
        f64::from_bits(read_u64(r)?.ok_or_else(|| bad("a scratch run ends inside a row"))?);
    let mut flags = [0u8; 2];
    r.read_exact(&mut flags)?;
    let unit =
        Unit::parse(&read_str(r)?).ok_or_else(|| bad("a scratch run names an unknown unit"))?;
    let meter = read_str(r)?;
    let channel = read_str(r)?;
    let quality = match flags[0] {
        0 => Quality::Good,
        1 => Quality::Uncertain,
        _ => Quality::Bad,
    };
    Ok(Some(Seq(
        seq,
        InputRow {
            line,
            reading: Reading {
                meter,
                channel,
                amount,
                unit,
                ts_ms,
                quality,
                stamped_on_arrival: flags[1] != 0,
            },
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: usize, ts_ms: i64) -> InputRow {
        InputRow {
            line,
            reading: Reading {
                meter: format!("m{}", line % 7),
                channel: "import, \"x\"\n".into(),
                amount: line as f64 + 0.125,
                unit: Unit::parse("kWh").unwrap(),
                ts_ms,
                quality: if line.is_multiple_of(3) {
                    Quality::Uncertain
                } else {
                    Quality::Good
                },
                stamped_on_arrival: false,
            },
        }
    }

    #[test]
    fn runs_on_disk_merge_into_the_same_order_as_a_stable_sort_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        // A folder a killed replay left (no process has pid 0x7fff_fff0) goes; another stays.
        let stale = dir
            .path()
            .join(format!("{SCRATCH_PREFIX}{}", 0x7fff_fff0u32));
        std::fs::create_dir_all(stale.join("run-0")).unwrap();
        std::fs::create_dir_all(dir.path().join("kept")).unwrap();
        // 1,000 rows with times repeating in a scrambled order: many ties across runs.
        let rows: Vec<InputRow> = (0..1_000)
            .map(|i| row(i + 2, (i as i64 * 7_919) % 97))
            .collect();
        let mut expected = rows.clone();
        expected.sort_by_key(|r| r.reading.ts_ms);
        let mut sorter = Sorter::with_run_rows(dir.path(), 64);
        for r in rows {
            sorter.push(r).unwrap();
        }
        let mut got = Vec::new();
        sorter
            .finish::<ReplayError>(33, |chunk| {
                assert!(chunk.len() <= 33);
                got.extend_from_slice(chunk);
                Ok(())
            })
            .unwrap();
        let key = |r: &InputRow| (r.line, r.reading.ts_ms, r.reading.meter.clone());
        assert_eq!(got.len(), 1_000);
        assert_eq!(
            got.iter().map(key).collect::<Vec<_>>(),
            expected.iter().map(key).collect::<Vec<_>>()
        );
        assert_eq!(got[5].reading, expected[5].reading);
        // Its own scratch folder and the stale one are gone.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("kept")]);
    }

    #[test]
    fn a_scratch_file_that_cannot_be_made_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        // The store's folder is a plain file: the scratch folder cannot be made in it.
        let not_a_dir = dir.path().join("store-dir");
        std::fs::write(&not_a_dir, b"").unwrap();
        let mut sorter = Sorter::with_run_rows(&not_a_dir, 1);
        let e = sorter.push(row(2, 0)).unwrap_err().to_string();
        assert!(
            e.starts_with("sorting the input: scratch file ")
                && e.contains(&format!("store-dir/{SCRATCH_PREFIX}{}", std::process::id())),
            "{e}"
        );
    }
}
