//! OpenTelemetry traces: one server span per HTTP request, exported over OTLP when the
//! standard `OTEL_*` environment asks for it, with W3C `traceparent` taken from the client and
//! passed on to proxied upstreams.
//!
//! Exporting is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! is set, unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
//! `OTEL_EXPORTER_OTLP_PROTOCOL` picks `http/protobuf` (default) or `http/json`;
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and the `OTEL_BSP_*` batch settings apply as
//! the SDK reads them. When exporting is off no request span is made at all, so tracing costs
//! nothing on the request path.

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The tracing target of request spans; only the OpenTelemetry layer listens to it.
pub const TARGET: &str = "lwsws::otel";

static ENABLED: OnceLock<bool> = OnceLock::new();

/// Whether request spans are being made (set once, at startup).
pub fn enabled() -> bool {
    ENABLED.get().copied().unwrap_or(false)
}

/// Keeps the exporter alive; dropping it flushes the spans still queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("lwsws: flushing OpenTelemetry spans: {e}");
        }
    }
}

/// Whether the environment asks for OTLP export.
pub fn wanted(env: impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let none = env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled && !none && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The OTLP protocol named by the environment (`grpc` is not built in: it falls back to
/// `http/protobuf` with a warning from the caller).
pub fn protocol(env: impl Fn(&str) -> Option<String>) -> Result<opentelemetry_otlp::Protocol, String> {
    let v = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"));
    match v.as_deref().map(str::trim) {
        None | Some("") | Some("http/protobuf") => Ok(opentelemetry_otlp::Protocol::HttpBinary),
        Some("http/json") => Ok(opentelemetry_otlp::Protocol::HttpJson),
        Some(other) => Err(other.to_string()),
    }
}

/// Builds the exporter and the layer that feeds it, when the environment asks for them.
pub fn init<S>() -> Option<(Telemetry, impl tracing_subscriber::Layer<S>)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let env = |k: &str| std::env::var(k).ok();
    if !wanted(env) {
        let _ = ENABLED.set(false);
        return None;
    }
    use opentelemetry_otlp::WithExportConfig as _;
    let protocol = protocol(env).unwrap_or_else(|other| {
        eprintln!("lwsws: OTLP protocol {other:?} is not supported; using http/protobuf");
        opentelemetry_otlp::Protocol::HttpBinary
    });
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(protocol).build();
    let exporter = match exporter {
        Ok(e) => e,
        Err(e) => {
            eprintln!("lwsws: OpenTelemetry export is off: {e}");
            let _ = ENABLED.set(false);
            return None;
        }
    };
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name(env)).build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let tracer = provider.tracer("lwsws");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let _ = ENABLED.set(true);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::INFO));
    Some((Telemetry { provider }, layer))
}

fn service_name(env: impl Fn(&str) -> Option<String>) -> String {
    env("OTEL_SERVICE_NAME").filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "lwsws".to_string())
}

use tracing_subscriber::Layer as _;

/// A server span for one request, a child of the client's `traceparent` when it sent one.
/// Its name and route are filled in once the mount is known (`record_route`).
pub fn request_span(method: &http::Method, path: &str, scheme: &str, headers: &HeaderMap) -> tracing::Span {
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        url.path = path,
        url.scheme = scheme,
        server.address = tracing::field::Empty,
        client.address = tracing::field::Empty,
        user_agent.original = tracing::field::Empty,
        lwsws.vhost = tracing::field::Empty,
        lwsws.mount = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
    if let Some(ua) = headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        span.record("user_agent.original", ua);
    }
    span
}

/// What is known once the response head exists.
pub fn record_response(
    span: &tracing::Span,
    method: &http::Method,
    vhost: &str,
    mount: Option<&str>,
    status: u16,
    peer: Option<std::net::IpAddr>,
) {
    span.record("lwsws.vhost", vhost);
    span.record("server.address", vhost);
    if let Some(m) = mount {
        span.record("lwsws.mount", m);
        span.record("http.route", m);
        // Once the span's context has been read (a proxied request's `traceparent`), the
        // layer no longer applies a recorded `otel.name`: rename the OpenTelemetry span itself.
        use opentelemetry::trace::TraceContextExt as _;
        span.context().span().update_name(format!("{method} {m}"));
    }
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    if let Some(ip) = peer {
        span.record("client.address", ip.to_canonical().to_string());
    }
}

/// Puts the request span's context on a request going upstream, replacing what the client sent.
pub fn inject(span: Option<&tracing::Span>, headers: &mut HeaderMap) {
    let Some(span) = span else { return };
    let cx = span.context();
    headers.remove("traceparent");
    headers.remove("tracestate");
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(n, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn export_follows_the_standard_variables() {
        assert!(!wanted(env(&[])));
        assert!(wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")])));
        assert!(wanted(env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x"), ("OTEL_SDK_DISABLED", "true")])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x"), ("OTEL_TRACES_EXPORTER", "none")])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
    }

    #[test]
    fn protocol_is_read_from_the_environment() {
        assert_eq!(protocol(env(&[])), Ok(opentelemetry_otlp::Protocol::HttpBinary));
        assert_eq!(
            protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")])),
            Ok(opentelemetry_otlp::Protocol::HttpJson)
        );
        assert_eq!(
            protocol(env(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
            ])),
            Ok(opentelemetry_otlp::Protocol::HttpBinary)
        );
        assert_eq!(protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])), Err("grpc".to_string()));
        assert_eq!(service_name(env(&[])), "lwsws");
        assert_eq!(service_name(env(&[("OTEL_SERVICE_NAME", "edge")])), "edge");
    }
}
