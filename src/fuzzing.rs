//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz, libFuzzer) and for the seeded
//! mutation test. Not API: each function feeds arbitrary bytes to one parser and checks only
//! what must hold for any input (no panic, no hang, and the few invariants named below; a
//! broken one panics, which the fuzzer reports as a crash). They live here rather than in the
//! parsers' modules so that those keep their items private to the crate, and a rewrite of a
//! parser changes one line here.

use std::sync::Arc;

use crate::http::passthrough::{chunked, request, response};

/// The config lexer and loader. `data` is split at NUL bytes into files: the first is `conf`,
/// the rest `conf.d/N`. An error must name a file, line and column.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let sources: Vec<crate::lwsws::Source> = text
        .split('\0')
        .enumerate()
        .map(|(i, t)| {
            let name: Arc<str> = if i == 0 { "conf".into() } else { format!("conf.d/{i}").into() };
            crate::lwsws::Source { name, text: t.to_string() }
        })
        .collect();
    if let Err(e) = crate::lwsws::load_sources(&sources, "/usr/share") {
        assert!(!e.loc.file.is_empty() && e.loc.line >= 1 && e.loc.col >= 1, "an error without file:line:col: {e}");
    }
}

/// The passthrough's request head: httparse, then what the passthrough reads from the headers
/// (`head_facts`) and every header value as a Content-Length.
pub fn request_head(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if let Ok(httparse::Status::Complete(_)) = req.parse(data) {
        let _ = request::head_facts(req.headers);
        for h in req.headers.iter() {
            let _ = request::content_length(h.value);
        }
    }
}

/// The passthrough's chunked body parser. The first byte picks where the body is split in two
/// reads: the end found, the payload and the verdict must not depend on where reads split.
pub fn chunked(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else { return };
    let whole = decode_in_reads(body, &[body.len()]);
    let cut = usize::from(pick) % (body.len() + 1);
    let split = decode_in_reads(body, &[cut, body.len()]);
    assert_eq!(whole, split, "reads split at {cut} changed the result");
    let mut scanner = chunked::ChunkedEnd::default();
    if let (Ok(scan), Ok((end, _))) = (scanner.scan(body), &whole) {
        assert_eq!(scan.end, *end, "scan and decode disagree on the end");
        assert!(scan.forward <= body.len());
    }
}

/// Decodes `body` fed in reads ending at `ends`: where the body ended and the payload.
fn decode_in_reads(body: &[u8], ends: &[usize]) -> Result<(Option<usize>, Vec<u8>), chunked::Malformed> {
    let mut d = chunked::ChunkedEnd::default();
    let mut out = Vec::new();
    let mut start = 0;
    for &end in ends {
        if let Some(n) = d.decode(&body[start..end], &mut out)? {
            assert!(start + n <= body.len());
            assert_eq!(d.payload(), out.len() as u64);
            return Ok((Some(start + n), out));
        }
        start = end;
    }
    assert_eq!(d.payload(), out.len() as u64);
    Ok((None, out))
}

/// The upstream response head parser. The first byte picks the request's shape; what a head
/// claims to span lies within the bytes given.
pub fn response_head(data: &[u8]) {
    let Some((&flags, buf)) = data.split_first() else { return };
    let shape =
        response::Shape { head_request: flags & 1 != 0, prefix: &[], close: flags & 2 != 0, links: flags & 4 != 0 };
    match response::parse(buf, &shape) {
        response::HeadParse::Head(h) => assert!(h.len <= buf.len() && h.client.ends_with(b"\r\n\r\n")),
        response::HeadParse::Interim(n) => assert!(n > 0 && n <= buf.len()),
        response::HeadParse::Partial | response::HeadParse::Invalid => {}
    }
}

/// The file origin's Range parser. The first 8 bytes are the file length (little-endian), the
/// rest the header value; every range given back is inside the file.
pub fn ranges(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let (len, spec) = data.split_at(8);
    let mut le = [0u8; 8];
    le.copy_from_slice(len);
    // Lengths up to 2^40 keep the interesting boundaries (0, 1, small) common.
    let len = u64::from_le_bytes(le) % (1 << 40);
    let spec = String::from_utf8_lossy(spec);
    use crate::http::origin::file::{Ranges, parse_ranges};
    if let Some(Ranges::Parts(ranges)) = parse_ranges(&spec, len) {
        assert!(!ranges.is_empty(), "{spec:?}: satisfiable but no range");
        let mut end = None;
        for (a, b) in ranges {
            assert!(a <= b && b < len, "{spec:?} of {len}: range {a}-{b} outside the file");
            // Sorted and merged: each starts after the end of the one before, with a gap.
            assert!(end.is_none_or(|e: u64| a > e + 1), "{spec:?} of {len}: ranges overlap or touch");
            end = Some(b);
        }
    }
}

/// The request path normaliser: whatever comes in, what comes out is absolute and holds no
/// `.`/`..` segment, empty segment, backslash or NUL (no way out of a mount's directory).
pub fn path(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(p) = crate::http::path::normalize(raw) {
        assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
        assert!(!p.contains('\\') && !p.contains('\0'), "{raw:?} -> {p:?}");
        let inner = p.strip_suffix('/').unwrap_or(&p);
        for seg in inner.split('/').skip(1) {
            assert!(!matches!(seg, "" | "." | ".."), "{raw:?} -> {p:?}: segment {seg:?}");
        }
    }
}

/// The PROXY protocol header reader on a listener that takes either version. It must never
/// read past a header it accepts: what it took is the whole header (a v1 line up to its only
/// CR, LF included, at most 107 bytes; or a v2 header's 16 bytes and the length they give),
/// and everything after it is left for TLS or HTTP. Reading a slice never waits, so a plain
/// `block_on` drives it.
pub fn proxy_header(data: &[u8]) {
    use crate::listen::proxy_protocol::read_header;
    let mut rest = data;
    let got = futures::executor::block_on(read_header(&mut rest, crate::model::ProxyProtocol::Any));
    let taken = &data[..data.len() - rest.len()];
    if got.is_ok() {
        if taken.starts_with(b"PROXY ") {
            assert!(taken.len() <= 107 && taken.ends_with(b"\r\n"), "a v1 line that is not one: {taken:?}");
            assert_eq!(taken.iter().filter(|b| **b == b'\r').count(), 1, "read past the CRLF: {taken:?}");
        } else {
            let len = u16::from_be_bytes([taken[14], taken[15]]) as usize;
            assert_eq!(taken.len(), 16 + len, "a v2 header read to the wrong length");
        }
    }
}
