//! The header reader's unit tests: what each header gives, and exactly which bytes it takes.

use super::*;

/// A v2 header: `command` 0 LOCAL or 1 PROXY, `family` 0x11 TCP over IPv4 or 0x21 over
/// IPv6, then the addresses (and TLVs) as given.
fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend([0x20 | command, family]);
    h.extend((body.len() as u16).to_be_bytes());
    h.extend(body);
    h
}

/// Reads a header from `input` and returns what it gave and the bytes left unread.
async fn read(input: &[u8], accept: ProxyProtocol) -> (Result<Option<SocketAddr>, HeaderError>, Vec<u8>) {
    let mut rest = input;
    let got = read_header(&mut rest, accept).await;
    (got, rest.to_vec())
}

const NEXT: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

#[tokio::test]
async fn v1_gives_the_source_and_leaves_what_follows() {
    for (line, addr) in [
        ("PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n", "192.0.2.7:40000"),
        ("PROXY TCP6 2001:db8::7 2001:db8::1 40001 443\r\n", "[2001:db8::7]:40001"),
    ] {
        let input = [line.as_bytes(), NEXT].concat();
        let (got, rest) = read(&input, ProxyProtocol::Any).await;
        assert_eq!(got.unwrap(), Some(addr.parse().unwrap()), "{line}");
        assert_eq!(rest, NEXT);
    }
    let longest =
        "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(longest.len(), V1_MAX);
    let (got, rest) = read(&[longest.as_bytes(), b"\x16\x03\x01"].concat(), ProxyProtocol::V1).await;
    assert_eq!(got.unwrap(), None);
    assert_eq!(rest, b"\x16\x03\x01");
}

#[tokio::test]
async fn v1_unknown_names_no_client() {
    for line in ["PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff:: ffff:: 1 2\r\n"] {
        let (got, rest) = read(&[line.as_bytes(), NEXT].concat(), ProxyProtocol::V1).await;
        assert_eq!(got.unwrap(), None, "{line}");
        assert_eq!(rest, NEXT);
    }
}

#[tokio::test]
async fn v2_gives_the_source_skips_tlvs_and_leaves_what_follows() {
    let mut v4 = vec![192, 0, 2, 9, 198, 51, 100, 1];
    v4.extend(40002u16.to_be_bytes());
    v4.extend(443u16.to_be_bytes());
    v4.extend([0x04, 0x00, 0x01, 0x00]); // a NOOP TLV
    let mut v6 = vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    v6.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6.extend(40003u16.to_be_bytes());
    v6.extend(443u16.to_be_bytes());
    for (header, addr) in [(v2(1, 0x11, &v4), "192.0.2.9:40002"), (v2(1, 0x21, &v6), "[2001:db8::9]:40003")] {
        let (got, rest) = read(&[&header[..], NEXT].concat(), ProxyProtocol::V2).await;
        assert_eq!(got.unwrap(), Some(addr.parse().unwrap()));
        assert_eq!(rest, NEXT);
    }
    let (got, rest) = read(&[&v2(0, 0x00, &[])[..], NEXT].concat(), ProxyProtocol::Any).await;
    assert_eq!(got.unwrap(), None, "LOCAL keeps the socket's address");
    assert_eq!(rest, NEXT);
}

#[tokio::test]
async fn anything_else_is_refused() {
    let v2_local = v2(0, 0x00, &[]);
    let cases: [(&[u8], ProxyProtocol); 7] = [
        (NEXT, ProxyProtocol::Any),
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n", ProxyProtocol::V2),
        (&v2_local, ProxyProtocol::V1),
        (b"PROXY TCP4 not-an-address 198.51.100.1 1 2\r\n", ProxyProtocol::Any),
        (b"PROXY TCP4\r\nGET / HTTP/1.1\r\n", ProxyProtocol::Any),
        (&[b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat(), ProxyProtocol::Any),
        (b"PROXY TCP4 192.0.2.7", ProxyProtocol::Any),
    ];
    for (input, accept) in cases {
        let (got, rest) = read(input, accept).await;
        assert!(got.is_err(), "{:?}", String::from_utf8_lossy(input));
        assert!(input.len() - rest.len() <= V1_MAX, "read past the longest header");
    }
}
