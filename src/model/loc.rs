//! Where a piece of config came from (`file:line:col`), and the errors and warnings that name it.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Where a value came from: `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // A whole-file problem (cannot open, not UTF-8): there is no position to name.
            return write!(f, "{}", self.file);
        }
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A config that cannot be served. Any one of these rejects the whole config (D2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{loc}: {}{msg}", key.as_deref().map(|k| format!("\"{k}\": ")).unwrap_or_default())]
pub struct ConfigError {
    pub loc: Loc,
    pub key: Option<String>,
    pub msg: String,
}

impl ConfigError {
    pub fn new(loc: Loc, key: Option<&str>, msg: impl Into<String>) -> Self {
        ConfigError { loc, key: key.map(str::to_string), msg: msg.into() }
    }
}

/// Something the config says that is ignored or suspicious but does not stop it serving.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    pub loc: Loc,
    pub msg: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.msg)
    }
}
