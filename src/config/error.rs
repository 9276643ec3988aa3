//! Configuration errors that name the file, line:column and key path, and say what to do.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line and column, where the problem can be pinned to a place in the file.
    pub line_col: Option<(usize, usize)>,
    /// The key path, e.g. `sites[2].firm`.
    pub key: String,
    pub message: String,
}

/// Every problem found in one file. `check` prints them all rather than stopping at the first.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some((line, col)) = e.line_col {
                write!(f, ":{line}:{col}")?;
            }
            if !e.key.is_empty() {
                write!(f, ": {}", e.key)?;
            }
            write!(f, ": {}", e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    pub fn single(file: &Path, error: ConfigError) -> ConfigErrors {
        ConfigErrors {
            file: file.to_path_buf(),
            errors: vec![error],
        }
    }
}

/// Turns byte offsets into 1-based line and column (columns in characters, so that Chinese names
/// do not throw the column off).
#[derive(Debug)]
pub struct Locator<'a> {
    text: &'a str,
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Self {
        Locator { text }
    }

    /// The whole file's text.
    pub fn text(&self) -> &'a str {
        self.text
    }

    pub fn line_col(&self, span: &Range<usize>) -> (usize, usize) {
        let offset = span.start.min(self.text.len());
        let before = &self.text[..floor_char_boundary(self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}
