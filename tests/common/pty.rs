//! Linked pseudo-terminals for serial-line tests (socat; scripts/test.sh installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A socat-made pair of linked pseudo-terminals.
pub struct PtyPair {
    child: Child,
    pub a: PathBuf,
    pub b: PathBuf,
}

impl PtyPair {
    pub fn new(dir: &Path, name: &str) -> PtyPair {
        let a = dir.join(format!("{name}-a"));
        let b = dir.join(format!("{name}-b"));
        let child = Command::new("socat")
            .args([
                format!("pty,raw,echo=0,link={}", a.display()),
                format!("pty,raw,echo=0,link={}", b.display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat must be installed (scripts/test.sh installs it)");
        let started = Instant::now();
        while !(a.exists() && b.exists()) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "socat made no ptys"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PtyPair { child, a, b }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
