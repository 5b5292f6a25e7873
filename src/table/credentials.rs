//! A basic-auth credentials file (spec 3, D17), read and parsed once when the table is
//! compiled, like a certificate: an edit applies at the next reload, never half-way through a
//! request, and a file that cannot be read is a config error rather than a 401 for everyone.
//! Checking a password against it is `http::auth`'s (bcrypt runs off the event loop there).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::files::{MAX_CONFIG_FILE, ReadError, read_config_text};

/// `user:stored` lines, in file order; `stored` is plain, bcrypt or `{SHA}` (D17).
pub struct Credentials {
    path: PathBuf,
    entries: Vec<(String, String)>,
}

impl Credentials {
    /// Reads `path` (a regular file of at most `MAX_CONFIG_FILE`, UTF-8). Lines without a
    /// colon are skipped, as lwsws skips them.
    pub fn load(path: &Path) -> Result<Credentials, ReadError> {
        Ok(Credentials::parse(path, &read_config_text(path, MAX_CONFIG_FILE)?))
    }

    pub fn parse(path: &Path, text: &str) -> Credentials {
        let entries = text
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        Credentials { path: path.to_path_buf(), entries }
    }

    /// The stored passwords of `user`, in file order.
    pub fn stored_for<'a>(&'a self, user: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries.iter().filter(move |(u, _)| u == user).map(|(_, p)| p.as_str())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Names the file and counts the users; never prints a password or a hash.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("path", &self.path).field("users", &self.entries.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_debug() {
        let c = Credentials::parse(Path::new("/x"), "a:1\r\nnocolon\nb:2:3\na:4\n");
        assert_eq!(c.stored_for("a").collect::<Vec<_>>(), ["1", "4"]);
        assert_eq!(c.stored_for("b").collect::<Vec<_>>(), ["2:3"]);
        assert_eq!(c.stored_for("nocolon").count(), 0);
        let shown = format!("{c:?}");
        assert!(shown.contains("users: 3") && !shown.contains("2:3"), "{shown}");
    }
}
