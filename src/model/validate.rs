//! Checks that span vhosts: that there is something to serve, and that every listener the
//! config asks for can actually be bound alongside the others.

use std::collections::BTreeMap;

use super::{Config, ConfigError, ListenKey, Vhost, Warning};

/// The protocols compiled into this server (D18).
pub const BUILTIN_PROTOCOLS: &[&str] = &[
    "dumb-increment-protocol",
    "lws-mirror-protocol",
    "lws-status",
    "lws-server-status",
    "protocol-post-demo",
    "raw-proxy",
    "lws-acme-client",
    "lws-echo",
];

pub fn validate(cfg: &Config, warnings: &mut Vec<Warning>) -> Result<(), ConfigError> {
    let mut groups: BTreeMap<ListenKey, Vec<&Vhost>> = BTreeMap::new();
    for v in &cfg.vhosts {
        groups.entry(v.listen_key()).or_default().push(v);
        super::protocols::check(v, warnings)?;
        for p in &v.ws_protocols {
            if !BUILTIN_PROTOCOLS.contains(&p.name.as_str()) {
                warnings.push(Warning {
                    loc: p.loc.clone(),
                    msg: format!("protocol \"{}\" is not built in and is ignored", p.name),
                });
            }
        }
    }
    for members in groups.values() {
        check_shared_listener(members, warnings)?;
    }
    check_acme(cfg, warnings)?;
    let keys: Vec<(&ListenKey, &Vhost)> = groups.iter().map(|(k, v)| (k, v[0])).collect();
    for (i, (a, va)) in keys.iter().enumerate() {
        for (b, vb) in &keys[i + 1..] {
            if overlaps(a, b) {
                return Err(ConfigError::new(
                    vb.loc.clone(),
                    Some("interface"),
                    format!(
                        "vhost \"{}\" cannot bind port {} beside vhost \"{}\" ({}): the addresses overlap",
                        vb.name, vb.port, va.name, va.loc
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// ACME vhosts must not share their files or their names with another ACME vhost (a vhost may
/// appear on several ports with the same settings: one manager serves them all), their CA must
/// be reached over https, and http-01 needs a plain listener for the CA to reach.
fn check_acme(cfg: &Config, warnings: &mut Vec<Warning>) -> Result<(), ConfigError> {
    let acme: Vec<(&Vhost, &super::acme::Acme)> =
        cfg.vhosts.iter().filter_map(|v| Some((v, v.acme.as_ref()?))).collect();
    for (i, (v, a)) in acme.iter().enumerate() {
        if !a.directory.starts_with("https://") {
            let msg = format!("vhost \"{}\": the ACME directory-url {:?} must be https://", v.name, a.directory);
            return Err(ConfigError::new(v.loc.clone(), Some("directory-url"), msg));
        }
        for (w, b) in &acme[..i] {
            if w.name == v.name && a == b {
                continue;
            }
            let clash = if a.cert_path == b.cert_path || a.key_path == b.key_path {
                Some(("cert-path", format!("its certificate files are also vhost \"{}\"'s", w.name)))
            } else {
                a.domains
                    .iter()
                    .find(|d| b.domains.iter().any(|e| e.eq_ignore_ascii_case(d)))
                    .map(|d| ("acme", format!("{d} is already certified for vhost \"{}\"", w.name)))
            };
            if let Some((key, why)) = clash {
                return Err(ConfigError::new(v.loc.clone(), Some(key), format!("vhost \"{}\": {why}", v.name)));
            }
        }
    }
    let http01 = acme.iter().find(|(_, a)| a.challenge == super::acme::Challenge::Http01);
    if let Some((v, _)) = http01
        && !cfg.vhosts.iter().any(|p| !p.is_tls() && !p.unix_socket)
    {
        warnings.push(Warning {
            loc: v.loc.clone(),
            msg: format!(
                "vhost \"{}\": ACME http-01 is answered on plain listeners and there is none; \
                 add a plain vhost on port 80 or use \"challenge\": \"tls-alpn-01\"",
                v.name
            ),
        });
    }
    Ok(())
}

/// Vhosts on one socket must agree on what the socket is.
fn check_shared_listener(members: &[&Vhost], warnings: &mut Vec<Warning>) -> Result<(), ConfigError> {
    let first = members[0];
    // Names seen so far on this port (lowercase): a set, so that a port with thousands of
    // vhosts (Gateway API hostnames) is checked in linear time.
    let mut seen = std::collections::HashSet::from([first.name.to_ascii_lowercase()]);
    for v in &members[1..] {
        if v.is_tls() != first.is_tls() {
            let (tls, plain) = if first.is_tls() { (first, *v) } else { (*v, first) };
            return Err(ConfigError::new(
                v.loc.clone(),
                Some("host-ssl-cert"),
                format!(
                    "vhost \"{}\" is plain http but shares its port with TLS vhost \"{}\"; \
                     one socket cannot be both: give the plain vhost another port",
                    plain.name, tls.name
                ),
            ));
        }
        if v.apply_listen_accept || first.apply_listen_accept {
            let raw = if v.apply_listen_accept { *v } else { first };
            return Err(ConfigError::new(
                raw.loc.clone(),
                Some("apply-listen-accept"),
                format!("vhost \"{}\" takes every connection on its port and must be alone on it", raw.name),
            ));
        }
        if v.proxy_protocol != first.proxy_protocol {
            return Err(ConfigError::new(
                v.loc.clone(),
                Some("proxy-protocol"),
                format!(
                    "vhost \"{}\" has proxy-protocol {} but shares its port with vhost \"{}\" ({}), which has {}; \
                     the header comes before the connection is matched to a vhost, so all vhosts on a port must agree",
                    v.name,
                    v.proxy_protocol.as_str(),
                    first.name,
                    first.loc,
                    first.proxy_protocol.as_str()
                ),
            ));
        }
        if v.socket_options() != first.socket_options() {
            warnings.push(Warning {
                loc: v.loc.clone(),
                msg: format!(
                    "vhost \"{}\" shares the socket of vhost \"{}\": its ipv6only/noipv6/unix-socket-perms are not used",
                    v.name, first.name
                ),
            });
        }
        if !seen.insert(v.name.to_ascii_lowercase()) {
            warnings.push(Warning {
                loc: v.loc.clone(),
                msg: format!(
                    "vhost name \"{}\" is already used on this port; only the first is chosen by name",
                    v.name
                ),
            });
        }
    }
    Ok(())
}

/// Two distinct TCP listeners on one port conflict unless both name different interfaces.
fn overlaps(a: &ListenKey, b: &ListenKey) -> bool {
    match (a, b) {
        (ListenKey::Tcp { port: pa, interface: ia, .. }, ListenKey::Tcp { port: pb, interface: ib, .. }) => {
            *pa != 0 && pa == pb && (ia.is_none() || ib.is_none() || ia == ib)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_used_twice_on_a_port_is_warned_about_once_per_repeat() {
        let vhost = |name: &str| {
            let mut v = Vhost::with_defaults(super::super::Loc::default(), name);
            v.port = 8080;
            v
        };
        let cfg = Config {
            vhosts: vec![vhost("a.test"), vhost("b.test"), vhost("A.test"), vhost("a.test")],
            ..Default::default()
        };
        let mut warnings = Vec::new();
        validate(&cfg, &mut warnings).unwrap();
        let repeats = warnings.iter().filter(|w| w.msg.contains("already used on this port")).count();
        assert_eq!(repeats, 2, "{warnings:?}");
    }
}
