//! Validation of what later parts of the server will act on: the built-in protocols' options
//! (pvos) and the raw listen-accept roles (spec 1.4, 5, 7). Checked now so that a config that
//! loads today does not start failing when those parts arrive.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{ConfigError, Protocol, Vhost, Warning};

/// `onward` of raw-proxy: `ipv4:HOST[:PORT]` or `ipv6:ADDR` (spec 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Onward {
    V4 { host: String, port: u16 },
    V6 { addr: Ipv6Addr, port: u16 },
}

pub fn parse_onward(text: &str) -> Result<Onward, String> {
    if let Some(rest) = text.strip_prefix("ipv4:") {
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("bad port \"{p}\""))?),
            None => (rest, 0),
        };
        if host.is_empty() {
            return Err("no host after ipv4:".into());
        }
        if host.chars().all(|c| c.is_ascii_digit() || c == '.') && host.parse::<Ipv4Addr>().is_err() {
            return Err(format!("\"{host}\" is not an IPv4 address"));
        }
        return Ok(Onward::V4 { host: host.to_string(), port });
    }
    if let Some(rest) = text.strip_prefix("ipv6:") {
        // "[addr]:port" is accepted too; lwsws itself reads the rest as the address, port 0.
        let (addr, port) = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((a, tail)) => {
                (a, tail.strip_prefix(':').map(|p| p.parse::<u16>()).transpose().map_err(|_| "bad port")?)
            }
            None => (rest, None),
        };
        let addr = addr.parse::<Ipv6Addr>().map_err(|_| format!("\"{addr}\" is not an IPv6 address"))?;
        return Ok(Onward::V6 { addr, port: port.unwrap_or(0) });
    }
    Err(format!("\"{text}\" must be ipv4:HOST[:PORT] or ipv6:ADDR"))
}

/// The `max-message-size` pvo (any protocol): a whole number of bytes, at least 1.
pub fn message_size(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("a websocket message limit must be at least 1 byte".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("\"{text}\" is not a whole number of bytes")),
    }
}

const ACME_REQUIRED: &[&str] = &["common-name", "email", "directory-url", "auth-path", "cert-path", "key-path"];

pub fn check(v: &Vhost, warnings: &mut Vec<Warning>) -> Result<(), ConfigError> {
    for p in &v.ws_protocols {
        check_protocol(p, warnings)?;
    }
    let raw_protocol = v
        .listen_accept_protocol
        .clone()
        .or_else(|| v.ws_protocols.iter().find(|p| p.pvo("raw").is_some()).map(|p| p.name.clone()));
    if v.apply_listen_accept || v.fallback_listen_accept {
        let key = if v.apply_listen_accept { "apply-listen-accept" } else { "fallback-listen-accept" };
        match &raw_protocol {
            None => {
                return Err(ConfigError::new(
                    v.loc.clone(),
                    Some(key),
                    format!("vhost \"{}\": needs listen-accept-protocol or a protocol with the \"raw\" option", v.name),
                ));
            }
            Some(name) if v.protocol(name).is_none() => {
                return Err(ConfigError::new(
                    v.loc.clone(),
                    Some("listen-accept-protocol"),
                    format!("vhost \"{}\": protocol \"{name}\" is not enabled in ws-protocols", v.name),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(role) = &v.listen_accept_role
        && !matches!(role.as_str(), "raw-proxy" | "raw-skt" | "raw")
    {
        warnings
            .push(Warning { loc: v.loc.clone(), msg: format!("listen-accept-role \"{role}\" is not a known role") });
    }
    let needs_non_tls = [("redirect-http", v.redirect_http), ("allow-http-on-https", v.allow_http_on_https)];
    for (key, set) in needs_non_tls {
        if set && !v.allow_non_tls {
            warnings.push(Warning {
                loc: v.loc.clone(),
                msg: format!("\"{key}\" has no effect without \"allow-non-tls\""),
            });
        }
    }
    if v.allow_non_tls && !v.is_tls() {
        warnings
            .push(Warning { loc: v.loc.clone(), msg: "\"allow-non-tls\" only means something on a TLS vhost".into() });
    }
    Ok(())
}

fn check_protocol(p: &Protocol, warnings: &mut Vec<Warning>) -> Result<(), ConfigError> {
    let bad =
        |key: &str, msg: String| ConfigError::new(p.loc.clone(), Some(key), format!("protocol \"{}\": {msg}", p.name));
    let whole = |key: &str| -> Result<(), ConfigError> {
        match p.pvo(key) {
            Some(v) if v.trim().parse::<u64>().is_err() => Err(bad(key, format!("\"{v}\" is not a whole number"))),
            _ => Ok(()),
        }
    };
    if let Some(v) = p.pvo("max-message-size") {
        message_size(v).map_err(|m| bad("max-message-size", m))?;
    }
    match p.name.as_str() {
        "raw-proxy" => match p.pvo("onward") {
            None => warnings.push(Warning { loc: p.loc.clone(), msg: "raw-proxy has no \"onward\" address".into() }),
            Some(o) => {
                parse_onward(o).map_err(|m| bad("onward", m))?;
            }
        },
        "lws-server-status" => whole("update-ms")?,
        "dumb-increment-protocol" => whole("options")?,
        "lws-acme-client" => {
            let missing: Vec<&str> = ACME_REQUIRED.iter().copied().filter(|k| p.pvo(k).is_none()).collect();
            if !missing.is_empty() {
                return Err(bad(missing[0], format!("missing {}", missing.join(", "))));
            }
            if let Some(c) = p.pvo("challenge-type")
                && super::acme::Challenge::parse(c).is_none()
            {
                return Err(bad("challenge-type", format!("\"{c}\" is not http-01 or tls-alpn-01")));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onward_forms() {
        assert_eq!(parse_onward("ipv4:127.0.0.1:22").unwrap(), Onward::V4 { host: "127.0.0.1".into(), port: 22 });
        assert_eq!(parse_onward("ipv4:localhost").unwrap(), Onward::V4 { host: "localhost".into(), port: 0 });
        assert_eq!(parse_onward("ipv6:::1").unwrap(), Onward::V6 { addr: Ipv6Addr::LOCALHOST, port: 0 });
        assert_eq!(parse_onward("ipv6:[::1]:22").unwrap(), Onward::V6 { addr: Ipv6Addr::LOCALHOST, port: 22 });
        assert!(parse_onward("tcp:1.2.3.4:5").is_err());
        assert!(parse_onward("ipv4:1.2.3.999:5").is_err());
        assert!(parse_onward("ipv4:1.2.3.4:x").is_err());
        assert!(parse_onward("ipv6:zz").is_err());
    }

    #[test]
    fn message_sizes() {
        assert_eq!(message_size(" 65536 "), Ok(65536));
        assert!(message_size("0").unwrap_err().contains("at least 1"));
        assert!(message_size("64k").unwrap_err().contains("not a whole number"));
        assert!(message_size("-1").is_err());
    }
}
