//! OpenTelemetry export from the real binary: `OTEL_*` variables point it at an OTLP/HTTP
//! receiver run by this test on loopback (JSON encoding, so the test can read the spans); a
//! request carrying a W3C `traceparent` goes through a proxy mount to an upstream run by the
//! test. The span must arrive with its attributes and its parent, and the upstream must see
//! the server span as the parent of its own request.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::write_config;

const BIN: &str = env!("CARGO_BIN_EXE_lwsws");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// One HTTP/1.1 request read off a stream: its request line, headers and body.
struct Received {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received { line: line.trim_end().to_string(), headers, body })
}

/// Serves every connection on `listener`, answering each request with `reply` and sending
/// what arrived on `tx`.
fn serve(listener: TcpListener, tx: mpsc::Sender<Received>, reply: &'static str) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                while let Some(r) = read_request(&mut reader) {
                    let _ = tx.send(r);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                        reply.len()
                    );
                    if writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(reply.as_bytes())).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn attr<'a>(span: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    span["attributes"].as_array()?.iter().find(|a| a["key"] == key).map(|a| &a["value"])
}

fn attr_text(span: &serde_json::Value, key: &str) -> String {
    let v = attr(span, key).unwrap_or_else(|| panic!("no attribute {key} in {span}"));
    if let Some(s) = v["stringValue"].as_str() {
        return s.to_string();
    }
    // OTLP/JSON writes 64-bit integers as strings or numbers.
    match &v["intValue"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every span in an OTLP/JSON export request.
fn spans(body: &[u8]) -> Vec<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_slice(body).expect("OTLP/JSON body");
    let mut out = Vec::new();
    for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["key"] == "service.name"))
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or("")
            .to_string();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                let mut s = s.clone();
                s["service"] = service.clone().into();
                out.push(s);
            }
        }
    }
    out
}

#[test]
fn a_request_span_is_exported_over_otlp_and_its_context_goes_upstream() {
    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    let collector_addr = collector.local_addr().unwrap();
    let (otlp_tx, otlp_rx) = mpsc::channel();
    serve(collector, otlp_tx, "");
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let (up_tx, up_rx) = mpsc::channel();
    serve(upstream, up_tx, "from upstream");

    let port = common::free_port();
    let vhost = format!(
        r#"{{ "vhosts": [{{ "name": "traced.test", "port": "{port}", "interface": "127.0.0.1",
            "mounts": [{{ "mountpoint": "/api", "origin": "http://{upstream_addr}/" }}] }}] }}"#
    );
    let dir = write_config("{}", &[("traced", &vhost)]);
    let mut child = common::Running(
        Command::new(BIN)
            .args(["-c", dir.path().to_str().unwrap()])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector_addr}"))
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            .env("OTEL_SERVICE_NAME", "edge-test")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    common::wait_for_child_port(addr, &mut child);

    let mut s = TcpStream::connect(addr).unwrap();
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    write!(
        s,
        "GET /api/items?x=1 HTTP/1.1\r\nHost: traced.test\r\nUser-Agent: otel-test\r\ntraceparent: {traceparent}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("from upstream"), "{answer}");

    let upstream_req = up_rx.recv_timeout(Duration::from_secs(5)).expect("the upstream got the request");
    assert_eq!(upstream_req.line, "GET /items?x=1 HTTP/1.1");
    let sent = upstream_req.headers.iter().find(|(n, _)| n == "traceparent").map(|(_, v)| v.clone());
    let sent = sent.expect("traceparent passed upstream");
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(parts[1], TRACE_ID, "same trace upstream");
    assert_ne!(parts[2], CLIENT_SPAN, "the upstream's parent is the server span, not the client's");

    let deadline = Instant::now() + Duration::from_secs(15);
    let span = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let export = otlp_rx.recv_timeout(left).expect("an OTLP export arrived");
        assert_eq!(export.line, "POST /v1/traces HTTP/1.1");
        let ct = export.headers.iter().find(|(n, _)| n == "content-type").map(|(_, v)| v.as_str());
        assert_eq!(ct, Some("application/json"));
        if let Some(s) = spans(&export.body).into_iter().find(|s| s["traceId"] == TRACE_ID) {
            break s;
        }
    };
    assert_eq!(span["service"], "edge-test");
    assert_eq!(span["parentSpanId"], CLIENT_SPAN);
    assert_eq!(span["spanId"], parts[2], "the span sent upstream is the one exported");
    assert_eq!(span["name"], "GET /api");
    assert_eq!(span["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(attr_text(&span, "http.request.method"), "GET");
    assert_eq!(attr_text(&span, "http.route"), "/api");
    assert_eq!(attr_text(&span, "url.path"), "/api/items");
    assert_eq!(attr_text(&span, "url.scheme"), "http");
    assert_eq!(attr_text(&span, "http.response.status_code"), "200");
    assert_eq!(attr_text(&span, "lwsws.vhost"), "traced.test");
    assert_eq!(attr_text(&span, "client.address"), "127.0.0.1");
    assert_eq!(attr_text(&span, "user_agent.original"), "otel-test");

    assert!(child.terminate().success());
}
