//! Apache-style access log lines, as lwsws writes them (spec 8):
//! `PEER - - [DD/Mon/YYYY:HH:MM:SS ±zzzz] "METHOD PATH VERSION" STATUS BYTES "REFERER" "UA"`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const MAX_LINE: usize = 511;
const MAX_PATH: usize = 255;

#[derive(Debug)]
pub struct AccessLog {
    file: File,
}

/// What a line says, gathered while the request is handled; `bytes` comes at the end.
#[derive(Debug, Clone)]
pub struct Entry {
    pub peer: Option<IpAddr>,
    pub method: String,
    pub path: String,
    pub version: &'static str,
    pub status: u16,
    pub header_bytes: u64,
    pub referer: String,
    pub user_agent: String,
}

impl AccessLog {
    /// Opened for appending, created 0600, as lwsws does.
    /// Opens (or creates) the log for appending. Only a regular file: opening a FIFO would wait
    /// for a reader, and with it the start or the reload (O_NONBLOCK makes that open fail at
    /// once instead, and a device is refused after opening).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file =
            OpenOptions::new().create(true).append(true).mode(0o600).custom_flags(libc::O_NONBLOCK).open(path)?;
        if !file.metadata()?.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        Ok(AccessLog { file })
    }

    pub fn write(&self, entry: &Entry, body_bytes: u64) {
        let line = format_line(entry, body_bytes, &chrono::Local::now());
        // One write(2) on an O_APPEND file: lines from concurrent requests never interleave.
        if let Err(e) = (&self.file).write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "access log write failed");
        }
    }
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '"' {
                '\''
            } else if c.is_control() {
                '?'
            } else {
                c
            }
        })
        .collect()
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

pub fn format_line<Tz: chrono::TimeZone>(e: &Entry, body_bytes: u64, now: &chrono::DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let peer = e.peer.map(|p| p.to_string()).unwrap_or_else(|| "unix".to_string());
    let mut path = clean(&e.path);
    truncate(&mut path, MAX_PATH);
    let head = format!(
        "{peer} - - [{}] \"{} {path} {}\" {} {} \"{}\" \"",
        now.format("%d/%b/%Y:%H:%M:%S %z"),
        clean(&e.method),
        e.version,
        e.status,
        e.header_bytes + body_bytes,
        clean(&e.referer),
    );
    let mut ua = clean(&e.user_agent);
    // The whole line fits in 511 bytes; the user agent gives way first.
    truncate(&mut ua, MAX_LINE.saturating_sub(head.len() + 2));
    let mut line = format!("{head}{ua}\"\n");
    if line.len() > MAX_LINE {
        truncate(&mut line, MAX_LINE - 1);
        line.push('\n');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn line_format() {
        let now = chrono::FixedOffset::east_opt(3600).unwrap().with_ymd_and_hms(2026, 11, 27, 9, 5, 3).unwrap();
        let e = Entry {
            peer: Some("127.0.0.1".parse().unwrap()),
            method: "GET".into(),
            path: "/a b".into(),
            version: "HTTP/1.1",
            status: 200,
            header_bytes: 100,
            referer: String::new(),
            user_agent: "cu\"rl".into(),
        };
        assert_eq!(
            format_line(&e, 5, &now),
            "127.0.0.1 - - [27/Nov/2026:09:05:03 +0100] \"GET /a b HTTP/1.1\" 200 105 \"\" \"cu'rl\"\n"
        );
        let long = Entry { user_agent: "x".repeat(2000), path: "/p".repeat(500), ..e };
        let l = format_line(&long, 0, &now);
        assert_eq!(l.len(), 511);
        // The user agent gives way first: cut short, it still closes its quote (the old check
        // here, `ends_with("\"\n") || ends_with('\n')`, could not fail).
        assert!(l.ends_with("xx\"\n"), "{l}");
    }
}
