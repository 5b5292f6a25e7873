//! Finding where a chunked body ends without decoding it: the passthrough relays the upstream's
//! chunks as they are, and only needs to know when the message is over.

/// A chunk-size line (with extensions) or trailer line longer than this is refused.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

#[derive(Debug)]
pub struct ChunkedEnd {
    state: State,
    /// The chunk being read: its size, then what is left of it.
    size: u64,
    digits: usize,
    line: usize,
    payload: u64,
}

impl Default for ChunkedEnd {
    fn default() -> Self {
        ChunkedEnd { state: State::Size, size: 0, digits: 0, line: 0, payload: 0 }
    }
}

impl ChunkedEnd {
    /// The payload bytes seen so far (chunk data, without the framing).
    pub fn payload(&self) -> u64 {
        self.payload
    }

    /// Reads on through `bytes`: `Some(n)` when the body ends after its first `n` bytes.
    pub fn scan(&mut self, bytes: &[u8]) -> Result<Option<usize>, Malformed> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).expect("a hex digit") as u64;
                        if self.digits >= 15 {
                            return Err(Malformed);
                        }
                        self.size = self.size * 16 + d;
                        self.digits += 1;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => {
                        self.state = State::Ext;
                        self.line = 0;
                    }
                    b'\r' if self.digits > 0 => self.state = State::SizeLf,
                    _ => return Err(Malformed),
                },
                State::Ext => {
                    self.line += 1;
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if self.line > MAX_LINE || b == b'\n' {
                        return Err(Malformed);
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(Malformed);
                    }
                    self.state = if self.size == 0 { State::TrailerStart } else { State::Data };
                }
                State::Data => {
                    let take = (self.size.min((bytes.len() - i) as u64)) as usize;
                    self.size -= take as u64;
                    self.payload += take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => self.state = if b == b'\r' { State::DataLf } else { return Err(Malformed) },
                State::DataLf => {
                    if b != b'\n' {
                        return Err(Malformed);
                    }
                    self.state = State::Size;
                    self.digits = 0;
                }
                State::TrailerStart => {
                    self.line = 1;
                    self.state = if b == b'\r' { State::EndLf } else { State::Trailer };
                }
                State::Trailer => {
                    self.line += 1;
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    } else if self.line > MAX_LINE || b == b'\n' {
                        return Err(Malformed);
                    }
                }
                State::TrailerLf => self.state = if b == b'\n' { State::TrailerStart } else { return Err(Malformed) },
                State::EndLf => {
                    if b != b'\n' {
                        return Err(Malformed);
                    }
                    self.state = State::Done;
                    return Ok(Some(i + 1));
                }
                State::Done => return Ok(Some(i)),
            }
            i += 1;
        }
        Ok(if self.state == State::Done { Some(i) } else { None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` split at every position: the end is found at the same place each time.
    fn end_of(body: &[u8]) -> Result<Option<usize>, Malformed> {
        let whole = ChunkedEnd::default().scan(body);
        for cut in 0..body.len() {
            let mut s = ChunkedEnd::default();
            let first = s.scan(&body[..cut]);
            let split = match first {
                Ok(Some(n)) => Ok(Some(n)),
                Err(e) => Err(e),
                Ok(None) => s.scan(&body[cut..]).map(|r| r.map(|n| n + cut)),
            };
            assert_eq!(split, whole, "split at {cut}");
        }
        whole
    }

    #[test]
    fn ends_are_found_across_any_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT";
        assert_eq!(end_of(body), Ok(Some(body.len() - 4)));
        let mut s = ChunkedEnd::default();
        s.scan(body).unwrap();
        assert_eq!(s.payload(), 11);
        let trailers = b"A\r\n0123456789\r\n0\r\nx-sum: 1\r\ny: 2\r\n\r\n";
        assert_eq!(end_of(trailers), Ok(Some(trailers.len())));
        assert_eq!(end_of(b"0\r\n\r\n"), Ok(Some(5)));
        assert_eq!(end_of(b"3\r\nab"), Ok(None));
    }

    #[test]
    fn malformed_framing_is_refused() {
        for bad in [&b"x\r\n"[..], b"\r\n", b"3\r\nabcd\r\n", b"3\nabc", b"10000000000000000\r\n", b"0\r\nx\n"] {
            assert_eq!(end_of(bad), Err(Malformed), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
