//! The Prometheus registry (prometheus-client, the official Rust client; the `prometheus` crate
//! has had no release since 2025). One instance lives for the whole process, so counters survive
//! reloads. Labels come from the config only (vhost name, mountpoint, status class), never from
//! request paths or Host headers, so their number is bounded.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub vhost: String,
    pub mount: String,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VhostLabels {
    pub vhost: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WsLabels {
    pub vhost: String,
    pub protocol: String,
    pub direction: &'static str,
}

/// One websocket connection's message counters, resolved once when it starts.
#[derive(Clone, Debug, Default)]
pub struct WsCounters {
    pub received: Counter,
    pub sent: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AcmeLabels {
    pub vhost: String,
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MountResultLabels {
    pub vhost: String,
    pub mount: String,
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<VhostLabels, Histogram>,
    pub bytes_out: Family<VhostLabels, Counter>,
    pub connections_open: Gauge,
    /// `lifecycle::Phase`: 0 serving, 1 draining (not ready, still serving), 2 stopping.
    pub shutdown_phase: Gauge,
    pub tls_handshakes: Family<ResultLabels, Counter>,
    /// PROXY protocol headers on listeners that require one: `proxied`, `local` (the header
    /// named no client), `invalid`, `timeout`, `closed` (the peer left before the header).
    pub proxy_headers: Family<ResultLabels, Counter>,
    pub reloads: Family<ResultLabels, Counter>,
    pub last_reload_success: Gauge<f64, AtomicU64>,
    pub upstream_errors: Family<MountResultLabels, Counter>,
    pub cgi_runs: Family<MountResultLabels, Counter>,
    pub ws_messages: Family<WsLabels, Counter>,
    pub cert_expiry: Family<VhostLabels, Gauge>,
    pub acme_orders: Family<AcmeLabels, Counter>,
    /// Totals for the status page, which reads the same events as `/metrics`.
    requests_total: Counter,
    reloads_ok: Counter,
    reloads_failed: Counter,
    last_reload_error: parking_lot::Mutex<String>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lwsws");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by vhost, mount and status class",
            requests.clone(),
        );
        let duration = Family::<VhostLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register_with_unit(
            "http_request_duration",
            "Time from the request head to the end of the response body",
            Unit::Seconds,
            duration.clone(),
        );
        let bytes_out = Family::<VhostLabels, Counter>::default();
        registry.register_with_unit("http_response_body", "Response body bytes sent", Unit::Bytes, bytes_out.clone());
        let connections_open = Gauge::default();
        registry.register("connections_open", "Client connections open now", connections_open.clone());
        let shutdown_phase = Gauge::default();
        registry.register(
            "shutdown_phase",
            "0 serving; 1 draining (told to stop, not ready, still serving); 2 stopping (finishing in-flight requests)",
            shutdown_phase.clone(),
        );
        let tls_handshakes = Family::<ResultLabels, Counter>::default();
        registry.register("tls_handshakes", "TLS handshakes, by result", tls_handshakes.clone());
        let proxy_headers = Family::<ResultLabels, Counter>::default();
        registry.register(
            "proxy_protocol_headers",
            "PROXY protocol headers on listeners that require one, by result",
            proxy_headers.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register("config_reloads", "Configuration reloads, by result", reloads.clone());
        let last_reload_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the running configuration was applied (Unix time)",
            last_reload_success.clone(),
        );
        let upstream_errors = Family::<MountResultLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Proxied requests whose upstream failed: connect, timeout or failed",
            upstream_errors.clone(),
        );
        let cgi_runs = Family::<MountResultLabels, Counter>::default();
        registry.register("cgi_runs", "CGI scripts run, by how they answered", cgi_runs.clone());
        let ws_messages = Family::<WsLabels, Counter>::default();
        registry.register(
            "websocket_messages",
            "WebSocket messages handled by the built-in protocols, by vhost, protocol and direction",
            ws_messages.clone(),
        );
        let cert_expiry = Family::<VhostLabels, Gauge>::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When each vhost's serving certificate expires (Unix time)",
            cert_expiry.clone(),
        );
        let acme_orders = Family::<AcmeLabels, Counter>::default();
        registry.register(
            "acme_orders",
            "ACME certificate orders, by vhost, kind (issue or renew) and result",
            acme_orders.clone(),
        );
        let m = Metrics {
            ws_messages,
            cert_expiry,
            acme_orders,
            requests_total: Counter::default(),
            reloads_ok: Counter::default(),
            reloads_failed: Counter::default(),
            last_reload_error: parking_lot::Mutex::new(String::new()),
            upstream_errors,
            cgi_runs,
            registry,
            requests,
            duration,
            bytes_out,
            connections_open,
            shutdown_phase,
            tls_handshakes,
            proxy_headers,
            reloads,
            last_reload_success,
        };
        m.config_applied();
        m
    }
}

/// The request series of one mount (or of a vhost's requests that matched no mount), found in
/// the families once and then kept: recording a request touches no map and makes no label
/// strings. Families never drop these series, so the handles stay the ones exported.
#[derive(Debug, Default)]
pub struct RequestSeries {
    by_class: [std::sync::OnceLock<Counter>; 5],
    vhost: std::sync::OnceLock<(Histogram, Counter)>,
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn status_class(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

impl Metrics {
    pub fn record_request(&self, vhost: &str, mount: &str, status: u16, body_bytes: u64, took: Duration) {
        self.record_request_in(&RequestSeries::default(), vhost, mount, status, body_bytes, took);
    }

    /// `record_request` through the series handles kept in `series`.
    pub fn record_request_in(
        &self,
        series: &RequestSeries,
        vhost: &str,
        mount: &str,
        status: u16,
        body_bytes: u64,
        took: Duration,
    ) {
        let class = status_class(status);
        let requests = series.by_class[class].get_or_init(|| {
            let labels =
                RequestLabels { vhost: vhost.to_string(), mount: mount.to_string(), status: STATUS_CLASSES[class] };
            self.requests.get_or_create(&labels).clone()
        });
        requests.inc();
        self.requests_total.inc();
        let (duration, bytes) = series.vhost.get_or_init(|| {
            let v = VhostLabels { vhost: vhost.to_string() };
            (self.duration.get_or_create(&v).clone(), self.bytes_out.get_or_create(&v).clone())
        });
        duration.observe(took.as_secs_f64());
        bytes.inc_by(body_bytes);
    }

    pub fn upstream_error(&self, vhost: &str, mount: &str, result: &'static str) {
        let labels = MountResultLabels { vhost: vhost.to_string(), mount: mount.to_string(), result };
        self.upstream_errors.get_or_create(&labels).inc();
    }

    pub fn cgi_run(&self, vhost: &str, mount: &str, result: &'static str) {
        let labels = MountResultLabels { vhost: vhost.to_string(), mount: mount.to_string(), result };
        self.cgi_runs.get_or_create(&labels).inc();
    }

    /// The counters of one websocket connection of `protocol` on `vhost`.
    pub fn ws_counters(&self, vhost: &str, protocol: &str) -> WsCounters {
        let labels = |direction| WsLabels { vhost: vhost.to_string(), protocol: protocol.to_string(), direction };
        // One statement each: the family's read guard must be dropped before the next lookup,
        // which may need its write lock.
        let received = self.ws_messages.get_or_create(&labels("received")).clone();
        let sent = self.ws_messages.get_or_create(&labels("sent")).clone();
        WsCounters { received, sent }
    }

    /// Replaces the certificate expiry gauges with `expiries` (vhost, Unix time): vhosts that
    /// went away with a reload stop being reported.
    pub fn set_cert_expiries(&self, expiries: &[(String, i64)]) {
        self.cert_expiry.clear();
        for (vhost, at) in expiries {
            self.cert_expiry.get_or_create(&VhostLabels { vhost: vhost.clone() }).set(*at);
        }
    }

    /// One vhost's certificate changed without a reload (ACME issuance or renewal).
    pub fn set_cert_expiry(&self, vhost: &str, at: i64) {
        self.cert_expiry.get_or_create(&VhostLabels { vhost: vhost.to_string() }).set(at);
    }

    pub fn acme_order(&self, vhost: &str, kind: &'static str, result: &'static str) {
        self.acme_orders.get_or_create(&AcmeLabels { vhost: vhost.to_string(), kind, result }).inc();
    }

    pub fn reload(&self, ok: bool) {
        self.reloads.get_or_create(&ResultLabels { result: if ok { "success" } else { "failure" } }).inc();
        if ok {
            self.reloads_ok.inc();
            self.config_applied();
        } else {
            self.reloads_failed.inc();
        }
    }

    /// A refused reload, with its message (file:line:col), for the status page.
    pub fn reload_refused(&self, message: &str) {
        self.reload(false);
        *self.last_reload_error.lock() = message.to_string();
    }

    /// What the lws-server-status document shows of the server (values as strings, as lws does).
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests_total.get().to_string(),
            "connections_open": self.connections_open.get().to_string(),
            "reloads_ok": self.reloads_ok.get().to_string(),
            "reloads_failed": self.reloads_failed.get().to_string(),
            "last_reload_error": self.last_reload_error.lock().clone(),
        })
    }

    fn config_applied(&self) {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        self.last_reload_success.set(now);
    }

    /// The Prometheus text format (0.0.4), for scrapers and tools that do not ask for
    /// OpenMetrics: counters are named with their `_total` in HELP and TYPE, and the
    /// OpenMetrics-only `# UNIT` and `# EOF` lines are left out.
    pub fn render_text(&self) -> String {
        let om = self.render();
        let counters: Vec<&str> =
            om.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.strip_suffix(" counter")).collect();
        let mut out = String::with_capacity(om.len());
        for line in om.lines() {
            if line.starts_with("# UNIT ") || line == "# EOF" {
                continue;
            }
            let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
                let rest = line.strip_prefix(p)?;
                let (name, tail) = rest.split_once(' ')?;
                counters.contains(&name).then(|| format!("{p}{name}_total {tail}"))
            });
            out.push_str(renamed.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }

    /// The OpenMetrics text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_recorded() {
        let m = Metrics::default();
        m.record_request("localhost", "/", 200, 10, Duration::from_millis(3));
        m.record_request("localhost", "/", 404, 5, Duration::from_millis(1));
        m.reload(false);
        m.ws_counters("localhost", "lws-echo").received.inc();
        m.set_cert_expiries(&[("gone".into(), 1), ("localhost".into(), 1_804_118_400)]);
        m.set_cert_expiries(&[("localhost".into(), 1_804_118_400)]);
        m.acme_order("localhost", "issue", "success");
        let text = m.render();
        assert!(
            text.contains(
                "lwsws_websocket_messages_total{vhost=\"localhost\",protocol=\"lws-echo\",direction=\"received\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("lwsws_tls_certificate_expiry_timestamp_seconds{vhost=\"localhost\"} 1804118400"),
            "{text}"
        );
        assert!(!text.contains("vhost=\"gone\""), "{text}");
        assert!(
            text.contains("lwsws_acme_orders_total{vhost=\"localhost\",kind=\"issue\",result=\"success\"} 1"),
            "{text}"
        );
        assert!(text.contains("lwsws_http_requests_total{vhost=\"localhost\",mount=\"/\",status=\"2xx\"} 1"), "{text}");
        assert!(text.contains("lwsws_http_response_body_bytes_total{vhost=\"localhost\"} 15"), "{text}");
        assert!(text.contains("lwsws_config_reloads_total{result=\"failure\"} 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        let plain = m.render_text();
        assert!(plain.contains("# TYPE lwsws_http_requests_total counter"), "{plain}");
        assert!(plain.contains("# HELP lwsws_http_requests_total "), "{plain}");
        assert!(!plain.contains("# EOF") && !plain.contains("# UNIT"));
    }
}
