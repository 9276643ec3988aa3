//! The validation machinery every section of the file uses: TOML parsed with locations kept,
//! and a [`Validator`] that collects located errors and warnings, so that one run reports every
//! problem of a file.

use super::raw::S;
use super::{ConfigError, ConfigErrors, Locator};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Keys whose values are secrets: an error about one never repeats its value.
const SECRET_KEYS: &[&str] = &["password", "token"];

/// Parses TOML into `T`, locating any syntax, type or unknown-key error (file, line, key).
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    locator: &Locator<'_>,
) -> Result<T, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| ConfigError {
        line_col: e.span().map(|s| locator.line_col(&s)),
        key: String::new(),
        message: format!("not valid TOML: {}", e.message()),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "");
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        // serde repeats a wrongly typed value in its message: not for a secret.
        let secret = SECRET_KEYS
            .iter()
            .any(|k| key == *k || key.ends_with(&format!(".{k}")));
        let message = if secret {
            "must be a string in quotes (the value is not repeated here: it is a secret)"
                .to_string()
        } else {
            inner.message().to_string()
        };
        ConfigError {
            line_col: inner.span().map(|s| locator.line_col(&s)),
            key,
            message,
        }
    })
}

/// Collects located errors and warnings while the park model and every component validate
/// their sections, so that one run reports every problem of a file.
pub struct Validator<'a> {
    pub(super) locator: &'a Locator<'a>,
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<String>,
    pub(super) file: PathBuf,
    pub(super) config_dir: PathBuf,
}

/// Characters allowed in ids: they become store keys, metric labels and line-protocol tags.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl<'a> Validator<'a> {
    pub fn new(file: &Path, locator: &'a Locator<'a>) -> Validator<'a> {
        Validator {
            locator,
            errors: Vec::new(),
            warnings: Vec::new(),
            file: file.to_path_buf(),
            config_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        }
    }

    /// A problem that is not at one place in the file.
    pub fn err_unlocated(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            line_col: None,
            key: key.into(),
            message: message.into(),
        });
    }

    /// Ends validation: the warnings, or every error found.
    pub fn finish(self) -> Result<Vec<String>, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(self.warnings)
        } else {
            Err(ConfigErrors {
                file: self.file,
                errors: self.errors,
            })
        }
    }

    /// A path from the configuration, taken relative to the configuration file's folder.
    pub fn relative_to_config(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.config_dir.join(p)
        }
    }

    /// A component's view of the file (its own section, other keys ignored), deserialized with
    /// locations kept; a wrongly typed or unknown key in it is recorded, located, and `None`
    /// returned.
    pub fn section<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        match parse_toml(self.locator.text(), self.locator) {
            Ok(t) => Some(t),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// A setting that works but is probably not what was meant: `check` prints it, `run` logs it.
    pub fn warn<T>(&mut self, at: &S<T>, key: impl Into<String>, message: impl Into<String>) {
        let line_col = self.locator.line_col(&at.span());
        self.warnings.push(format!(
            "{}:{}:{}: {}: {}",
            self.file.display(),
            line_col.0,
            line_col.1,
            key.into(),
            message.into()
        ));
    }

    pub fn err<T>(&mut self, at: &S<T>, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            line_col: Some(self.locator.line_col(&at.span())),
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn check_id(
        &mut self,
        id: &S<String>,
        key: &str,
        seen: &mut HashMap<String, String>,
    ) {
        if !valid_id(id.get_ref()) {
            self.err(
                id,
                key,
                format!(
                    "id `{}` must be 1-64 characters of A-Z a-z 0-9 _ - . (ids become store keys and metric labels)",
                    id.get_ref()
                ),
            );
        }
        if let Some(first) = seen.get(id.get_ref()) {
            let msg = format!("duplicate id `{}`: already used at {first}", id.get_ref());
            self.err(id, key, msg);
        } else {
            seen.insert(id.get_ref().clone(), key.to_string());
        }
    }

    pub fn non_negative(&mut self, v: &Option<S<f64>>, key: &str) -> Option<f64> {
        let s = v.as_ref()?;
        let x = *s.get_ref();
        if !x.is_finite() || x < 0.0 {
            self.err(s, key, format!("must be a finite number >= 0, got {x}"));
            return None;
        }
        Some(x)
    }

    pub fn positive(&mut self, s: &S<f64>, key: &str) -> Option<f64> {
        let x = *s.get_ref();
        if !x.is_finite() || x <= 0.0 {
            self.err(s, key, format!("must be a finite number > 0, got {x}"));
            return None;
        }
        Some(x)
    }
}
