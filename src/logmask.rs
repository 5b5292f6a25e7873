//! lwsws's `-d` log mask onto `tracing` filter directives. The low five bits are levels
//! (1 err, 2 warn, 4 notice, 8 info, 16 debug); the higher bits are lws's log categories, each
//! of which turns on debug output for the modules that do that job here. Other crates log
//! warnings, except rustls, whose warnings are about what peers send.

/// lws's category bits and the modules that carry out the same work in this server.
const CATEGORIES: &[(u32, &str, &[&str])] = &[
    (32, "parser", &["lwsws::lwsws", "lwsws::http::path"]),
    (64, "header", &["lwsws::http::service", "lwsws::http::routing", "lwsws::http::passthrough"]),
    (128, "ext", &["lwsws::http::websocket"]),
    (256, "client", &["lwsws::http::origin::proxy", "lwsws::upstream", "lwsws::protocols::raw_proxy"]),
    (512, "latency", &["lwsws::listen"]),
    (1024, "user", &["lwsws::protocols"]),
    (2048, "thread", &["lwsws::app"]),
];

/// The `EnvFilter` directives for a mask: the level for all of lwsws, then per-module debug
/// (or, for "user", info) for each category bit set; other crates log warnings only.
pub fn directives(mask: u32) -> String {
    let level = if mask & 16 != 0 {
        "debug"
    } else if mask & (8 | 4) != 0 {
        "info"
    } else if mask & 2 != 0 {
        "warn"
    } else if mask & 1 != 0 {
        "error"
    } else {
        "off"
    };
    // rustls warns about what peers send (an IP address as SNI, unexpected messages, warning
    // alerts) on every such handshake: anyone can fill the log. Handshake failures are logged
    // by the listener at debug instead.
    let mut out = format!("warn,rustls=error,lwsws={level}");
    for (bit, name, modules) in CATEGORIES {
        if mask & bit == 0 {
            continue;
        }
        // "user" is what the protocols report at their normal level; the rest are debugging aids.
        let wanted = if *name == "user" { "info" } else { "debug" };
        if rank(wanted) <= rank(level) {
            continue;
        }
        for m in *modules {
            out.push_str(&format!(",{m}={wanted}"));
        }
    }
    out
}

fn rank(level: &str) -> u8 {
    match level {
        "off" => 0,
        "error" => 1,
        "warn" => 2,
        "info" => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn levels_follow_the_low_bits() {
        assert_eq!(directives(1031), "warn,rustls=error,lwsws=info");
        assert_eq!(directives(7), "warn,rustls=error,lwsws=info");
        assert_eq!(directives(3), "warn,rustls=error,lwsws=warn");
        assert_eq!(directives(1), "warn,rustls=error,lwsws=error");
        assert_eq!(directives(0), "warn,rustls=error,lwsws=off");
        assert_eq!(directives(31), "warn,rustls=error,lwsws=debug");
    }

    /// The warning rustls logs (through `log`, as target `rustls::msgs::handshake`) for every
    /// ClientHello whose SNI is an IP address is filtered; lwsws's own warnings are not.
    #[test]
    fn peer_driven_rustls_warnings_are_filtered() {
        use std::sync::Arc;
        #[derive(Clone, Default)]
        struct Buf(Arc<parking_lot::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(directives(1031)))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "rustls::msgs::handshake", "Illegal SNI extension: ignoring IP address");
            tracing::warn!(target: "lwsws::listen::conn", "accept failed");
        });
        let out = String::from_utf8(buf.0.lock().clone()).unwrap();
        assert!(!out.contains("Illegal SNI"), "{out}");
        assert!(out.contains("accept failed"), "{out}");
    }

    #[test]
    fn category_bits_turn_on_their_modules() {
        assert_eq!(
            directives(3 | 64),
            "warn,rustls=error,lwsws=warn,lwsws::http::service=debug,lwsws::http::routing=debug,lwsws::http::passthrough=debug"
        );
        assert_eq!(
            directives(7 | 256),
            "warn,rustls=error,lwsws=info,lwsws::http::origin::proxy=debug,lwsws::upstream=debug,lwsws::protocols::raw_proxy=debug"
        );
        assert_eq!(directives(3 | 1024), "warn,rustls=error,lwsws=warn,lwsws::protocols=info");
        // Already at debug: the categories add nothing.
        assert_eq!(directives(31 | 64 | 2048), "warn,rustls=error,lwsws=debug");
        for d in [directives(u32::MAX), directives(2047)] {
            assert!(d.parse::<tracing_subscriber::EnvFilter>().is_ok(), "{d}");
        }
    }
}
