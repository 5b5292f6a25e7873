//! The admin listener: /metrics in the OpenMetrics text format with counters that come from
//! requests and connections, /healthz and /readyz.

mod common;

use common::{TestServer, get, put};

#[tokio::test]
async fn metrics_health_and_readiness() {
    let v = r#"{ "vhosts": [{ "name": "localhost", "port": "0", "interface": "127.0.0.1",
        "mounts": [{ "mountpoint": "/", "origin": "file://{DIR}/www" }] }] }"#;
    let s = TestServer::start("{}", &[v]).await;
    put(s.path(), "www/index.html", "hello");
    let admin = s.server.as_ref().unwrap().start_admin("127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert_eq!(get(s.addr(), "/", "").await.status, 200);
    assert_eq!(get(s.addr(), "/", "").await.status, 200);
    assert_eq!(get(s.addr(), "/nope.html", "").await.status, 404);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = get(admin, "/metrics", "Accept: application/openmetrics-text; version=1.0.0\r\n").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    let plain = get(admin, "/metrics", "").await;
    assert!(plain.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(plain.text().contains("# TYPE lwsws_http_requests_total counter"));
    let m = r.text();
    assert!(m.contains(r#"lwsws_http_requests_total{vhost="localhost",mount="/",status="2xx"} 2"#), "{m}");
    assert!(m.contains(r#"lwsws_http_requests_total{vhost="localhost",mount="/",status="4xx"} 1"#), "{m}");
    assert!(m.contains(r#"lwsws_http_response_body_bytes_total{vhost="localhost"} "#), "{m}");
    assert!(m.contains("lwsws_http_request_duration_seconds_bucket{"), "{m}");
    assert!(m.contains("lwsws_connections_open "), "{m}");
    assert!(m.contains("lwsws_config_last_reload_success_timestamp_seconds "), "{m}");
    assert!(m.ends_with("# EOF\n"));
    assert_eq!(get(admin, "/healthz", "").await.text(), "ok\n");
    assert_eq!(get(admin, "/readyz", "").await.text(), "ready\n");
    assert_eq!(get(admin, "/other", "").await.status, 404);
    s.stop().await;
}
