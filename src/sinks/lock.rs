//! One writer per store: an exclusive lock held for the life of the process that writes.
//!
//! Two daemons (or a daemon and a replay) on one store would each poll and commit the same
//! meters and account them twice. The lock is an OS file lock on a file beside the store (or the
//! outbox), so it is released by the kernel however the holder ends, `kill -9` included; the
//! holder writes its pid into it so the refusal can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{what} {target} is in use by another ecogate (pid {holder}, lock file {lock}): stop it first, or give this command another {what}")]
    Held {
        what: &'static str,
        target: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error("{what} {target}: cannot lock {lock}: {source}")]
    Io {
        what: &'static str,
        target: PathBuf,
        lock: PathBuf,
        source: std::io::Error,
    },
}

/// Held while alive; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct ExclusiveLock {
    _file: File,
    path: PathBuf,
}

impl ExclusiveLock {
    /// Locks `<target>.lock` for `what` ("store", "outbox"), or says who holds it.
    pub fn acquire(target: &Path, what: &'static str) -> Result<ExclusiveLock, LockError> {
        let mut name = target.as_os_str().to_owned();
        name.push(".lock");
        let lock = PathBuf::from(name);
        let io = |source| LockError::Io {
            what,
            target: target.to_path_buf(),
            lock: lock.clone(),
            source,
        };
        if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    what,
                    target: target.to_path_buf(),
                    lock,
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder.chars().take(20).collect()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io)?;
        Ok(ExclusiveLock {
            _file: file,
            path: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("sub").join("store.db");
        let first = ExclusiveLock::acquire(&store, "store").unwrap();
        let err = ExclusiveLock::acquire(&store, "store")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("store.db"), "{err}");
        drop(first);
        ExclusiveLock::acquire(&store, "store").unwrap();
    }
}
