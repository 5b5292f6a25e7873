//! The admin listener, away from the public vhosts: `/metrics` (OpenMetrics when the scraper
//! asks for it, as Prometheus does; the classic text format otherwise),
//! `/healthz` (the process serves) and `/readyz` (a config is loaded and its listeners bound,
//! which is true once `Server::start` returned, until the process is told to stop: from then
//! on 503, so that load balancers and Kubernetes take it out of rotation while it still
//! serves; `/healthz` stays 200, since nothing is wrong that a restart would fix).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use crate::http::conn::Shared;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `addr` and serves until `stop`; returns the bound address (port 0 picks one).
pub async fn start(addr: SocketAddr, shared: Arc<Shared>, stop: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(_) => continue,
                },
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| std::future::ready(Ok::<_, Infallible>(answer(&shared, &req))));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(bound)
}

fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let openmetrics = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let (status, ctype, body) = match req.uri().path() {
        "/metrics" if openmetrics => (StatusCode::OK, OPENMETRICS, shared.metrics.render()),
        "/metrics" => (StatusCode::OK, PROMETHEUS_TEXT, shared.metrics.render_text()),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" if shared.lifecycle.ready() => (StatusCode::OK, "text/plain", "ready\n".to_string()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "shutting down\n".to_string()),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_string()),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("valid")
}
