//! Finding where a chunked body ends without decoding it: the passthrough relays the upstream's
//! chunks as they are, and only needs to know when the message is over. Trailers are not
//! passed on (the proxy drops `Trailer`, as the hyper path does): the relay stops at the last
//! chunk's line and ends the body itself.

/// A chunk-size line (with extensions) or trailer line longer than this is refused.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    /// Spaces or tabs after the size: only `;` or the line's end may follow.
    SizeWs,
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

/// What one `scan` found.
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    /// The first this many bytes are passed on (chunks and the last chunk's line).
    pub forward: usize,
    /// The body ends after this many bytes.
    pub end: Option<usize>,
}

#[derive(Debug)]
pub struct ChunkedEnd {
    state: State,
    /// The chunk being read: its size, then what is left of it.
    size: u64,
    /// Hex digits read of the size; leading zeros count only in `any_digit`.
    digits: usize,
    any_digit: bool,
    line: usize,
    payload: u64,
}

impl Default for ChunkedEnd {
    fn default() -> Self {
        ChunkedEnd { state: State::Size, size: 0, digits: 0, any_digit: false, line: 0, payload: 0 }
    }
}

impl ChunkedEnd {
    /// The payload bytes seen so far (chunk data, without the framing).
    pub fn payload(&self) -> u64 {
        self.payload
    }

    /// Reads on through `bytes`: how many of them to pass on, and where the body ends.
    pub fn scan(&mut self, bytes: &[u8]) -> Result<Scan, Malformed> {
        let in_trailers =
            matches!(self.state, State::TrailerStart | State::Trailer | State::TrailerLf | State::EndLf | State::Done);
        let mut forward = if in_trailers { Some(0) } else { None };
        let end = self.advance(bytes, &mut forward, &mut |_| {})?;
        let forward = forward.unwrap_or(end.unwrap_or(bytes.len()));
        Ok(Scan { forward, end })
    }

    /// Reads on through `bytes` and appends the chunk data (the payload) to `out`: where the body
    /// ends, if it does. For bodies that are decoded, not relayed (links rewritten).
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, Malformed> {
        self.advance(bytes, &mut None, &mut |data| out.extend_from_slice(data))
    }

    fn advance(
        &mut self,
        bytes: &[u8],
        forward: &mut Option<usize>,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<Option<usize>, Malformed> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if matches!(self.state, State::Size | State::SizeWs | State::Ext | State::Trailer) {
                // The whole size line (zeros and spaces included) or trailer line is bounded.
                self.line += 1;
                if self.line > MAX_LINE {
                    return Err(Malformed);
                }
            }
            match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).expect("a hex digit") as u64;
                        if self.size > 0 || d > 0 {
                            if self.digits >= 15 {
                                return Err(Malformed);
                            }
                            self.digits += 1;
                        }
                        self.size = self.size * 16 + d;
                        self.any_digit = true;
                    }
                    b';' if self.any_digit => self.state = State::Ext,
                    b' ' | b'\t' if self.any_digit => self.state = State::SizeWs,
                    b'\r' if self.any_digit => self.state = State::SizeLf,
                    _ => return Err(Malformed),
                },
                State::SizeWs => match b {
                    b' ' | b'\t' => {}
                    b';' => self.state = State::Ext,
                    b'\r' => self.state = State::SizeLf,
                    _ => return Err(Malformed),
                },
                State::Ext => {
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b'\n' {
                        return Err(Malformed);
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(Malformed);
                    }
                    if self.size == 0 {
                        // The last chunk: what follows is the trailer section, not passed on.
                        *forward = Some(i + 1);
                        self.state = State::TrailerStart;
                    } else {
                        self.state = State::Data;
                    }
                }
                State::Data => {
                    let take = (self.size.min((bytes.len() - i) as u64)) as usize;
                    on_data(&bytes[i..i + take]);
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
                    self.line = 0;
                    self.digits = 0;
                    self.any_digit = false;
                }
                State::TrailerStart => {
                    self.line = 1;
                    self.state = match b {
                        b'\r' => State::EndLf,
                        b'\n' => return Err(Malformed),
                        _ => State::Trailer,
                    };
                }
                State::Trailer => {
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    } else if b == b'\n' {
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

    /// Feeds `body` split at every position: the end is found at the same place, and the same
    /// bytes are passed on, each time. Returns the end and what is passed on.
    fn end_of(body: &[u8]) -> Result<(Option<usize>, Vec<u8>), Malformed> {
        let run = |parts: &[&[u8]]| -> Result<(Option<usize>, Vec<u8>), Malformed> {
            let mut s = ChunkedEnd::default();
            let (mut offset, mut passed) = (0, Vec::new());
            for part in parts {
                let scan = s.scan(part)?;
                passed.extend_from_slice(&part[..scan.forward]);
                if let Some(n) = scan.end {
                    return Ok((Some(offset + n), passed));
                }
                offset += part.len();
            }
            Ok((None, passed))
        };
        let whole = run(&[body]);
        for cut in 0..body.len() {
            assert_eq!(run(&[&body[..cut], &body[cut..]]), whole, "split at {cut}");
        }
        whole
    }

    #[test]
    fn ends_are_found_across_any_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT";
        let (end, passed) = end_of(body).unwrap();
        assert_eq!(end, Some(body.len() - 4));
        assert_eq!(passed, b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n");
        let mut s = ChunkedEnd::default();
        s.scan(body).unwrap();
        assert_eq!(s.payload(), 11);
        let trailers = b"A\r\n0123456789\r\n0\r\nx-sum: 1\r\ny: 2\r\n\r\n";
        let (end, passed) = end_of(trailers).unwrap();
        assert_eq!((end, passed.as_slice()), (Some(trailers.len()), &b"A\r\n0123456789\r\n0\r\n"[..]));
        assert_eq!(end_of(b"0\r\n\r\n").unwrap().0, Some(5));
        assert_eq!(end_of(b"3\r\nab").unwrap(), (None, b"3\r\nab".to_vec()));
        let mut decoded = Vec::new();
        let mut s = ChunkedEnd::default();
        assert_eq!(s.decode(&body[..20], &mut decoded), Ok(None));
        assert_eq!(s.decode(&body[20..], &mut decoded), Ok(Some(body.len() - 24)));
        assert_eq!(decoded, b"hello world");
        // Leading zeros, and whitespace before an extension.
        assert_eq!(end_of(b"000000000000000000003\r\nabc\r\n0 ;x\r\n\r\n").unwrap().0, Some(36));
    }

    #[test]
    fn malformed_framing_is_refused() {
        let long_zeros = format!("{}1\r\n", "0".repeat(5000));
        assert_eq!(end_of(long_zeros.as_bytes()), Err(Malformed), "a size line has a limit");
        let bad: [&[u8]; 9] = [
            b"x\r\n",
            b"\r\n",
            b"3\r\nabcd\r\n",
            b"3\nabc",
            b"10000000000000000\r\n",
            b"0\r\nx\n",
            b"0\r\n\n",
            b"5 junk\r\n",
            b";x\r\n",
        ];
        for bad in bad {
            assert_eq!(end_of(bad), Err(Malformed), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
