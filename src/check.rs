//! `lwsws --check`: load, validate and compile a config without serving it, and describe it.

use std::fmt::Write;
use std::path::Path;

use crate::lwsws;
use crate::model::{Config, ConfigError, ListenKey, ProxyProtocol, Warning};
use crate::table::{self, CompileMode};

/// EX_USAGE: how lwsws-compatible tools say "your config is wrong".
pub const EXIT_CONFIG: i32 = 64;

pub struct CheckResult {
    pub text: String,
    pub code: i32,
}

/// Loads `dir` (with `ddir` for `_lws_ddir_`), compiles it without opening logs, and reports.
pub fn check(dir: &Path, ddir: &str) -> CheckResult {
    match load_and_compile(dir, ddir) {
        Ok((config, warnings)) => CheckResult { text: summary(&config, &warnings), code: 0 },
        Err(e) => CheckResult { text: format!("error: {e}\n"), code: EXIT_CONFIG },
    }
}

pub fn load_and_compile(dir: &Path, ddir: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
    let loaded = lwsws::load(dir, ddir)?;
    let mut warnings = loaded.warnings;
    // Slots of its own: a check leaves no certificate behind anywhere.
    let (slots, services) = (crate::tls::CertSlots::default(), crate::upstream::Services::default());
    table::compile(&loaded.config, CompileMode::Check, &slots, &services, &mut warnings)?;
    Ok((loaded.config, warnings))
}

pub fn summary(config: &Config, warnings: &[Warning]) -> String {
    let mut out = String::new();
    let mut keys: Vec<ListenKey> = Vec::new();
    for v in &config.vhosts {
        if !keys.contains(&v.listen_key()) {
            keys.push(v.listen_key());
        }
    }
    let _ = writeln!(out, "listeners:");
    for key in &keys {
        let members: Vec<_> = config.vhosts.iter().filter(|v| &v.listen_key() == key).collect();
        let names: Vec<&str> = members.iter().map(|v| v.name.as_str()).collect();
        let kind = if members[0].apply_listen_accept {
            "raw"
        } else if members[0].is_tls() {
            "https"
        } else {
            "http"
        };
        let where_ = match key {
            ListenKey::Tcp { port, interface } => {
                let opts = members[0].socket_options();
                let family = match (opts.noipv6, opts.ipv6only) {
                    (true, _) => " ipv4",
                    (false, Some(true)) => " ipv6-only",
                    _ => "",
                };
                format!("{}:{port}{family}", interface.as_deref().unwrap_or("*"))
            }
            ListenKey::Unix { path } => format!("unix:{}", path.display()),
        };
        let pp = match members[0].proxy_protocol {
            ProxyProtocol::Off => String::new(),
            other => format!(" proxy-protocol {}", other.as_str()),
        };
        let _ = writeln!(out, "  {where_} {kind}{pp} vhosts: {}", names.join(", "));
    }
    let _ = writeln!(out, "vhosts:");
    for v in &config.vhosts {
        let mut flags = Vec::new();
        if v.is_tls() {
            flags.push("tls".to_string());
        }
        if v.client_cert_required {
            flags.push("client-cert-required".into());
        }
        if v.sts {
            flags.push("sts".into());
        }
        if let Some(log) = &v.access_log {
            flags.push(format!("access-log={}", log.display()));
        }
        let flags = if flags.is_empty() { String::new() } else { format!(" [{}]", flags.join(" ")) };
        let _ = writeln!(out, "  {} port {}{flags} ({})", v.name, v.port, v.loc);
        for m in &v.mounts {
            let _ = writeln!(out, "    mount {} -> {}", m.mountpoint, m.origin.describe());
        }
        for p in &v.ws_protocols {
            let _ = writeln!(out, "    protocol {}", p.name);
        }
    }
    let _ = writeln!(out, "warnings: {}", warnings.len());
    for w in warnings {
        let _ = writeln!(out, "  {w}");
    }
    out
}
